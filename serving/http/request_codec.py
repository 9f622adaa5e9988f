"""HTTP request bodies -> ``InferRequest``: JSON, the binary tensor extension, raw and msgpack.

Pure functions over bytes and header values, so the starlette app stays a thin
translator and every malformed body is testable without a server.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from typing import Any

import msgpack  # type: ignore[import-untyped]

from serving import codecs
from serving.codecs._common import element_count, shape_text
from serving.datatypes import DataType, by_name
from serving.errors import InvalidArgument, PayloadTooLarge, SluiceError, Unsupported
from serving.shared_memory import SharedMemoryRegistry, disabled_error, reference
from serving.types import InferInput, InferRequest, RequestedOutput

__all__ = ["MSGPACK_TYPES", "RawInputSpec", "decode_body", "decode_infer_request"]

MSGPACK_TYPES = frozenset({"application/msgpack", "application/x-msgpack"})
_CHUNK = 1 << 16


@dataclass(frozen=True, slots=True)
class RawInputSpec:
    """The model's single input, which receives a raw body (``Inference-Header-Content-Length: 0``).

    ``shape`` is the full shape including a batch dimension of 1; at most one
    ``-1`` is allowed, and only for fixed-size datatypes, where the body size fixes it.
    """

    name: str
    datatype: str
    shape: tuple[int, ...]


def decode_body(body: bytes, content_encoding: str | None, max_size: int) -> bytes:
    """Undo ``Content-Encoding``; the decoded body may not exceed ``max_size`` bytes."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        result = body
    elif encoding in ("gzip", "x-gzip"):
        result = _inflate(body, zlib.MAX_WBITS | 16, "gzip", max_size, members=True)
    elif encoding == "deflate":
        # RFC 9110 "deflate" is the zlib format, but some clients send raw deflate.
        wbits = zlib.MAX_WBITS if _looks_like_zlib(body) else -zlib.MAX_WBITS
        result = _inflate(body, wbits, "deflate", max_size, members=False)
    else:
        raise Unsupported(
            f"unsupported Content-Encoding {content_encoding!r}; expected gzip, deflate or identity"
        )
    if len(result) > max_size:
        raise PayloadTooLarge(f"request body is larger than the limit of {max_size} bytes")
    return result


def _looks_like_zlib(body: bytes) -> bool:
    return len(body) >= 2 and body[0] & 0x0F == 8 and (body[0] << 8 | body[1]) % 31 == 0


def _inflate(body: bytes, wbits: int, what: str, max_size: int, *, members: bool) -> bytes:
    out = bytearray()
    data = body
    while True:
        inflater = zlib.decompressobj(wbits)
        try:
            while data:
                # Bounded output per step, so a zip bomb stops at max_size + 1 bytes.
                out += inflater.decompress(data, max(1, min(_CHUNK, max_size + 1 - len(out))))
                if len(out) > max_size:
                    raise PayloadTooLarge(
                        f"decompressed request body is larger than the limit of {max_size} bytes"
                    )
                data = inflater.unconsumed_tail
                if inflater.eof:
                    break
            out += inflater.flush()
        except zlib.error as exc:
            raise InvalidArgument(f"malformed {what} request body: {exc}") from None
        if not inflater.eof:
            raise InvalidArgument(f"malformed {what} request body: the stream is truncated")
        data = inflater.unused_data
        if not data:
            return bytes(out)
        if not members:
            raise InvalidArgument(
                f"malformed {what} request body: {len(data)} bytes after the end of the stream"
            )


def decode_infer_request(
    body: bytes,
    *,
    model_name: str,
    model_version: str,
    content_type: str | None,
    header_length: int | None,
    raw_input: RawInputSpec | None = None,
    shared_memory: SharedMemoryRegistry | None = None,
) -> InferRequest:
    """Decode an infer request body.

    ``header_length`` is the value of ``Inference-Header-Content-Length`` (None when
    absent); 0 means the whole body is the raw bytes of ``raw_input``. Any content
    type other than msgpack is read as JSON, as Triton does, so ``curl -d`` works.
    Inputs in system shared memory resolve through ``shared_memory`` (None: the
    extension is off).
    """
    if header_length == 0:
        return _decode_raw(body, model_name, model_version, raw_input)
    if header_length is not None:
        if header_length < 0 or header_length > len(body):
            raise InvalidArgument(
                f"Inference-Header-Content-Length {header_length} is out of range for a "
                f"{len(body)}-byte body"
            )
        header = _parse_json(memoryview(body)[:header_length])
        binary: memoryview | None = memoryview(body)[header_length:]
        return _build_request(
            header, model_name, model_version, binary, msgpack_form=False, shm=shared_memory
        )
    if _media_type(content_type) in MSGPACK_TYPES:
        return _build_request(
            _parse_msgpack(body), model_name, model_version, None, msgpack_form=True,
            shm=shared_memory,
        )  # fmt: skip
    return _build_request(
        _parse_json(body), model_name, model_version, None, msgpack_form=False, shm=shared_memory
    )


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _parse_json(body: bytes | memoryview) -> Any:
    try:
        return json.loads(bytes(body))
    except UnicodeDecodeError:
        raise InvalidArgument("malformed JSON request: the body is not valid UTF-8") from None
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"malformed JSON request: {exc}") from None


def _parse_msgpack(body: bytes) -> Any:
    try:
        return msgpack.unpackb(body, raw=False)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise InvalidArgument(f"malformed msgpack request: {exc}") from None


def _decode_raw(
    body: bytes, model_name: str, model_version: str, raw_input: RawInputSpec | None
) -> InferRequest:
    if raw_input is None:
        raise InvalidArgument(
            "Inference-Header-Content-Length: 0 sends the whole body as the raw bytes of a "
            f"single input, but model {model_name!r} does not have exactly one input"
        )
    datatype = by_name(raw_input.datatype)
    shape = _raw_shape(raw_input, datatype, len(body))
    data = codecs.binary_to_array(body, datatype, shape, raw_input.name)
    tensor = InferInput(raw_input.name, datatype.name, shape, data)
    return InferRequest(
        model_name=model_name,
        model_version=model_version,
        inputs=(tensor,),
        parameters={"binary_data_output": True},
    )


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
    shm: SharedMemoryRegistry | None = None,
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
    for position, raw in enumerate(raw_inputs):
        tensor, used = _decode_input(raw, position, binary, offset, msgpack_form, shm)
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
    )


def _decode_input(
    raw: Any,
    position: int,
    binary: memoryview | None,
    offset: int,
    msgpack_form: bool,
    shm: SharedMemoryRegistry | None,
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
        if msgpack_form and isinstance(data, bytes):
            array = codecs.binary_to_array(data, datatype, shape, name)
        else:
            array = codecs.json_to_array(data, datatype, shape, name=name)
        return InferInput(name, datatype.name, shape, array, parameters), 0
    if size is None:
        ref = reference(parameters, where)
        if ref is not None:
            if shm is None:
                raise disabled_error()
            array = shm.read(ref, datatype, shape, name)
            return InferInput(name, datatype.name, shape, array, parameters), 0
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
    for dim in raw:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 0:
            raise InvalidArgument(
                f"{where}: 'shape' entries must be non-negative integers, got {json.dumps(raw)}"
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
