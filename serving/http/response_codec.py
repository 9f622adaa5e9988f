"""``InferResponse`` -> HTTP body and headers: JSON, the binary tensor extension and msgpack."""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping
from typing import Any

import msgpack  # type: ignore[import-untyped]

from serving import codecs
from serving.datatypes import by_name
from serving.types import InferOutput, InferRequest, InferResponse

__all__ = [
    "COMPRESS_THRESHOLD",
    "HEADER_LENGTH",
    "encode_body",
    "encode_error",
    "encode_infer_response",
    "wants_msgpack",
]

HEADER_LENGTH = "Inference-Header-Content-Length"
# Below this size compression costs more than the bytes it saves.
COMPRESS_THRESHOLD = 1024
# Level 1: tensors compress poorly, and the server should not spend its CPU squeezing them.
_COMPRESS_LEVEL = 1
_MSGPACK_TYPES = ("application/msgpack", "application/x-msgpack")
_COMPACT = (",", ":")
_quote = json.encoder.encode_basestring_ascii
# json.dumps(value, separators=_COMPACT), without building an encoder for every call.
_compact_json = json.JSONEncoder(separators=_COMPACT).encode
# Outputs of fewer elements go into the one json.dumps of the answer as lists: below this
# size that is quicker than writing the answer in pieces around their text.
_TEXT_MIN = 32


def wants_msgpack(accept: str | None) -> bool:
    """Whether ``Accept`` names a msgpack media type (with a non-zero q)."""
    if not accept or "msgpack" not in accept.lower():
        return False
    return any(media in _MSGPACK_TYPES and q > 0 for media, q in _accepted(accept))


def encode_infer_response(
    resp: InferResponse, request: InferRequest, *, accept: str | None
) -> tuple[bytes, dict[str, str]]:
    """The body and headers (``Content-Type``, maybe ``Inference-Header-Content-Length``).

    An output is binary when its requested ``binary_data`` says so, else when the
    request-level ``binary_data_output`` does; FP16 and BF16 outputs are always
    binary, since JSON cannot carry them (clients read ``binary_data_size``
    whichever way the output comes back). msgpack answers are described in
    ``docs/msgpack.md``.
    """
    if wants_msgpack(accept):
        return _encode_msgpack(resp, request)
    requested = {o.name: o.parameters for o in request.outputs}
    default_binary = _truthy(request.parameters.get("binary_data_output", False))
    placed = resp.placed
    outputs: list[dict[str, Any]] = []
    texts: dict[int, bytes] = {}
    chunks: list[bytes | memoryview] = []
    for out in resp.outputs:
        datatype = by_name(out.datatype)
        entry: dict[str, Any] = {
            "name": out.name,
            "datatype": out.datatype,
            "shape": list(out.shape),
        }
        where = placed.get(out.name)
        if where is not None:
            entry["parameters"] = dict(where)
        elif _is_binary(requested.get(out.name), default_binary) or not datatype.json_ok:
            chunk = codecs.array_to_binary(out.data, datatype)
            entry["parameters"] = {"binary_data_size": len(chunk)}
            chunks.append(chunk)
        elif out.data.size < _TEXT_MIN:
            entry["data"] = codecs.array_to_json(out.data, datatype)
        else:
            texts[len(outputs)] = codecs.array_to_json_text(out.data, datatype)
        outputs.append(entry)
    header = _json_header(_envelope(resp, request, outputs), texts)
    if not chunks:
        return header, {"Content-Type": "application/json"}
    body = b"".join([header, *chunks])
    return body, {
        "Content-Type": "application/octet-stream",
        HEADER_LENGTH: str(len(header)),
    }


def _json_header(envelope: dict[str, Any], texts: dict[int, bytes]) -> bytes:
    """``json.dumps(envelope)`` (compact), written piece by piece so that each output's
    "data" text goes in as the codec wrote it from the array: no Python object per element."""
    if not texts:
        return _compact_json(envelope).encode()
    pieces: list[bytes] = []
    text: list[str] = ["{"]
    for key, value in envelope.items():
        if key != "outputs":
            text += [_quote(key), ":", _dumps(value), ","]
    text.append('"outputs":[')
    for index, entry in enumerate(envelope["outputs"]):
        if index:
            text.append(",")
        text.append("{")
        for key, value in entry.items():
            text += [_quote(key), ":", _dumps(value), ","]
        data = texts.get(index)
        if data is None:
            text[-1] = "}"
            continue
        text.append('"data":')
        pieces += ["".join(text).encode(), data]
        text = ["}"]
    text.append("]}")
    pieces.append("".join(text).encode())
    return b"".join(pieces)


def _dumps(value: Any) -> str:
    if type(value) is str:
        return _quote(value)
    return _compact_json(value)


def _is_binary(parameters: Mapping[str, Any] | None, default: bool) -> bool:
    if parameters is not None and "binary_data" in parameters:
        return _truthy(parameters["binary_data"])
    return default


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _envelope(
    resp: InferResponse, request: InferRequest, outputs: list[dict[str, Any]]
) -> dict[str, Any]:
    body: dict[str, Any] = {"model_name": resp.model_name, "model_version": resp.model_version}
    request_id = resp.id or request.id
    if request_id:
        body["id"] = request_id
    if resp.parameters:
        body["parameters"] = dict(resp.parameters)
    body["outputs"] = outputs
    return body


def _encode_msgpack(resp: InferResponse, request: InferRequest) -> tuple[bytes, dict[str, str]]:
    placed = resp.placed
    outputs = [
        _msgpack_output(out) if out.name not in placed else _placed_output(out, placed[out.name])
        for out in resp.outputs
    ]
    body = msgpack.packb(_envelope(resp, request, outputs), use_bin_type=True)
    return body, {"Content-Type": "application/msgpack"}


def _msgpack_output(out: InferOutput) -> dict[str, Any]:
    datatype = by_name(out.datatype)
    return {
        "name": out.name,
        "datatype": out.datatype,
        "shape": list(out.shape),
        "data": codecs.array_to_binary(out.data, datatype),
    }


def _placed_output(out: InferOutput, where: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "name": out.name,
        "datatype": out.datatype,
        "shape": list(out.shape),
        "parameters": dict(where),
    }


def encode_error(message: str) -> bytes:
    """The protocol's error body, ``{"error": message}``."""
    return json.dumps({"error": message}).encode()


def encode_body(body: bytes, accept_encoding: str | None) -> tuple[bytes, str | None]:
    """Compress with gzip or deflate when ``Accept-Encoding`` allows and the body is large.

    Returns the (possibly new) body and the ``Content-Encoding`` to send, or None.
    """
    if len(body) < COMPRESS_THRESHOLD:
        return body, None
    accepted = dict(_accepted(accept_encoding))
    wildcard = accepted.get("*", 0.0) > 0

    def allows(coding: str) -> bool:
        return accepted[coding] > 0 if coding in accepted else wildcard

    if allows("gzip"):
        compressor = zlib.compressobj(_COMPRESS_LEVEL, zlib.DEFLATED, zlib.MAX_WBITS | 16)
        return compressor.compress(body) + compressor.flush(), "gzip"
    if allows("deflate"):
        return zlib.compress(body, _COMPRESS_LEVEL), "deflate"
    return body, None


def _accepted(header: str | None) -> list[tuple[str, float]]:
    """``Accept``-style entries as (lower-cased value, quality), other parameters dropped."""
    entries: list[tuple[str, float]] = []
    for part in (header or "").split(","):
        media, *params = (p.strip() for p in part.split(";"))
        if not media:
            continue
        quality = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        entries.append((media.lower(), quality))
    return entries
