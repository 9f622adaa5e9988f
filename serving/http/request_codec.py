"""HTTP request bodies -> ``InferRequest``: JSON, the binary tensor extension, raw and msgpack.

Pure functions over bytes and header values, so the starlette app stays a thin
translator and every malformed body is testable without a server.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import re
import zlib
from dataclasses import dataclass
from typing import Any

import msgpack  # type: ignore[import-untyped]

from serving import codecs
from serving.codecs._common import MAX_DIMS, element_count, shape_text, value_repr
from serving.datatypes import DataType, by_name
from serving.errors import InvalidArgument, PayloadTooLarge, SluiceError, Unsupported
from serving.shared_memory import reference
from serving.types import UNRESOLVED, InferInput, InferRequest, RawInputSpec, RequestedOutput

__all__ = [
    "MSGPACK_TYPES",
    "RawInputSpec",
    "decode_body",
    "decode_body_async",
    "decode_infer_request",
    "parse_header_length",
    "parse_json",
    "raw_request",
    "raw_tensor",
]

MSGPACK_TYPES = frozenset({"application/msgpack", "application/x-msgpack"})
# Inflation steps take at most this much input and give at most this much output each.
_CHUNK = 1 << 16
# decode_body_async inflates this much (input read + output written) on the event loop,
# then finishes in a worker thread.
INLINE_WORK = 1 << 18
# A gzip member costs a fresh inflater whatever its size, so a body may hold one member
# per 16 KiB of the size limit (at least 64); bgzip's 64 KiB blocks fit well within that.
_MEMBER_SPAN = 16 << 10
_MEMBER_WORK = 1 << 10
# A JSON number that might not fit a 64-bit float: a 3-digit positive exponent, or so many
# digits that a 2-digit exponent could carry it past 1.8e308. Only then are floats parsed
# one by one (a Python call each), so the common body keeps json's fast path.
_HUGE_NUMBER = re.compile(rb"[eE]\+?0*[1-9][0-9]{2}|[0-9]{210}")


def decode_body(body: bytes, content_encoding: str | None, max_size: int) -> bytes:
    """Undo ``Content-Encoding``; the decoded body may not exceed ``max_size`` bytes."""
    inflation = _inflation(body, content_encoding, max_size)
    if inflation is None:
        return _checked_size(body, max_size)
    inflation.run()
    return inflation.result()


async def decode_body_async(body: bytes, content_encoding: str | None, max_size: int) -> bytes:
    """``decode_body`` that keeps the event loop free: a body starts inflating on the loop
    and, past ``INLINE_WORK``, finishes in a worker thread (zlib releases the GIL there)."""
    inflation = _inflation(body, content_encoding, max_size)
    if inflation is None:
        return _checked_size(body, max_size)
    if not inflation.run(INLINE_WORK):
        await asyncio.to_thread(inflation.run)
    return inflation.result()


def _checked_size(body: bytes, max_size: int) -> bytes:
    if len(body) > max_size:
        raise PayloadTooLarge(f"request body is larger than the limit of {max_size} bytes")
    return body


def _inflation(body: bytes, content_encoding: str | None, max_size: int) -> _Inflation | None:
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip"):
        return _Inflation(body, zlib.MAX_WBITS | 16, "gzip", max_size, members=True)
    if encoding == "deflate":
        # RFC 9110 "deflate" is the zlib format, but some clients send raw deflate.
        wbits = zlib.MAX_WBITS if _looks_like_zlib(body) else -zlib.MAX_WBITS
        return _Inflation(body, wbits, "deflate", max_size, members=False)
    raise Unsupported(
        f"unsupported Content-Encoding {content_encoding!r}; expected gzip, deflate or identity"
    )


def _looks_like_zlib(body: bytes) -> bool:
    return len(body) >= 2 and body[0] & 0x0F == 8 and (body[0] << 8 | body[1]) % 31 == 0


class _Inflation:
    """One body's decompression in bounded steps, so it may pause and resume elsewhere.

    Each step hands zlib at most ``_CHUNK`` bytes of input and takes at most ``_CHUNK``
    bytes of output, so the work is linear in input plus output (zlib copies its
    unconsumed input on every call) and stops one byte past ``max_size``. For gzip,
    the data left after one member's end starts the next member.
    """

    def __init__(self, body: bytes, wbits: int, what: str, max_size: int, *, members: bool):
        self._view = memoryview(body)
        self._pos = 0
        self._data: bytes | memoryview = b""
        self._wbits = wbits
        self._what = what
        self._max_size = max_size
        self._members_left = max(64, max_size // _MEMBER_SPAN) if members else 1
        self._inflater = zlib.decompressobj(wbits)
        self._out = bytearray()
        self._done = False

    def run(self, budget: int | None = None) -> bool:
        """Inflate until the end, or until about ``budget`` bytes of work; True when done."""
        work = 0
        while not self._done:
            if budget is not None and work >= budget:
                return False
            work += self._step()
        return True

    def result(self) -> bytes:
        return bytes(self._out)

    def _step(self) -> int:
        view, out = self._view, self._out
        if not self._data and self._pos < len(view):
            self._data = view[self._pos : self._pos + _CHUNK]
            self._pos += len(self._data)
        fed = len(self._data)
        room = self._max_size + 1 - len(out)
        try:
            piece = self._inflater.decompress(self._data, min(_CHUNK, room))
        except zlib.error as exc:
            raise InvalidArgument(f"malformed {self._what} request body: {exc}") from None
        out += piece
        if len(out) > self._max_size:
            raise PayloadTooLarge(
                f"decompressed request body is larger than the limit of {self._max_size} bytes"
            )
        self._data = self._inflater.unconsumed_tail
        if self._inflater.eof:
            self._data = self._inflater.unused_data
            left = len(self._data) + len(view) - self._pos
            if not left:
                self._done = True
            elif self._members_left <= 1:
                raise self._trailing(left)
            else:
                self._members_left -= 1
                self._inflater = zlib.decompressobj(self._wbits)
            return fed + len(piece) + _MEMBER_WORK
        if not piece and not self._data and self._pos == len(view):
            raise InvalidArgument(f"malformed {self._what} request body: the stream is truncated")
        return fed + len(piece)

    def _trailing(self, left: int) -> InvalidArgument:
        if self._what != "gzip":
            return InvalidArgument(
                f"malformed {self._what} request body: {left} bytes after the end of the stream"
            )
        limit = max(64, self._max_size // _MEMBER_SPAN)
        return InvalidArgument(
            f"gzip request body has more than {limit} members (one per 16 KiB of the "
            f"{self._max_size}-byte limit, at least 64 are allowed)"
        )


def parse_header_length(raw: str) -> int:
    """``Inference-Header-Content-Length``: ASCII digits only, as HTTP lengths are written
    (no sign, underscores, other scripts' digits or inner spaces, which ``int()`` accepts)."""
    text = raw.strip(" \t")
    if not (text.isascii() and text.isdigit()):
        raise InvalidArgument(
            f"Inference-Header-Content-Length {raw!r} is not a non-negative integer"
        )
    if len(text) > 18:
        raise InvalidArgument(f"Inference-Header-Content-Length {raw!r} is out of range")
    return int(text)


def decode_infer_request(
    body: bytes,
    *,
    model_name: str,
    model_version: str,
    content_type: str | None,
    header_length: int | None,
    raw_input: RawInputSpec | None = None,
) -> InferRequest:
    """Decode an infer request body.

    ``header_length`` is the value of ``Inference-Header-Content-Length`` (None when
    absent); 0 means the whole body is the raw bytes of ``raw_input``. Any content
    type other than msgpack is read as JSON, as Triton does, so ``curl -d`` works.
    An input placed in system shared memory gets ``UNRESOLVED`` data (and the request
    ``shared_memory_inputs``): the core reads it.
    """
    if header_length == 0:
        return _decode_raw(body, model_name, model_version, raw_input)
    if header_length is not None:
        if header_length < 0 or header_length > len(body):
            raise InvalidArgument(
                f"Inference-Header-Content-Length {header_length} is out of range for a "
                f"{len(body)}-byte body"
            )
        binary: memoryview | None = memoryview(body)[header_length:]
        return _decode_json(memoryview(body)[:header_length], model_name, model_version, binary)
    if _media_type(content_type) in MSGPACK_TYPES:
        return _build_request(
            _parse_msgpack(body), model_name, model_version, None, msgpack_form=True
        )
    return _decode_json(body, model_name, model_version, None)


@dataclass(frozen=True, slots=True)
class _DataText:
    """An input's "data" array left as JSON text, for the codec to scan into an array."""

    doc: bytes | memoryview
    start: int
    end: int


class _SlowPath(Exception):
    """The data text is not for the scanner: decode the whole document the other way."""


def _decode_json(
    doc: bytes | memoryview, model_name: str, model_version: str, binary: memoryview | None
) -> InferRequest:
    """A JSON request document. Where the codec twin splits the "data" arrays out (the
    native one does), json parses only the rest and the arrays are scanned from their
    bytes; anything that is not a clean success is decoded again the whole-document way,
    so every error and every answer is the one that way gives."""
    split = codecs.split_json_data(doc)
    if split is not None:
        rest, spans = split
        try:
            header = parse_json(rest)
            for position, start, end in spans:
                header["inputs"][position]["data"] = _DataText(doc, start, end)
            return _build_request(header, model_name, model_version, binary, msgpack_form=False)
        except (SluiceError, _SlowPath):
            pass
    return _build_request(parse_json(doc), model_name, model_version, binary, msgpack_form=False)


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def parse_json(body: bytes | memoryview) -> Any:
    """Any JSON request document (every HTTP route reads JSON through this), as Triton reads it: ``NaN``, ``Infinity`` and ``-Infinity`` are values, but a
    number too large for a 64-bit float (``1e309``) is refused rather than made infinite."""
    data = bytes(body)
    try:
        if _HUGE_NUMBER.search(data) is None:
            return json.loads(data)
        return json.loads(data, parse_float=_finite_float)
    except UnicodeDecodeError:
        raise InvalidArgument("malformed JSON request: the body is not valid UTF-8") from None
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"malformed JSON request: {exc}") from None
    except RecursionError:
        raise InvalidArgument("malformed JSON request: nested too deeply to parse") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        reason = str(exc).split(";", 1)[0]
        raise InvalidArgument(f"malformed JSON request: {reason}") from None


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (math.inf, -math.inf):
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise InvalidArgument(
            f"malformed JSON request: the number {shown} is out of range of a 64-bit float "
            "(write NaN, Infinity or -Infinity for non-finite values)"
        )
    return value


# msgpack raises these with an empty message.
_MSGPACK_WHY = {
    msgpack.FormatError: "a reserved or unknown type byte",
    msgpack.StackError: "nested too deeply (more than 1024 levels)",
}


def _parse_msgpack(body: bytes) -> Any:
    try:
        return msgpack.unpackb(body, raw=False)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        reason = str(exc) or _MSGPACK_WHY.get(type(exc), type(exc).__name__)
        raise InvalidArgument(f"malformed msgpack request: {reason}") from None


def _decode_raw(
    body: bytes, model_name: str, model_version: str, raw_input: RawInputSpec | None
) -> InferRequest:
    if raw_input is None:
        raise InvalidArgument(
            "Inference-Header-Content-Length: 0 sends the whole body as the raw bytes of a "
            f"single input, but model {model_name!r} does not have exactly one input"
        )
    request = raw_request(model_name, model_version)
    return dataclasses.replace(request, inputs=(raw_tensor(body, raw_input),))


def raw_request(model_name: str, model_version: str) -> InferRequest:
    """A raw-body request (``Inference-Header-Content-Length: 0``) before its one input is
    decoded: the core decodes it (``raw_tensor``) for the version that answers."""
    return InferRequest(
        model_name=model_name,
        model_version=model_version,
        inputs=(),
        parameters={"binary_data_output": True},  # no JSON header to ask otherwise
    )


def raw_tensor(body: bytes, raw_input: RawInputSpec) -> InferInput:
    """The whole of ``body`` as the raw bytes of ``raw_input``."""
    datatype = by_name(raw_input.datatype)
    shape = _raw_shape(raw_input, datatype, len(body))
    data = codecs.binary_to_array(body, datatype, shape, raw_input.name)
    return InferInput(raw_input.name, datatype.name, shape, data)


def _raw_shape(raw_input: RawInputSpec, datatype: DataType, size: int) -> tuple[int, ...]:
    shape = tuple(raw_input.shape)
    unknown = [i for i, d in enumerate(shape) if d < 0]
    if not unknown:
        return shape
    if len(unknown) > 1 or datatype.is_bytes:
        raise InvalidArgument(
            f"input {raw_input.name!r} has shape {shape_text(shape)}: a raw body can fill at "
            "most one variable dimension, and only of a fixed-size datatype"
        )
    known = element_count(tuple(d for d in shape if d >= 0)) * datatype.itemsize
    if known == 0 or size % known:
        raise InvalidArgument(
            f"input {raw_input.name!r}: a raw body of {size} bytes does not fit shape "
            f"{shape_text(shape)} of {datatype.name}"
        )
    return (*shape[: unknown[0]], size // known, *shape[unknown[0] + 1 :])


def _build_request(
    header: Any,
    model_name: str,
    model_version: str,
    binary: memoryview | None,
    *,
    msgpack_form: bool,
) -> InferRequest:
    if not isinstance(header, dict):
        raise InvalidArgument(f"the request must be an object, got {_kind(header)}")
    request_id = header.get("id", "")
    if not isinstance(request_id, str):
        raise InvalidArgument(f"'id' must be a string, got {_kind(request_id)}")
    parameters = _parameters(header.get("parameters"), "the request")
    if "inputs" not in header:
        raise InvalidArgument("the request has no 'inputs'")
    raw_inputs = header["inputs"]
    if not isinstance(raw_inputs, list):
        raise InvalidArgument(f"'inputs' must be a list, got {_kind(raw_inputs)}")

    inputs: list[InferInput] = []
    seen: set[str] = set()
    offset = 0
    in_shared_memory = False
    for position, raw in enumerate(raw_inputs):
        tensor, used = _decode_input(raw, position, binary, offset, msgpack_form)
        if tensor.data is UNRESOLVED:
            in_shared_memory = True
        if tensor.name in seen:
            raise InvalidArgument(f"input {tensor.name!r} appears more than once")
        seen.add(tensor.name)
        inputs.append(tensor)
        offset += used
    if binary is not None and offset != len(binary):
        raise InvalidArgument(
            f"{len(binary) - offset} bytes of binary data after the JSON header are not "
            "claimed by any input's binary_data_size"
        )

    return InferRequest(
        model_name=model_name,
        model_version=model_version,
        inputs=tuple(inputs),
        id=request_id,
        outputs=_decode_outputs(header.get("outputs")),
        parameters=parameters,
        shared_memory_inputs=in_shared_memory,
    )


def _decode_input(
    raw: Any,
    position: int,
    binary: memoryview | None,
    offset: int,
    msgpack_form: bool,
) -> tuple[InferInput, int]:
    """One input tensor, plus how many bytes of the binary section it consumed."""
    if not isinstance(raw, dict):
        raise InvalidArgument(f"inputs[{position}] must be an object, got {_kind(raw)}")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidArgument(f"inputs[{position}] needs a non-empty string 'name'")
    where = f"input {name!r}"
    if "datatype" not in raw:
        raise InvalidArgument(f"{where} has no 'datatype'")
    try:
        datatype = by_name(raw["datatype"])
    except SluiceError as exc:
        raise InvalidArgument(f"{where}: {exc.message}") from None
    shape = _shape(raw.get("shape"), where)
    parameters = _parameters(raw.get("parameters"), where)
    size = parameters.pop("binary_data_size", None)
    has_data = "data" in raw

    if has_data and size is not None:
        raise InvalidArgument(f"{where} has both 'data' and parameters.binary_data_size")
    if has_data:
        data = raw["data"]
        if type(data) is _DataText:
            array = codecs.json_text_to_array(
                data.doc, data.start, data.end, datatype, shape, name=name
            )
            if array is None:
                raise _SlowPath
        elif msgpack_form and isinstance(data, bytes):
            array = codecs.binary_to_array(data, datatype, shape, name)
        else:
            array = codecs.json_to_array(data, datatype, shape, name=name)
        return InferInput(name, datatype.name, shape, array, parameters), 0
    if size is None:
        if reference(parameters, where) is not None:  # the core reads it
            return InferInput(name, datatype.name, shape, UNRESOLVED, parameters), 0
        raise InvalidArgument(f"{where} has neither 'data' nor parameters.binary_data_size")
    if msgpack_form:
        raise InvalidArgument(
            f"{where}: msgpack requests carry tensor bytes in 'data' as bin, "
            "not with binary_data_size"
        )
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise InvalidArgument(
            f"{where}: binary_data_size must be a non-negative integer, got {size!r}"
        )
    if binary is None:
        raise InvalidArgument(
            f"{where} has binary_data_size but the request has no binary section "
            "(Inference-Header-Content-Length header missing)"
        )
    left = len(binary) - offset
    if size > left:
        raise InvalidArgument(
            f"{where}: binary_data_size {size} overruns the binary section ({left} bytes left)"
        )
    array = codecs.binary_to_array(binary[offset : offset + size], datatype, shape, name)
    return InferInput(name, datatype.name, shape, array, parameters), size


def _shape(raw: Any, where: str) -> tuple[int, ...]:
    if raw is None:
        raise InvalidArgument(f"{where} has no 'shape'")
    if not isinstance(raw, list):
        raise InvalidArgument(f"{where}: 'shape' must be a list of integers, got {_kind(raw)}")
    if len(raw) > MAX_DIMS:
        raise InvalidArgument(
            f"{where}: shape has {len(raw)} dimensions; at most {MAX_DIMS} are allowed"
        )
    for dim in raw:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 0:
            shown = ", ".join(value_repr(d) for d in raw)
            raise InvalidArgument(
                f"{where}: 'shape' entries must be non-negative integers, got [{shown}]"
            )
    return tuple(raw)


def _parameters(raw: Any, where: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidArgument(f"{where}: 'parameters' must be an object, got {_kind(raw)}")
    return dict(raw)


def _decode_outputs(raw: Any) -> tuple[RequestedOutput, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise InvalidArgument(f"'outputs' must be a list, got {_kind(raw)}")
    outputs: list[RequestedOutput] = []
    seen: set[str] = set()
    for position, item in enumerate(raw):
        if not isinstance(item, dict):
            raise InvalidArgument(f"outputs[{position}] must be an object, got {_kind(item)}")
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidArgument(f"outputs[{position}] needs a non-empty string 'name'")
        if name in seen:
            raise InvalidArgument(f"output {name!r} is requested more than once")
        seen.add(name)
        outputs.append(
            RequestedOutput(name, _parameters(item.get("parameters"), f"output {name!r}"))
        )
    return tuple(outputs)


def _kind(value: Any) -> str:
    """How a decoded value reads to the client (JSON vocabulary)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bytes):
        return "binary data"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
