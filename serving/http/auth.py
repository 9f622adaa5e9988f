"""Bearer-token checks for the HTTP and metrics ports, as an ASGI wrapper.

Installed only when authentication is on: with it off the app is served bare.
Each route maps to an operation of ``serving.auth.OPERATION_SCOPES`` here, the one
place that knows HTTP paths; a path no route serves still needs a valid token, so
a 404 tells an anonymous client nothing. A 401 carries ``WWW-Authenticate: Bearer``
(RFC 6750), with ``error="invalid_token"`` when a token was sent but did not verify.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from starlette.routing import compile_path

from serving.auth import OPERATION_SCOPES, Authenticator, MissingToken, Scope
from serving.errors import ErrorCode, SluiceError
from serving.http.infer_route import ASGIApp, Receive, Send, error_parts
from serving.http.infer_route import Scope as AsgiScope

__all__ = [
    "HTTP_OPERATIONS",
    "BearerAuth",
    "http_operation",
    "protect_api",
    "protect_metrics",
    "refusal_parts",
]

_M = "/v2/models/{model}"
_MV = _M + "/versions/{version}"
_SHM = "/v2/systemsharedmemory"
_CUDA = "/v2/cudasharedmemory/{rest:path}"

# (method, route path, operation): every route of serving.http.app and the infer route.
HTTP_OPERATIONS: tuple[tuple[str, str, str], ...] = (
    ("GET", "/v2/health/live", "ServerLive"),
    ("GET", "/v2/health/ready", "ServerReady"),
    ("GET", "/v2", "ServerMetadata"),
    ("GET", "/v2/models/stats", "ModelStatistics"),
    ("GET", _M, "ModelMetadata"),
    ("GET", _MV, "ModelMetadata"),
    ("GET", _M + "/ready", "ModelReady"),
    ("GET", _MV + "/ready", "ModelReady"),
    ("GET", _M + "/config", "ModelConfig"),
    ("GET", _MV + "/config", "ModelConfig"),
    ("GET", _M + "/stats", "ModelStatistics"),
    ("GET", _MV + "/stats", "ModelStatistics"),
    ("GET", _M + "/traffic", "TrafficShow"),
    ("POST", _M + "/traffic", "TrafficSet"),
    ("GET", _M + "/rollout", "RolloutStatus"),
    ("POST", _M + "/rollout", "RolloutStart"),
    ("POST", _M + "/rollout/abort", "RolloutAbort"),
    ("POST", _M + "/infer", "ModelInfer"),
    ("POST", _MV + "/infer", "ModelInfer"),
    ("POST", "/v2/repository/index", "RepositoryIndex"),
    ("POST", "/v2/repository/models/{model}/load", "RepositoryModelLoad"),
    ("POST", "/v2/repository/models/{model}/unload", "RepositoryModelUnload"),
    ("GET", _SHM + "/status", "SystemSharedMemoryStatus"),
    ("GET", _SHM + "/region/{name}/status", "SystemSharedMemoryStatus"),
    ("POST", _SHM + "/region/{name}/register", "SystemSharedMemoryRegister"),
    ("POST", _SHM + "/unregister", "SystemSharedMemoryUnregister"),
    ("POST", _SHM + "/region/{name}/unregister", "SystemSharedMemoryUnregister"),
    ("GET", _CUDA, "CudaSharedMemoryStatus"),
    ("POST", _CUDA, "CudaSharedMemoryRegister"),
)

_COMPILED: tuple[tuple[str, re.Pattern[str], str], ...] = tuple(
    (method, compile_path(path)[0], operation) for method, path, operation in HTTP_OPERATIONS
)


def http_operation(method: str, path: str) -> str | None:
    """The operation a request is for; None when no route serves it."""
    method = "GET" if method == "HEAD" else method
    for route_method, pattern, operation in _COMPILED:
        if route_method == method and pattern.match(path):
            return operation
    return None


class BearerAuth:
    """Answers 401/403 itself, or passes the request on to ``app``."""

    def __init__(
        self,
        app: ASGIApp,
        authenticator: Authenticator,
        operation_for: Callable[[str, str], str | None],
    ) -> None:
        self.app = app
        self.authenticator = authenticator
        self.operation_for = operation_for

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        operation = self.operation_for(scope["method"], scope["path"])
        needed: Scope | None = None
        if operation is not None:
            needed = OPERATION_SCOPES[operation]
            if needed is None:  # open: health and readiness
                await self.app(scope, receive, send)
                return
        authorization = None
        for key, value in scope["headers"]:
            if key.lower() == b"authorization":
                authorization = value.decode("latin-1")
                break
        try:
            await self.authenticator.authorize(authorization, needed, operation or "")
        except SluiceError as exc:
            await _refuse(exc, send)
            return
        await self.app(scope, receive, send)


def refusal_parts(exc: SluiceError) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """Status, body and headers (with the RFC 6750 challenge) refusing a request; shared
    with the raw protocol route (``serving.http.raw_route``)."""
    status, body, headers = error_parts(exc)
    if exc.code is ErrorCode.UNAUTHENTICATED:
        challenge = 'Bearer realm="sluice"'
        if not isinstance(exc, MissingToken):
            challenge += ', error="invalid_token"'
        headers.append((b"www-authenticate", challenge.encode()))
    elif exc.code is ErrorCode.PERMISSION_DENIED:
        headers.append((b"www-authenticate", b'Bearer realm="sluice", error="insufficient_scope"'))
    headers += [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    return status, body, headers


async def _refuse(exc: SluiceError, send: Send) -> None:
    status, body, headers = refusal_parts(exc)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def protect_api(app: ASGIApp, authenticator: Authenticator | None) -> ASGIApp:
    """The inference API behind bearer tokens; ``app`` itself when authentication is off."""
    if authenticator is None:
        return app
    return BearerAuth(app, authenticator, http_operation)


def protect_metrics(app: ASGIApp, authenticator: Authenticator | None) -> ASGIApp:
    """The metrics port behind a token with the ``metrics`` scope (``--metrics-auth``)."""
    if authenticator is None:
        return app
    return BearerAuth(app, authenticator, lambda method, path: "Metrics")
