"""Runs one server process: the core, the HTTP and gRPC front ends and the metrics endpoint.

Sockets are bound before anything else (port 0 picks a free port, and the log
says which), so the server is live while models load and ready once they have.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from serving import __version__
from serving.core import InferenceCore
from serving.grpc import GrpcServer
from serving.http.app import create_app
from serving.manager import ModelManager
from serving.metrics import Metrics
from serving.settings import Settings

__all__ = ["run", "serve"]

log = logging.getLogger("sluice")


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to us (we run more than one)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def _metrics_app(metrics: Metrics) -> Starlette:
    async def render(request: Request) -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return Starlette(routes=[Route("/metrics", render, methods=["GET"])])


def _uvicorn(app: Any, settings: Settings) -> _Server:
    config = uvicorn.Config(
        app,
        loop="none",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level=settings.log_level,
        timeout_keep_alive=75,
        server_header=False,
        proxy_headers=False,  # the client address is not used; skip the middleware
        date_header=False,
    )
    return _Server(config)


def _describe_runtime() -> str:
    from serving.batching import IMPLEMENTATION as batching
    from serving.codecs import IMPLEMENTATION as codecs
    from serving.runtime import ort_flavour

    flavour, version = ort_flavour()
    return f"codecs: {codecs}; batch assembly: {batching}; ONNX Runtime: {flavour} {version}"


async def serve(settings: Settings) -> None:
    metrics = Metrics()
    manager = ModelManager(settings, metrics)
    core = InferenceCore(settings, manager, metrics)
    http_sock = _bind(settings.host, settings.http_port)
    metrics_sock = _bind(settings.host, settings.metrics_port)
    http_server = _uvicorn(create_app(core), settings)
    metrics_server = _uvicorn(_metrics_app(metrics), settings)
    servers = (http_server, metrics_server)
    grpc_server = GrpcServer(core)

    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()

    def stop() -> None:
        if not stopping.is_set():
            log.info("shutting down")
        stopping.set()
        for s in servers:
            s.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)

    log.info("sluice %s starting; %s", __version__, _describe_runtime())
    try:
        grpc_port = await grpc_server.start(settings.host, settings.grpc_port)
    except BaseException:
        http_sock.close()
        metrics_sock.close()
        raise
    tasks = [
        asyncio.create_task(http_server.serve(sockets=[http_sock])),
        asyncio.create_task(metrics_server.serve(sockets=[metrics_sock])),
        asyncio.create_task(grpc_server.wait()),
    ]
    host, port = http_sock.getsockname()[:2]
    log.info("HTTP service listening on %s:%d", host, port)
    log.info("gRPC service listening on %s:%d", settings.host, grpc_port)
    host, port = metrics_sock.getsockname()[:2]
    log.info("metrics service listening on %s:%d", host, port)
    try:
        await core.start()
        await grpc_server.set_serving(core.ready())
        log.info("server ready: %d model version(s) serving", len(manager.serving_versions()))
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop()
        # gRPC calls in flight finish (or are cancelled after the grace period)
        # before the core closes the models they run on.
        await grpc_server.stop(grace=5.0)
        await asyncio.gather(*tasks, return_exceptions=True)
        await core.close()


def run(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(serve(settings))
    else:
        uvloop.run(serve(settings))
