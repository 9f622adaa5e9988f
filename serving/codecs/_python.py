"""The pure-Python codec twin: same functions and messages as ``_native.pyx``."""

from __future__ import annotations

import json
import math
import struct
from typing import Any

import numpy as np

from serving.codecs import _common as c
from serving.codecs._common import array_to_json
from serving.datatypes import DataType
from serving.errors import InvalidArgument

__all__ = [
    "array_to_binary",
    "array_to_json",
    "array_to_json_text",
    "binary_to_array",
    "decode_bytes",
    "encode_bytes",
    "json_text_to_array",
    "json_to_array",
    "split_json_data",
]

_U32 = struct.Struct("<I")


def decode_bytes(buf: Any, count: int, *, name: str = "") -> np.ndarray:
    """Split length-prefixed BYTES wire data into an object array of ``count`` bytes."""
    view = memoryview(buf).cast("B")
    total = len(view)
    out = np.empty(c.bytes_cells(count, total), dtype=object)
    offset = 0
    for index in range(len(out)):
        left = total - offset
        if left < 4:
            raise c.truncated_prefix(index, offset, left, name)
        (length,) = _U32.unpack_from(view, offset)
        if length > left - 4:
            raise c.length_overrun(index, offset, length, left - 4, name)
        start = offset + 4
        offset = start + length
        out[index] = bytes(view[start:offset])
    if offset != total:
        raise c.leftover_bytes(count, offset, total, name)
    return out


def encode_bytes(arr: np.ndarray) -> bytes:
    """Join elements as length-prefixed BYTES wire data (str as UTF-8, others via ``str``)."""
    parts = []
    pack = _U32.pack
    for index, x in enumerate(np.asarray(arr).reshape(-1).tolist()):
        if isinstance(x, bytes):
            data = x
        elif isinstance(x, str):
            data = x.encode("utf-8")
        else:
            data = str(x).encode("utf-8")
        if len(data) > c.MAX_BYTES_ELEMENT:
            raise c.element_too_long(index, len(data))
        parts.append(pack(len(data)))
        parts.append(data)
    return b"".join(parts)


def _flatten(data: Any, name: str) -> list[Any]:
    """Row-major leaves of rectangular nested lists, walking one depth at a time."""
    if not isinstance(data, list):
        raise c.not_a_list(data, name)
    level = data
    depth = 0
    while level:
        nested = isinstance(level[0], list)
        if not nested:
            for x in level:
                if isinstance(x, list):
                    raise c.mixed_nesting(depth, name)
            return level
        width = len(level[0])
        joined: list[Any] = []
        for x in level:
            if not isinstance(x, list):
                raise c.mixed_nesting(depth, name)
            if len(x) != width:
                raise c.ragged_nesting(depth + 1, width, len(x), name)
            joined.extend(x)
        level = joined
        depth += 1
    return level


def json_to_array(
    data: Any, datatype: DataType, shape: tuple[int, ...], *, name: str = ""
) -> np.ndarray:
    """Check and convert JSON (or msgpack array) ``data`` into an array of ``shape``."""
    c.reject_non_json(datatype, name)
    count = c.checked_count(shape, name)
    flat = _flatten(data, name)
    if len(flat) != count:
        raise c.count_mismatch(shape, len(flat), name)
    kind = datatype.name
    if kind == "BOOL":
        for i, x in enumerate(flat):
            if x is not True and x is not False:
                raise c.bad_element(datatype, i, x, name)
        return np.array(flat, dtype=np.bool_).reshape(shape)
    if kind == "BYTES":
        out = np.empty(len(flat), dtype=object)
        for i, x in enumerate(flat):
            if isinstance(x, str):
                out[i] = x.encode("utf-8")
            elif isinstance(x, bytes):
                out[i] = x
            else:
                raise c.bad_element(datatype, i, x, name)
        return out.reshape(shape)
    if kind in c.INT_RANGES:
        low, high = c.INT_RANGES[kind]
        for i, x in enumerate(flat):
            if type(x) is not int and (not isinstance(x, int) or isinstance(x, bool)):
                raise c.bad_element(datatype, i, x, name)
            if x < low or x > high:
                raise c.out_of_range(datatype, i, x, name)
        return np.array(flat, dtype=datatype.numpy).reshape(shape)
    return _floats(flat, datatype, shape, name)


def _floats(flat: list[Any], datatype: DataType, shape: tuple[int, ...], name: str) -> np.ndarray:
    for i, x in enumerate(flat):
        t = type(x)
        if t is not float and t is not int:
            if isinstance(x, bool) or not isinstance(x, int | float):
                _widen(flat[:i], datatype, name)  # an earlier element may be out of range
                raise c.bad_element(datatype, i, x, name)
    return _widen(flat, datatype, name).astype(datatype.numpy).reshape(shape)


def _widen(flat: list[Any], datatype: DataType, name: str) -> np.ndarray:
    """Numbers as float64, raising for the first one the datatype cannot hold."""
    try:
        wide = np.array(flat, dtype=np.float64)
    except OverflowError:
        for i, x in enumerate(flat):
            try:
                float(x)
            except OverflowError:
                _widen(flat[:i], datatype, name)
                raise c.out_of_range(datatype, i, x, name) from None
        raise
    if datatype.name == "FP32" and wide.size:
        too_big = np.abs(wide) > c.FP32_MAX
        too_big &= np.isfinite(wide)
        if too_big.any():
            i = int(too_big.argmax())
            raise c.out_of_range(datatype, i, flat[i], name)
    return wide


def binary_to_array(buf: Any, datatype: DataType, shape: tuple[int, ...], name: str) -> np.ndarray:
    """Tensor bytes (binary extension, raw body or msgpack bin) as an array of ``shape``."""
    if datatype.is_bytes:
        return decode_bytes(buf, c.checked_count(shape, name), name=name).reshape(shape)
    return c.fixed_binary_to_array(buf, datatype, shape, name)


def array_to_binary(arr: np.ndarray, datatype: DataType) -> bytes | memoryview:
    """Tensor bytes for the binary extension or msgpack bin."""
    if datatype.is_bytes:
        return encode_bytes(arr)
    return c.array_to_binary(arr, datatype)


def split_json_data(doc: Any) -> None:
    """Always None: this twin parses the whole request document with ``json``."""
    return None


def json_text_to_array(
    doc: Any,
    start: int,
    end: int,
    datatype: DataType,
    shape: tuple[int, ...],
    *,
    name: str = "",
) -> np.ndarray | None:
    """``json_to_array`` of the JSON array in ``doc[start:end]``; None where ``json`` or
    ``json_to_array`` refuses it (the caller then decodes the whole document, which names
    the error)."""
    try:
        data = json.loads(bytes(memoryview(doc)[start:end]), parse_float=_finite_float)
        if not isinstance(data, list):
            return None
        return json_to_array(data, datatype, shape, name=name)
    except (ValueError, RecursionError, UnicodeError, InvalidArgument):
        return None


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"{text} is out of range of a 64-bit float")
    return value


def array_to_json_text(arr: np.ndarray, datatype: DataType) -> bytes:
    """The compact JSON text of ``array_to_json(arr, datatype)``."""
    return json.dumps(array_to_json(arr, datatype), separators=(",", ":")).encode()
