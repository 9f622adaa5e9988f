"""Tensor conversions between Sluice's numpy conventions and ONNX Runtime's.

Sluice keeps BYTES as object arrays of ``bytes`` and BF16 as uint16 words; ONNX Runtime wants
``str`` for string tensors and an OrtValue typed bfloat16 (numpy has no bfloat16).
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

from serving.datatypes import BF16_DTYPE
from serving.errors import InvalidArgument

__all__ = ["bf16_to_ortvalue", "bytes_to_strings", "ortvalue_to_numpy", "strings_to_bytes"]

_ONNX_BFLOAT16 = 16


def bytes_to_strings(name: str, array: np.ndarray) -> np.ndarray:
    """Object array of bytes -> object array of str (UTF-8), as ONNX Runtime's binding needs."""
    flat = array.reshape(-1)
    out = np.empty(flat.shape, dtype=object)
    for i, item in enumerate(flat.tolist()):
        if isinstance(item, bytes | bytearray | memoryview):
            try:
                out[i] = bytes(item).decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidArgument(
                    f"input {name!r} element {i} is not valid UTF-8, which ONNX string "
                    "tensors require"
                ) from None
        elif isinstance(item, str):
            out[i] = item
        else:
            raise InvalidArgument(f"input {name!r} element {i} is {type(item).__name__}, not bytes")
    return out.reshape(array.shape)


def strings_to_bytes(array: np.ndarray) -> np.ndarray:
    flat = array.reshape(-1)
    out = np.empty(flat.shape, dtype=object)
    for i, item in enumerate(flat.tolist()):
        out[i] = item.encode("utf-8") if isinstance(item, str) else bytes(item)
    return out.reshape(array.shape)


def bf16_to_ortvalue(name: str, array: np.ndarray) -> Any:
    import onnxruntime as ort

    if array.dtype != BF16_DTYPE:
        raise InvalidArgument(f"input {name!r} is BF16 and must arrive as uint16 words")
    return ort.OrtValue.ortvalue_from_numpy_with_onnx_type(
        np.ascontiguousarray(array), onnx_element_type=_ONNX_BFLOAT16
    )


def ortvalue_to_numpy(value: Any) -> np.ndarray:
    """OrtValue -> numpy; bfloat16 tensors come back as copied uint16 words."""
    if value.data_type() != "tensor(bfloat16)":
        return value.numpy()
    shape = tuple(value.shape())
    count = int(np.prod(shape, dtype=np.int64))
    if count == 0:
        return np.empty(shape, dtype=BF16_DTYPE)
    words = (ctypes.c_uint16 * count).from_address(value.data_ptr())
    return np.frombuffer(memoryview(words), dtype=BF16_DTYPE).reshape(shape).copy()
