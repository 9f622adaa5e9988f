"""Which grpcio server shape answers ``ModelInfer`` fastest on this machine.

grpcio offers more than the ``grpc.aio`` server Sluice ships: a sync server whose handlers
run on a thread pool, channel options, and (one per sync server) more completion queues.
This runs each shape as a process of its own, with a fixed answer (no model, nothing
decoded: the most that shape can do) and with Sluice's real core behind it, and drives
every one with h2load (C: the client is not the limit) in the same run.

    python -m benchmarks.grpc_shapes [--duration 8] [--warmup 2] [--out DIR]

Shapes:

- ``aio``: ``grpc.aio.server`` on uvloop, as Sluice serves (``serving.grpc.GrpcServer``).
- ``aio-throughput``: the same with ``grpc.optimization_target=throughput``.
- ``sync-tN``: ``grpc.server`` with an N-thread pool; Sluice's handler hands each call to
  the core's event loop, which runs in a thread of its own.
- ``sync-2cq``: two sync servers (each its own completion queue and polling thread) on one
  port through SO_REUSEPORT, 8 threads each; the kernel spreads connections over them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import h2load
from benchmarks.models import MODELS, write_onnx_models, write_sluice_repository
from benchmarks.processes import ResourceMonitor, ServerProcess
from serving.loadgen import grpc_infer_request, grpc_infer_response, summarize_values

__all__ = ["SHAPES", "main"]

_SERVICE = "inference.GRPCInferenceService"
_UNLIMITED = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
SHAPES = ("aio", "aio-throughput", "sync-t4", "sync-t16", "sync-2cq")
# (HTTP/2 connections, calls in flight on each)
LOADS = ((1, 1), (16, 1), (1, 16))
_MODEL = "tiny_mlp"  # the tiny MLP without batching, two instances (benchmarks.models)


# -- the servers ------------------------------------------------------------------------------


class _Answer:
    """``ModelInfer`` for a shape: a fixed response, or Sluice's core."""

    def __init__(self, response: bytes | None, repository: Path | None) -> None:
        self.response = response
        self.repository = repository
        self.core: Any = None

    async def start(self) -> None:
        if self.repository is None:
            return
        from serving.core import InferenceCore
        from serving.manager import ModelManager
        from serving.metrics import Metrics
        from serving.settings import Settings

        settings = Settings(model_repository=self.repository, log_level="warning")
        metrics = Metrics()
        self.core = InferenceCore(settings, ModelManager(settings, metrics), metrics)
        await self.core.start()

    async def infer(self, request: bytes) -> bytes:
        """The same calls as ``serving.grpc``'s servicer: decode, the core, encode."""
        if self.core is None:
            assert self.response is not None
            return self.response
        from serving.grpc import codec
        from serving.grpc import grpc_service_pb2 as pb

        message = pb.ModelInferRequest.FromString(request)
        infer_request = codec.decode_infer_request(message, self.core.shared_memory)
        response = await self.core.infer(infer_request)
        return bytes(codec.encode_infer_response(response, infer_request).SerializeToString())


async def _serve_aio(answer: _Answer, host: str, options: list[tuple[str, Any]]) -> None:
    if answer.response is not None:  # the fixed-answer ceiling the suite runs
        from benchmarks.ceiling import serve as serve_ceiling

        await serve_ceiling(answer.response, host, 0, options)
        return
    from serving.grpc import GrpcServer  # the front end exactly as `sluice serve` runs it

    await answer.start()
    server = GrpcServer(answer.core, options=options)
    port = await server.start(host, 0)
    await server.set_serving(True)
    print(f"gRPC service listening on {host}:{port}", flush=True)
    await server.wait()


def _serve_sync(answer: _Answer, host: str, servers: int, threads: int) -> None:
    import grpc

    from serving.errors import SluiceError
    from serving.grpc.errors import status_for

    loop = _loop_thread()
    asyncio.run_coroutine_threadsafe(answer.start(), loop).result()
    fixed = answer.response if answer.core is None else None

    def infer(request: bytes, context: Any) -> bytes:
        if fixed is not None:
            return fixed
        try:
            return asyncio.run_coroutine_threadsafe(answer.infer(request), loop).result()
        except SluiceError as exc:
            context.abort(status_for(exc.code), exc.message)
            raise

    handler = grpc.method_handlers_generic_handler(
        _SERVICE, {"ModelInfer": grpc.unary_unary_rpc_method_handler(infer)}
    )
    port = 0
    running = []
    for _ in range(servers):
        options = [*_UNLIMITED, ("grpc.so_reuseport", int(servers > 1))]
        server = grpc.server(ThreadPoolExecutor(threads), handlers=(handler,), options=options)
        port = server.add_insecure_port(f"{host}:{port}")
        server.start()
        running.append(server)
    print(f"gRPC service listening on {host}:{port}", flush=True)
    running[0].wait_for_termination()


def _loop_thread() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, name="core-loop", daemon=True).start()
    return loop


def serve(shape: str, answer: _Answer, host: str) -> None:
    if shape.startswith("aio"):
        options = [("grpc.optimization_target", "throughput")] if shape == "aio-throughput" else []
        try:
            import uvloop

            uvloop.run(_serve_aio(answer, host, options))
        except ImportError:  # pragma: no cover
            asyncio.run(_serve_aio(answer, host, options))
    elif shape == "sync-2cq":
        _serve_sync(answer, host, servers=2, threads=8)
    elif shape.startswith("sync-t"):
        _serve_sync(answer, host, servers=1, threads=int(shape.removeprefix("sync-t")))
    else:
        raise SystemExit(f"unknown shape {shape!r}; expected one of {', '.join(SHAPES)}")


# -- the run ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Row:
    shape: str
    behind: str  # "fixed answer" | "Sluice"
    connections: int
    streams: int
    throughput: float
    p50_ms: float
    p99_ms: float
    errors: int
    server_cpu_percent: float


def _measure(target: str, body: Path, log: Path, load: tuple[int, int], args: Any) -> Any:
    return h2load.run_h2load(
        target, body, log, connections=load[0], streams=load[1],
        duration=args.duration, warmup=args.warmup,
    )  # fmt: skip


def run(args: Any) -> list[Row]:
    if h2load.available() is None:
        raise SystemExit("h2load is not installed (Debian/Ubuntu: apt-get install nghttp2-client)")
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    onnx = write_onnx_models(out / "onnx", ["tiny"])
    repository = write_sluice_repository(out / "repository", onnx, [_MODEL])
    model = MODELS["tiny"]
    x = np.random.default_rng(7).standard_normal((1, *model.input_dims)).astype(np.float32)
    body = out / "request.body"
    body.write_bytes(
        h2load.grpc_body(grpc_infer_request(_MODEL, {model.input_name: x}, [model.output_name]))
    )
    response = out / "response.bin"
    zeros = np.zeros((1, *model.output_dims), np.float32)
    response.write_bytes(grpc_infer_response(_MODEL, {model.output_name: zeros}))
    rows: list[Row] = []
    for behind in ("fixed answer", "Sluice"):
        source = ["--response", str(response)] if behind == "fixed answer" else []
        if behind == "Sluice":
            source = ["--repository", str(repository)]
        for shape in args.shapes:
            cmd = [sys.executable, "-m", "benchmarks.grpc_shapes", "serve", shape, *source]
            stem = f"{shape}-{'fixed' if behind == 'fixed answer' else 'sluice'}"
            with ServerProcess(stem, cmd, out / f"{stem}.log") as server:
                host, port = server.wait_listening(["gRPC"], timeout=120)["gRPC"]
                target = f"{host}:{port}"
                for load in LOADS:
                    log = out / f"{stem}-c{load[0]}m{load[1]}.tsv"
                    with ResourceMonitor(server.pid) as monitor:
                        result = _measure(target, body, log, load, args)
                    summary, _ = summarize_values(result.latencies_us)
                    row = Row(shape, behind, load[0], load[1], result.throughput,
                              summary.p50_ms, summary.p99_ms, result.errors,
                              monitor.usage.cpu_percent)  # fmt: skip
                    rows.append(row)
                    print(_line(row), flush=True)
                    server.check_alive()
    (out / "grpc_shapes.json").write_text(json.dumps([asdict(r) for r in rows], indent=2))
    (out / "grpc_shapes.md").write_text(markdown(rows, args))
    return rows


def _line(r: Row) -> str:
    return (
        f"{r.behind:>12} {r.shape:>15} c{r.connections:<2} m{r.streams:<2} "
        f"{r.throughput:9,.0f} req/s  p50 {r.p50_ms:6.3f} ms  p99 {r.p99_ms:6.3f} ms  "
        f"errors {r.errors}  server CPU {r.server_cpu_percent:4.0f}%"
    )


def markdown(rows: list[Row], args: Any) -> str:
    lines = [
        f"Command: `python -m benchmarks.grpc_shapes --duration {args.duration:g} "
        f"--warmup {args.warmup:g}` ({time.strftime('%Y-%m-%dT%H:%M:%S')}); client: h2load, "
        "`cN mM` = N HTTP/2 connections with M calls in flight on each.",
        "",
        "| behind | shape | load | req/s | p50 ms | p99 ms | errors | server CPU % |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.behind} | {r.shape} | c{r.connections} m{r.streams} | {r.throughput:,.0f} | "
            f"{r.p50_ms:.3f} | {r.p99_ms:.3f} | {r.errors} | {r.server_cpu_percent:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.grpc_shapes")
    sub = parser.add_subparsers(dest="command")
    srv = sub.add_parser("serve", help="serve one shape (the run starts these itself)")
    srv.add_argument("shape", choices=SHAPES)
    what = srv.add_mutually_exclusive_group(required=True)
    what.add_argument("--response", type=Path, help="a fixed serialized ModelInferResponse")
    what.add_argument("--repository", type=Path, help="a model repository for Sluice's core")
    srv.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per load")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before each load")
    parser.add_argument("--shapes", nargs="*", default=list(SHAPES), choices=SHAPES)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/grpc_shapes"))
    args = parser.parse_args(argv)
    if args.command == "serve":
        response = args.response.read_bytes() if args.response else None
        try:
            serve(args.shape, _Answer(response, args.repository), args.host)
        except KeyboardInterrupt:
            pass
        return 0
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
