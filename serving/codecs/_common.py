"""Tables, messages and array-level helpers shared by both codec twins.

Both ``_python`` and the Cython ``_native`` import this module, so every error
message a client can see is spelled once and the twins cannot drift apart.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from serving.datatypes import DataType
from serving.errors import InvalidArgument

__all__ = [
    "FP32_MAX",
    "INT_RANGES",
    "MAX_BYTES_ELEMENT",
    "MAX_DIMS",
    "MAX_ELEMENTS",
    "array_to_binary",
    "array_to_json",
    "bad_element",
    "bytes_cells",
    "checked_count",
    "count_mismatch",
    "element_count",
    "element_too_long",
    "fixed_binary_to_array",
    "label",
    "leftover_bytes",
    "length_overrun",
    "mixed_nesting",
    "not_a_list",
    "out_of_range",
    "ragged_nesting",
    "reject_non_json",
    "shape_text",
    "truncated_prefix",
    "value_repr",
]

# Inclusive bounds of the integer datatypes that may travel as JSON numbers.
INT_RANGES: dict[str, tuple[int, int]] = {
    "UINT8": (0, 2**8 - 1),
    "UINT16": (0, 2**16 - 1),
    "UINT32": (0, 2**32 - 1),
    "UINT64": (0, 2**64 - 1),
    "INT8": (-(2**7), 2**7 - 1),
    "INT16": (-(2**15), 2**15 - 1),
    "INT32": (-(2**31), 2**31 - 1),
    "INT64": (-(2**63), 2**63 - 1),
}
FP32_MAX = float(np.finfo(np.float32).max)
# A BYTES element's length travels as a uint32.
MAX_BYTES_ELEMENT = 2**32 - 1
# Shape limits, checked before anything is allocated: numpy (and ONNX Runtime) hold at most
# 64 dimensions, and numpy addresses about 2**60 elements of 8 bytes. Zero dimensions count
# as one, since numpy refuses [0, 2**62, 2**62] too.
MAX_DIMS = 64
MAX_ELEMENTS = 2**60 - 1
# The smallest BYTES element on the wire: its 4-byte length prefix.
_BYTES_PREFIX = 4

_TYPE_WORDS = {
    "BOOL": "true or false",
    "BYTES": "a string",
    "FP32": "a number",
    "FP64": "a number",
}


def label(name: str) -> str:
    """The prefix that names the tensor in a message, e.g. ``"input 'x': "``."""
    return f"input {name!r}: " if name else ""


def value_repr(value: Any) -> str:
    """Render a decoded JSON/msgpack value the way the client wrote it, briefly."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, int):
        text = (
            str(value) if value.bit_length() <= 128 else f"an integer of {value.bit_length()} bits"
        )
    elif isinstance(value, float):
        text = repr(value)
    else:
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def element_count(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


def checked_count(shape: tuple[int, ...], name: str) -> int:
    """The element count of ``shape``, or a client error when no tensor can have that shape.

    O(dimensions), and always before any allocation: more than ``MAX_DIMS`` dimensions, a
    negative dimension, or dimensions (zeros counted as one) multiplying past ``MAX_ELEMENTS``.
    """
    if len(shape) > MAX_DIMS:
        raise InvalidArgument(
            f"{label(name)}shape has {len(shape)} dimensions; at most {MAX_DIMS} are allowed"
        )
    extent = 1
    for dim in shape:
        if dim < 0:
            raise InvalidArgument(
                f"{label(name)}shape {shape_text(shape)} has a negative dimension"
            )
        extent *= dim or 1
        if extent > MAX_ELEMENTS:
            raise InvalidArgument(
                f"{label(name)}shape {shape_text(shape)} is too large: its non-zero dimensions "
                "multiply to more than 2**60 - 1 elements"
            )
    return math.prod(shape)


def shape_text(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def reject_non_json(datatype: DataType, name: str) -> None:
    if not datatype.json_ok:
        raise InvalidArgument(
            f"{label(name)}{datatype.name} data cannot travel as JSON numbers; "
            "send it in binary form (binary_data_size, or msgpack bin)"
        )


def not_a_list(value: Any, name: str) -> InvalidArgument:
    return InvalidArgument(f"{label(name)}'data' must be a list, got {value_repr(value)}")


def mixed_nesting(depth: int, name: str) -> InvalidArgument:
    return InvalidArgument(f"{label(name)}nested 'data' mixes lists and values at depth {depth}")


def ragged_nesting(depth: int, expected: int, got: int, name: str) -> InvalidArgument:
    return InvalidArgument(
        f"{label(name)}nested 'data' is not rectangular at depth {depth}: "
        f"lists of {expected} and {got} elements"
    )


def count_mismatch(shape: tuple[int, ...], got: int, name: str) -> InvalidArgument:
    expected = element_count(shape)
    return InvalidArgument(
        f"{label(name)}expected {expected} elements for shape {shape_text(shape)}, got {got}"
    )


def bad_element(datatype: DataType, index: int, value: Any, name: str) -> InvalidArgument:
    want = _TYPE_WORDS.get(datatype.name, "an integer")
    return InvalidArgument(
        f"{label(name)}{datatype.name} element {index} must be {want}, got {value_repr(value)}"
    )


def out_of_range(datatype: DataType, index: int, value: Any, name: str) -> InvalidArgument:
    bounds = INT_RANGES.get(datatype.name)
    where = f"[{bounds[0]}, {bounds[1]}]" if bounds else f"for {datatype.name}"
    return InvalidArgument(
        f"{label(name)}{datatype.name} element {index} value {value_repr(value)} "
        f"is out of range {where}"
    )


def truncated_prefix(index: int, offset: int, left: int, name: str) -> InvalidArgument:
    return InvalidArgument(
        f"{label(name)}BYTES element {index} at offset {offset}: truncated length prefix "
        f"({left} bytes left, need 4)"
    )


def length_overrun(index: int, offset: int, length: int, left: int, name: str) -> InvalidArgument:
    return InvalidArgument(
        f"{label(name)}BYTES element {index} at offset {offset}: length {length} overruns "
        f"the buffer ({left} bytes left after the prefix)"
    )


def bytes_cells(count: int, total: int) -> int:
    """How many cells to allocate for ``count`` BYTES elements in ``total`` bytes.

    Each element takes at least its 4-byte length prefix, so a buffer holds at most
    ``total // 4`` of them: past that, decoding fails on a truncated prefix before it
    fills ``total // 4 + 1`` cells, and a huge ``count`` never reaches the allocator.
    """
    return min(count, total // _BYTES_PREFIX + 1)


def leftover_bytes(count: int, consumed: int, total: int, name: str) -> InvalidArgument:
    return InvalidArgument(
        f"{label(name)}{total - consumed} bytes left over after {count} BYTES elements "
        f"(consumed {consumed} of {total} bytes)"
    )


def element_too_long(index: int, length: int) -> InvalidArgument:
    return InvalidArgument(
        f"BYTES element {index} is {length} bytes long; the wire form allows at most "
        f"{MAX_BYTES_ELEMENT}"
    )


def fixed_binary_to_array(
    buf: Any, datatype: DataType, shape: tuple[int, ...], name: str
) -> np.ndarray:
    """A zero-copy, read-only view of a fixed-size tensor's little-endian bytes."""
    count = checked_count(shape, name)
    expected = count * datatype.itemsize
    got = memoryview(buf).nbytes
    if got != expected:
        raise InvalidArgument(
            f"{label(name)}expected {expected} bytes of {datatype.name} data for shape "
            f"{shape_text(shape)}, got {got}"
        )
    arr = np.frombuffer(buf, dtype=datatype.numpy, count=count)
    if datatype.name == "BOOL" and count:
        words = arr.view(np.uint8)
        bad = words > 1
        if bad.any():
            index = int(bad.argmax())
            raise InvalidArgument(
                f"{label(name)}BOOL element {index} has byte value {int(words[index])}; "
                "expected 0 or 1"
            )
    return arr.reshape(shape)


def array_to_json(arr: np.ndarray, datatype: DataType) -> list[Any]:
    """A flat row-major list of JSON values.

    BYTES elements become strings; bytes that are not valid UTF-8 come back with
    ``\\xNN`` escapes (``backslashreplace``) so the body stays valid JSON. Clients
    that need the exact bytes ask for the output in binary form.
    """
    reject_non_json(datatype, "")
    flat = np.asarray(arr).reshape(-1)
    if datatype.is_bytes:
        return [_to_text(x) for x in flat.tolist()]
    return flat.astype(datatype.numpy, copy=False).tolist()


def _to_text(x: Any) -> str:
    if isinstance(x, bytes):
        return x.decode("utf-8", "backslashreplace")
    return x if isinstance(x, str) else str(x)


def array_to_binary(arr: np.ndarray, datatype: DataType) -> bytes | memoryview:
    """The little-endian bytes of a fixed-size tensor, without a copy when already laid out."""
    flat = np.ascontiguousarray(arr, dtype=datatype.numpy).reshape(-1)
    if flat.size == 0:
        return b""
    return flat.data.cast("B")
