"""Runs one server process: the core, the HTTP and gRPC front ends and the metrics endpoint.

Sockets are bound before anything else (port 0 picks a free port, and the log
says which), so the server is live while models load and ready once they have.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from serving import __version__, tls
from serving.auth import Authenticator
from serving.core import InferenceCore
from serving.grpc import GrpcServer
from serving.http.app import create_app
from serving.http.auth import protect_api, protect_metrics
from serving.http.protocol import ConnectionLimits, protocol_class
from serving.manager import ModelManager
from serving.metrics import Metrics
from serving.settings import Settings

if TYPE_CHECKING:
    from serving.registry_follower import RegistryFollower
    from serving.workers import WorkerLink

__all__ = ["run", "serve"]

log = logging.getLogger("sluice")


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to us (we run more than one)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _bind(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:  # one of --workers N: the kernel spreads connections among them
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
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
    # Under --workers N a worker drains within the bound the supervisor holds it to.
    drain = math.ceil(settings.drain_timeout_secs) if settings.workers > 1 else None
    config = uvicorn.Config(
        app,
        loop="none",
        http=protocol_class(ConnectionLimits.from_settings(settings)),
        lifespan="off",
        access_log=False,
        log_level=settings.log_level,
        timeout_keep_alive=settings.http_keepalive_secs,
        server_header=False,
        proxy_headers=False,  # the client address is not used; skip the middleware
        date_header=False,
        timeout_graceful_shutdown=drain,
        **tls.uvicorn_options(settings),
    )
    return _Server(config)


def _describe_runtime() -> str:
    from serving.batching import IMPLEMENTATION as batching
    from serving.codecs import IMPLEMENTATION as codecs
    from serving.runtime import ort_flavour

    flavour, version = ort_flavour()
    return f"codecs: {codecs}; batch assembly: {batching}; ONNX Runtime: {flavour} {version}"


def _registry_follower(
    settings: Settings, manager: ModelManager, worker: WorkerLink | None
) -> RegistryFollower:
    from serving.registry_follower import RegistryFollower

    deployment = f"sluice-{socket.gethostname()}-{settings.http_port}"
    if worker is not None or settings.http_port == 0:  # the port alone names no one process
        deployment += f"-{os.getpid()}"
    return RegistryFollower.from_settings(settings, manager, deployment)


async def _start_models(core: InferenceCore, follower: RegistryFollower | None) -> None:
    """Pull and pin the followed versions first, so the initial load already serves them."""
    if follower is not None:
        await follower.start()
    await core.start()


async def serve(settings: Settings, worker: WorkerLink | None = None) -> None:
    """``worker``: run as one of ``--workers N`` (serving.workers): share the HTTP and gRPC
    ports, report to the supervisor, and leave the metrics port to it."""
    metrics = Metrics()
    manager = ModelManager(settings, metrics)
    core = InferenceCore(settings, manager, metrics)
    # --registry: pull and follow --model references (serving.registry_follower)
    follower = _registry_follower(settings, manager, worker) if settings.registry else None
    if worker is not None and worker.join_when_ready:
        # a restarted worker takes no connections before its models are ready
        await _start_models(core, follower)
    http_sock = _bind(settings.host, settings.http_port, reuse_port=worker is not None)
    # Under --workers N the supervisor serves every worker's metrics, summed.
    metrics_sock = _bind(settings.host, settings.metrics_port) if worker is None else None
    # --auth-token-file / --jwt-jwks; with neither, the apps are served bare
    auth = Authenticator.from_settings(settings)
    http_server = _uvicorn(protect_api(create_app(core), auth), settings)
    metrics_app: Any = _metrics_app(metrics)
    if settings.metrics_auth:
        metrics_app = protect_metrics(metrics_app, auth)
    metrics_server = _uvicorn(metrics_app, settings)
    servers = (http_server, metrics_server)
    grpc_server = GrpcServer(
        core,
        reuse_port=worker is not None,
        credentials=tls.grpc_credentials(settings),
        authenticator=auth,
        max_request_bytes=settings.max_request_bytes,
    )

    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()

    def stop() -> None:
        if not stopping.is_set():
            log.info("shutting down")
            core.drain()
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
        if metrics_sock is not None:
            metrics_sock.close()
        raise
    tasks = [
        asyncio.create_task(http_server.serve(sockets=[http_sock])),
        asyncio.create_task(grpc_server.wait()),
    ]
    if metrics_sock is not None:
        tasks.append(asyncio.create_task(metrics_server.serve(sockets=[metrics_sock])))
        secured = tls.describe(settings)
        host, port = http_sock.getsockname()[:2]
        log.info("HTTP service listening on %s:%d%s", host, port, secured)
        log.info("gRPC service listening on %s:%d%s", settings.host, grpc_port, secured)
        host, port = metrics_sock.getsockname()[:2]
        log.info("metrics service listening on %s:%d%s", host, port, secured)
    if worker is not None:
        worker.listening(http_sock.getsockname()[1], grpc_port)
    try:
        if not core.ready():
            await _start_models(core, follower)
        await grpc_server.set_serving(core.ready())
        log.info("server ready: %d model version(s) serving", len(manager.serving_versions()))
        if worker is not None:
            worker.ready()
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop()
        # gRPC calls in flight finish (or are cancelled after the grace period)
        # before the core closes the models they run on.
        await grpc_server.stop(grace=5.0 if worker is None else settings.drain_timeout_secs)
        await asyncio.gather(*tasks, return_exceptions=True)
        if follower is not None:
            await follower.close()  # stops following and clears this deployment's pin
        await core.close()


def run(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if settings.workers > 1:  # a supervisor and N server processes (serving.workers)
        from serving.workers import supervise

        supervise(settings)
        return
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(serve(settings))
    else:
        uvloop.run(serve(settings))
