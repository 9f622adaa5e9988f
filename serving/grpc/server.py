"""The ``grpc.aio`` server: the inference service plus ``grpc.health.v1``.

Responses are unlimited in size (the gRPC default of 4 MB breaks real clients, which
send INT32_MAX themselves); a request may be as large as ``--max-request-size``, as over
HTTP, so one message cannot take unbounded memory (RESOURCE_EXHAUSTED past it). Health answers NOT_SERVING until the
core is ready, SERVING after, and NOT_SERVING again while shutting down.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from serving.auth import Authenticator
from serving.core import InferenceCore
from serving.grpc import grpc_service_pb2 as pb
from serving.grpc._admin import add_admin_to_server
from serving.grpc._service import InferenceServicer, add_to_server
from serving.grpc.auth import AuthInterceptor

__all__ = ["SERVICE_NAME", "GrpcServer"]

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
_OPTIONS = [
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
    ("grpc.so_reuseport", 0),
]


class GrpcServer:
    """Bound by ``start``; ``set_serving`` flips health; ``stop`` drains gracefully."""

    def __init__(
        self,
        core: InferenceCore,
        *,
        reuse_port: bool = False,
        options: Sequence[tuple[str, Any]] = (),
        credentials: grpc.ServerCredentials | None = None,
        authenticator: Authenticator | None = None,
        max_request_bytes: int = -1,
        max_connection_age_secs: float = 0.0,
        max_connection_age_grace_secs: float = 30.0,
    ) -> None:
        """``reuse_port``: share the port with the other ``--workers`` (SO_REUSEPORT); off,
        a port already in use fails loudly. ``options``: more grpcio channel arguments.
        ``credentials``: serve TLS (serving.tls). ``authenticator``: require bearer tokens
        (serving.grpc.auth); None adds no interceptor at all. ``max_request_bytes``: the
        largest request message taken (-1: no limit). ``max_connection_age_secs``: send
        GOAWAY on a connection this old (0: never), so its client reconnects, and give its
        calls ``max_connection_age_grace_secs`` more to finish."""
        self.core = core
        chosen = {"grpc.so_reuseport": int(reuse_port)}
        # a channel argument is a C int
        chosen["grpc.max_receive_message_length"] = min(max_request_bytes, 2**31 - 1)
        self._options = [(k, chosen.get(k, v)) for k, v in _OPTIONS] + list(options)
        if max_connection_age_secs > 0:
            self._options += [
                ("grpc.max_connection_age_ms", round(max_connection_age_secs * 1000)),
                ("grpc.max_connection_age_grace_ms", round(max_connection_age_grace_secs * 1000)),
            ]
        self.port = 0
        self._server: grpc.aio.Server | None = None
        self._health = health.aio.HealthServicer()
        self._credentials = credentials
        self._interceptors = [AuthInterceptor(authenticator)] if authenticator else []

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (0: a free port) and return the bound port."""
        if self._server is not None:
            raise RuntimeError("the gRPC server is already started")
        server = grpc.aio.server(options=self._options, interceptors=self._interceptors or None)
        add_to_server(InferenceServicer(self.core), server)
        add_admin_to_server(self.core, server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            if self._credentials is not None:
                bound = server.add_secure_port(address, self._credentials)
            else:
                bound = server.add_insecure_port(address)
        except RuntimeError as exc:
            raise OSError(f"cannot listen on {host}:{port}: {exc}") from None
        if bound == 0:
            raise OSError(f"cannot listen on {host}:{port}")
        await self.set_serving(False)
        await server.start()
        self._server, self.port = server, bound
        return bound

    async def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for service in ("", SERVICE_NAME):
            await self._health.set(service, status)

    async def wait(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()

    async def stop(self, grace: float) -> None:
        """Refuse new calls, give calls in flight ``grace`` seconds, then cancel them."""
        server, self._server = self._server, None
        if server is None:
            return
        await self._health.enter_graceful_shutdown()
        await server.stop(grace)
