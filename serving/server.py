"""Runs one server process: the core, the HTTP and gRPC front ends and the metrics endpoint.

Sockets are bound before anything else (port 0 picks a free port, and the log
says which), so the server is live while models load and ready once they have.
Under ``--workers N`` (serving.workers) each worker process runs ``serve``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from serving import __version__, tls
from serving.auth import Authenticator
from serving.core import InferenceCore
from serving.grpc import GrpcServer
from serving.http.app import create_app
from serving.http.auth import protect_api, protect_metrics
from serving.http.raw_route import RawRoutes
from serving.manager import ModelManager
from serving.metrics import Metrics
from serving.process import bind, configure_logging, http_server, metrics_app, run_loop
from serving.settings import Settings

if TYPE_CHECKING:
    from registry_client import Follower as RegistryFollower
    from serving.monitoring import Monitoring

__all__ = ["Supervised", "run", "serve"]

log = logging.getLogger("sluice")


class Supervised(Protocol):
    """A worker's link to the supervisor of ``--workers N`` (``serving.workers.WorkerLink``)."""

    join_when_ready: bool  # a restarted worker: take connections only once models are ready

    def listening(self, http_port: int, grpc_port: int) -> None: ...

    def ready(self) -> None: ...

    def follow_desired(self, manager: ModelManager) -> None:
        """Share API loads/unloads with every worker (serving.desired_sync)."""
        ...

    def share_rollouts(self, rollout: Any) -> None:
        """Judge canary rollouts on every worker's traffic (serving.rollout._peers)."""
        ...


def _describe_runtime() -> str:
    from serving.batching import IMPLEMENTATION as batching
    from serving.codecs import IMPLEMENTATION as codecs
    from serving.runtime import ort_flavour

    flavour, version = ort_flavour()
    return f"codecs: {codecs}; batch assembly: {batching}; ONNX Runtime: {flavour} {version}"


def _registry_follower(
    settings: Settings, manager: ModelManager, worker: Supervised | None
) -> RegistryFollower:
    from serving.following import follower_from_settings

    deployment = f"sluice-{socket.gethostname()}-{settings.http_port}"
    if worker is not None or settings.http_port == 0:  # the port alone names no one process
        deployment += f"-{os.getpid()}"
    return follower_from_settings(settings, manager, deployment)


async def _start_monitoring(
    settings: Settings, core: InferenceCore, metrics: Metrics
) -> Monitoring | None:
    if settings.collect is None and settings.events is None:
        return None
    from serving.monitoring import Monitoring

    monitoring = Monitoring.from_settings(settings, core, metrics)
    if monitoring is not None:  # rolls what a previous process left in the spool first
        await asyncio.to_thread(monitoring.start, core)
    return monitoring


async def _start_models(core: InferenceCore, follower: RegistryFollower | None) -> None:
    """Pull and pin the followed versions first, so the initial load already serves them."""
    if follower is not None:
        await follower.start()
    await core.start()


async def serve(
    settings: Settings,
    worker: Supervised | None = None,
    *,
    attach: Callable[[InferenceCore], None] | None = None,
) -> None:
    """``worker``: run as one of ``--workers N`` (serving.workers): share the HTTP and gRPC
    ports, report to the supervisor, and leave the metrics port to it.

    ``attach``: an in-process desired-state source (the edge agent) is handed the core
    before any model loads, to hold targets (``core.manager.hold``), apply them later and
    add observers."""
    metrics = Metrics()
    manager = ModelManager(settings, metrics)
    core = InferenceCore(settings, manager, metrics)
    if attach is not None:
        attach(core)
    if worker is not None:  # a load/unload through the API reaches every worker
        worker.follow_desired(manager)
        worker.share_rollouts(core.rollout)
    # --collect / --events (serving.monitoring): the collector observes every version
    monitoring = await _start_monitoring(settings, core, metrics)
    # --registry: pull and follow --model references (serving.following)
    follower = _registry_follower(settings, manager, worker) if settings.registry else None
    if worker is not None and worker.join_when_ready:
        # a restarted worker takes no connections before its models are ready
        await _start_models(core, follower)
    http_sock = bind(settings.host, settings.http_port, reuse_port=worker is not None)
    # Under --workers N the supervisor serves every worker's metrics, summed.
    metrics_sock = bind(settings.host, settings.metrics_port) if worker is None else None
    # --auth-token-file / --jwt-jwks; with neither, the apps are served bare
    auth = Authenticator.from_settings(settings)
    # infer, live and ready answered inside the protocol (serving.http.raw_route)
    raw_routes = RawRoutes(core, auth)
    api_server = http_server(protect_api(create_app(core), auth), settings, raw_routes)
    scrape_app: Any = metrics_app(metrics)
    if settings.metrics_auth:
        scrape_app = protect_metrics(scrape_app, auth)
    metrics_server = http_server(scrape_app, settings)
    servers = (api_server, metrics_server)
    grpc_server = GrpcServer(
        core,
        reuse_port=worker is not None,
        credentials=tls.grpc_credentials(settings),
        authenticator=auth,
        max_request_bytes=settings.max_request_bytes,
        max_connection_age_secs=settings.grpc_max_connection_age_secs,
        max_connection_age_grace_secs=settings.grpc_max_connection_age_grace_secs,
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
        asyncio.create_task(api_server.serve(sockets=[http_sock])),
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
        # gRPC calls in flight finish (or are cancelled after --drain-timeout-secs)
        # before the core closes the models they run on.
        await grpc_server.stop(grace=settings.drain_timeout_secs)
        await asyncio.gather(*tasks, return_exceptions=True)
        if follower is not None:
            await follower.close()  # stops following and clears this deployment's pin
        await core.close()
        if monitoring is not None:  # writes what is queued and rolls the spool into Parquet
            await asyncio.to_thread(monitoring.close, core)


def run(settings: Settings) -> None:
    """One server process until SIGTERM or SIGINT (``--workers N``: serving.workers.supervise)."""
    configure_logging(settings.log_level)
    run_loop(serve(settings))
