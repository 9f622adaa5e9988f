"""gRPC load: generic unary calls on grpc.aio with pre-serialized ``ModelInferRequest`` bytes.

No serializers on either side: requests are written as bytes and responses stay bytes,
so the client spends its time in grpcio, not in protobuf.
"""

from __future__ import annotations

from typing import Any

from serving.loadgen._payloads import GRPC_INFER_METHOD

__all__ = ["GrpcSender", "open_channel"]

_UNLIMITED = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]


def open_channel(target: str) -> Any:
    import grpc

    return grpc.aio.insecure_channel(target, options=_UNLIMITED)


class GrpcSender:
    """One concurrent slot on a (possibly shared) channel."""

    def __init__(self, channel: Any, requests: list[bytes], timeout: float = 30.0) -> None:
        self._call = channel.unary_unary(GRPC_INFER_METHOD)
        self._requests = requests
        self._timeout = timeout

    async def send(self, index: int) -> bool:
        await self._call(self._requests[index], timeout=self._timeout)
        return True

    async def close(self) -> None:
        pass
