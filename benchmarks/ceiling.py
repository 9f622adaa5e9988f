"""The fixed-answer grpc.aio ceiling: ``ModelInfer`` answered with one fixed raw response.

It runs no model and decodes nothing: whatever a Python gRPC server can do per call on
this machine, this does no less, so Sluice's gRPC front end is held to it. Generic
handlers on raw bytes keep it free of generated code.

``python -m benchmarks.ceiling --response FILE [--port 0]`` logs
``gRPC service listening on HOST:PORT`` once it serves.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main", "serve"]

_SERVICE = "inference.GRPCInferenceService"
_LIVE = b"\x08\x01"  # ServerLiveResponse / ServerReadyResponse / ModelReadyResponse: true


async def serve(
    response: bytes, host: str, port: int, options: Sequence[tuple[str, Any]] = ()
) -> None:
    """``options``: more grpcio channel arguments (benchmarks.grpc_shapes tries some)."""
    import grpc

    async def infer(_request: bytes, _context: Any) -> bytes:
        return response

    async def yes(_request: bytes, _context: Any) -> bytes:
        return _LIVE

    handlers = {
        "ModelInfer": grpc.unary_unary_rpc_method_handler(infer),
        "ServerLive": grpc.unary_unary_rpc_method_handler(yes),
        "ServerReady": grpc.unary_unary_rpc_method_handler(yes),
        "ModelReady": grpc.unary_unary_rpc_method_handler(yes),
    }
    unlimited = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    server = grpc.aio.server(options=unlimited + list(options))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(_SERVICE, handlers),))
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    print(f"gRPC service listening on {host}:{bound}", flush=True)
    await server.wait_for_termination()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ceiling")
    parser.add_argument("--response", type=Path, required=True, help="serialized response")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        asyncio.run(serve(args.response.read_bytes(), args.host, args.port))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
