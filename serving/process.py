"""What every Sluice process runs on: its event loop, logging, listening sockets, uvicorn
servers and the metrics app.

``serving.server`` (one server process) and ``serving.workers`` (a supervisor of N server
processes) both build on this module, so that neither needs the other's internals; the
``sluice serve`` command chooses between them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
from collections.abc import Coroutine, Iterator
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from serving import tls
from serving.http.protocol import ConnectionLimits, protocol_class
from serving.settings import Settings

if TYPE_CHECKING:
    from serving.http.raw_route import RawRoutes

__all__ = ["bind", "configure_logging", "http_server", "metrics_app", "run_loop"]

T = TypeVar("T")


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on uvloop (asyncio's own loop where uvloop is absent)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(main)
    return uvloop.run(main)


def configure_logging(level: str, who: str = "") -> None:
    """Log lines carry time, level, logger and ``who`` (a worker names itself there)."""
    logging.basicConfig(
        level=level.upper(), format=f"%(asctime)s %(levelname)s %(name)s{who}: %(message)s"
    )


def bind(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A listening socket; an address in use is an OSError that says which."""
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


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to us (we run more than one)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def http_server(
    app: Any, settings: Settings, raw_routes: RawRoutes | None = None
) -> uvicorn.Server:
    """A uvicorn server for ``app`` with Sluice's HTTP protocol, limits and TLS; it serves
    sockets from ``bind`` (``server.serve(sockets=[...])``). ``raw_routes``: the hot routes
    the protocol answers itself, ahead of ``app`` (``serving.http.raw_route``)."""
    # Under --workers N a worker drains within the bound the supervisor holds it to.
    drain = math.ceil(settings.drain_timeout_secs) if settings.workers > 1 else None
    config = uvicorn.Config(
        app,
        loop="none",
        http=protocol_class(ConnectionLimits.from_settings(settings), raw_routes),
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


class _Rendered(Protocol):
    def render(self) -> bytes: ...


def metrics_app(metrics: _Rendered) -> Starlette:
    """``GET /metrics`` in Prometheus' text format: one process's metrics, or (under
    ``--workers``) every worker's, merged."""

    async def render(request: Request) -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return Starlette(routes=[Route("/metrics", render, methods=["GET"])])
