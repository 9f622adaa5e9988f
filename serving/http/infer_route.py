"""The infer route, served as a raw ASGI endpoint in front of the starlette app.

Inference is the hot route: it skips starlette's routing, middleware and
request/response objects and talks ASGI directly. Everything else goes to
starlette. Behaviour (errors, statuses, headers) is the same as the other routes.
"""

from __future__ import annotations

import functools
import logging
import math
import re
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from serving.core import InferenceCore
from serving.errors import InvalidArgument, PayloadTooLarge, SluiceError
from serving.http import request_codec, response_codec
from serving.http.errors import status_for

__all__ = ["INFER_PATH", "InferRoute", "error_parts", "infer_answer", "read_body"]

log = logging.getLogger("sluice.http")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

INFER_PATH = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?/infer$")


def error_parts(exc: SluiceError) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """Status, body and extra headers for an error, shared by every HTTP route."""
    headers = []
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        headers.append((b"retry-after", str(max(1, math.ceil(retry_after))).encode()))
    return status_for(exc.code), response_codec.encode_error(exc.message), headers


async def _receive_body(receive: Receive) -> Message:
    message = await receive()
    if message["type"] == "http.disconnect":  # gone, or refused by serving.http.protocol
        raise InvalidArgument("the client went away before sending the whole request body")
    return message


async def read_body(receive: Receive, headers: Mapping[str, str], limit: int) -> bytes:
    """The whole request body, decompressed, refused past ``limit`` bytes (both ways)."""
    declared = headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise InvalidArgument(f"invalid Content-Length {declared!r}") from None
        if size > limit:
            raise PayloadTooLarge(
                f"request body of {size} bytes exceeds the limit of {limit} bytes"
            )
    message = await _receive_body(receive)
    body = message.get("body", b"")
    if message.get("more_body", False):
        chunks = [body]
        total = len(body)
        while message.get("more_body", False):
            message = await _receive_body(receive)
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > limit:
                raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
        body = b"".join(chunks)
    elif len(body) > limit:
        raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
    encoding = headers.get("content-encoding")
    if encoding and encoding.strip().lower() != "identity":
        body = await request_codec.decode_body_async(body, encoding, limit)
    return body


class InferRoute:
    """ASGI app: POST .../infer handled here, every other request passed to ``fallback``."""

    def __init__(self, core: InferenceCore, fallback: ASGIApp) -> None:
        self.core = core
        self.fallback = fallback
        self.limit = core.settings.max_request_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            match = INFER_PATH.match(scope["path"])
            if match is not None:
                await self._infer(scope, receive, send, match.group(1), match.group(2) or "")
                return
        await self.fallback(scope, receive, send)

    async def _infer(
        self, scope: Scope, receive: Receive, send: Send, name: str, version: str
    ) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            body = await read_body(receive, headers, self.limit)
            payload, out_headers = await self._answer(name, version, headers, body)
            status = 200
            raw_headers = [(k.lower().encode(), v.encode()) for k, v in out_headers.items()]
        except SluiceError as exc:
            status, payload, raw_headers = error_parts(exc)
            raw_headers.append((b"content-type", b"application/json"))
        except Exception as exc:
            log.exception("unexpected error on POST %s", scope["path"])
            status = 500
            payload = response_codec.encode_error(f"internal error: {type(exc).__name__}: {exc}")
            raw_headers = [(b"content-type", b"application/json")]
        raw_headers.append((b"content-length", str(len(payload)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": payload})

    async def _answer(
        self, name: str, version: str, headers: dict[str, str], body: bytes
    ) -> tuple[bytes, dict[str, str]]:
        return await infer_answer(self.core, name, version, headers, body)


async def infer_answer(
    core: InferenceCore, name: str, version: str, headers: Mapping[str, str], body: bytes
) -> tuple[bytes, dict[str, str]]:
    """The body and headers answering one infer request; ``headers`` have lower-case names.

    Shared by this ASGI route and the raw protocol route (``serving.http.raw_route``).
    """
    raw = headers.get("inference-header-content-length")
    header_length = None if raw is None else request_codec.parse_header_length(raw)
    if header_length == 0:
        # A raw body takes its shape from the version that answers: the core decodes it
        # once the router has picked one.
        infer_request = request_codec.raw_request(name, version)
        response = await core.infer_raw(
            infer_request, functools.partial(request_codec.raw_tensor, body), headers
        )
    else:
        infer_request = request_codec.decode_infer_request(
            body,
            model_name=name,
            model_version=version,
            content_type=headers.get("content-type"),
            header_length=header_length,
        )
        response = await core.infer(infer_request, headers)
    payload, out_headers = response_codec.encode_infer_response(
        response, infer_request, accept=headers.get("accept")
    )
    accept_encoding = headers.get("accept-encoding")
    if accept_encoding:
        payload, encoding = response_codec.encode_body(payload, accept_encoding)
        if encoding:
            out_headers["Content-Encoding"] = encoding
    return payload, out_headers
