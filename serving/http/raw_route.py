"""The hot routes answered inside the HTTP/1.1 protocol, without an ASGI cycle.

Inference, liveness and readiness are the requests a server sees thousands of times a
second (load balancers probe health constantly). ``serving.http.protocol`` hands them
here instead of to the ASGI app: the request's body is read from uvicorn's per-request
cycle (so keep-alive, pipelining, chunked bodies, ``Expect: 100-continue`` and every
slow-client limit of the protocol stay as they are) and the answer is written to the
transport in one call, skipping the ASGI message dicts, header validation and starlette.
Every other route, and every method these paths do not serve, goes to the ASGI app.

Behaviour is the ASGI routes': the same body reading (``read_body``: size limit before and
after decompression), the same codecs (``infer_answer``), the same errors
(``error_parts``) and, with authentication on, the same bearer-token checks and refusals
(``refusal_parts``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, cast

from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from serving.auth import OPERATION_SCOPES
from serving.errors import SluiceError
from serving.http import response_codec
from serving.http.auth import refusal_parts
from serving.http.infer_route import (
    INFER_PATH,
    Receive,
    error_parts,
    infer_answer,
    read_body,
)

if TYPE_CHECKING:
    from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

    from serving.auth import Authenticator
    from serving.core import InferenceCore

__all__ = ["RawRoutes"]

log = logging.getLogger("sluice.http")

Headers = list[tuple[bytes, bytes]]

_JSON = (b"content-type", b"application/json")
# The answer headers every response repeats, encoded once.
_ENCODED = {
    ("Content-Type", media): (b"content-type", media.encode())
    for media in ("application/json", "application/octet-stream", "application/msgpack")
}
_LIVE = "/v2/health/live"
_READY = "/v2/health/ready"


def _health_body(field: bytes, ok: bool) -> bytes:
    # What starlette's JSONResponse renders for {field: ok}.
    return b'{"%s":%s}' % (field, b"true" if ok else b"false")


class RawRoutes:
    """``handle(cycle)``: a coroutine answering the request, or None for the ASGI app."""

    def __init__(self, core: InferenceCore, authenticator: Authenticator | None) -> None:
        self.core = core
        self.authenticator = authenticator
        self.limit = core.settings.max_request_bytes

    def handle(self, cycle: RequestResponseCycle) -> Coroutine[Any, Any, None] | None:
        scope = cycle.scope
        method = scope["method"]
        if method == "POST":
            match = INFER_PATH.match(scope["path"])
            if match is not None:
                return self._run(cycle, self._infer(cycle, match.group(1), match.group(2) or ""))
        elif method == "GET":
            path = scope["path"]
            if path == _LIVE:
                return self._run(cycle, self._health(b"live", self.core.live))
            if path == _READY:
                return self._run(cycle, self._health(b"ready", self.core.ready))
        return None

    async def _run(
        self,
        cycle: RequestResponseCycle,
        answer: Coroutine[Any, Any, tuple[int, bytes, Headers]],
    ) -> None:
        try:
            try:
                status, body, headers = await answer
            except Exception as exc:
                log.error("unexpected error on %s", cycle.scope["path"], exc_info=exc)
                body = response_codec.encode_error(f"internal error: {type(exc).__name__}: {exc}")
                status, headers = 500, [_JSON, (b"content-length", b"%d" % len(body))]
            except BaseException:  # cancelled: nothing more will be written
                if not cycle.response_complete:
                    cycle.transport.close()
                raise
            if cycle.flow.write_paused and not cycle.disconnected:
                await cycle.flow.drain()
            _write(cycle, status, body, headers)
        finally:
            cycle.on_response = _nothing

    async def _health(self, field: bytes, check: Callable[[], bool]) -> tuple[int, bytes, Headers]:
        ok = check()
        body = _health_body(field, ok)
        return (200 if ok else 503), body, [(b"content-length", b"%d" % len(body)), _JSON]

    async def _infer(
        self, cycle: RequestResponseCycle, name: str, version: str
    ) -> tuple[int, bytes, Headers]:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in cycle.scope["headers"]}
        if self.authenticator is not None:
            try:
                await self.authenticator.authorize(
                    headers.get("authorization"), OPERATION_SCOPES["ModelInfer"], "ModelInfer"
                )
            except SluiceError as exc:
                return refusal_parts(exc)
        try:
            receive = cast("Receive", cycle.receive)  # its events are plain dicts
            body = await read_body(receive, headers, self.limit)
            payload, out_headers = await infer_answer(self.core, name, version, headers, body)
        except SluiceError as exc:
            status, payload, raw_headers = error_parts(exc)
            raw_headers.append(_JSON)
            raw_headers.append((b"content-length", b"%d" % len(payload)))
            return status, payload, raw_headers
        raw_headers = [
            _ENCODED.get((k, v)) or (k.lower().encode(), v.encode()) for k, v in out_headers.items()
        ]
        raw_headers.append((b"content-length", b"%d" % len(payload)))
        return 200, payload, raw_headers


def _nothing() -> None:
    """The cycle's ``on_response`` once answered (uvicorn calls it when the response ends)."""


def _write(cycle: RequestResponseCycle, status: int, body: bytes, headers: Headers) -> None:
    """The whole response in one write, with the cycle's state as uvicorn's ``send`` leaves
    it (the caller has waited for a paused transport to drain)."""
    if cycle.disconnected or cycle.response_complete:
        return  # gone, or refused by the protocol (which answered in our place)
    cycle.response_started = True
    cycle.waiting_for_100_continue = False
    parts = [STATUS_LINE[status]]
    for name, value in headers:
        parts += (name, b": ", value, b"\r\n")
    if not cycle.keep_alive:
        parts.append(b"connection: close\r\n")
    parts += (b"\r\n", body)
    cycle.transport.write(b"".join(parts))
    cycle.response_complete = True
    cycle.message_event.set()
    if not cycle.keep_alive:
        cycle.transport.close()
    cycle.on_response()
