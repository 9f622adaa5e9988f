"""The one table of tensor datatypes: wire name, config enum, numpy and ONNX types."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from serving.errors import InvalidArgument

__all__ = [
    "BF16_DTYPE",
    "DATATYPES",
    "DataType",
    "by_config_name",
    "by_name",
    "by_numpy",
    "by_onnx_type",
]

# numpy has no bfloat16; BF16 tensors travel as raw 2-byte words and are kept
# as uint16 views (ONNX Runtime takes them through OrtValue when needed).
BF16_DTYPE = np.dtype("<u2")


@dataclass(frozen=True, slots=True)
class DataType:
    name: str  # Open Inference Protocol spelling, e.g. "FP32"
    config_name: str  # Triton config spelling, e.g. "TYPE_FP32"
    numpy: np.dtype  # little-endian numpy dtype; object for BYTES
    onnx_type: int  # onnx.TensorProto.DataType value
    itemsize: int  # bytes per element on the wire; 0 for BYTES (variable)
    json_ok: bool  # may travel in JSON "data"

    @property
    def is_bytes(self) -> bool:
        return self.name == "BYTES"


# onnx.TensorProto enum values, spelled out so this module does not import onnx.
_ONNX = {
    "FLOAT": 1, "UINT8": 2, "INT8": 3, "UINT16": 4, "INT16": 5, "INT32": 6, "INT64": 7,
    "STRING": 8, "BOOL": 9, "FLOAT16": 10, "DOUBLE": 11, "UINT32": 12, "UINT64": 13,
    "BFLOAT16": 16,
}  # fmt: skip

DATATYPES: tuple[DataType, ...] = (
    DataType("BOOL", "TYPE_BOOL", np.dtype("bool"), _ONNX["BOOL"], 1, True),
    DataType("UINT8", "TYPE_UINT8", np.dtype("<u1"), _ONNX["UINT8"], 1, True),
    DataType("UINT16", "TYPE_UINT16", np.dtype("<u2"), _ONNX["UINT16"], 2, True),
    DataType("UINT32", "TYPE_UINT32", np.dtype("<u4"), _ONNX["UINT32"], 4, True),
    DataType("UINT64", "TYPE_UINT64", np.dtype("<u8"), _ONNX["UINT64"], 8, True),
    DataType("INT8", "TYPE_INT8", np.dtype("<i1"), _ONNX["INT8"], 1, True),
    DataType("INT16", "TYPE_INT16", np.dtype("<i2"), _ONNX["INT16"], 2, True),
    DataType("INT32", "TYPE_INT32", np.dtype("<i4"), _ONNX["INT32"], 4, True),
    DataType("INT64", "TYPE_INT64", np.dtype("<i8"), _ONNX["INT64"], 8, True),
    DataType("FP16", "TYPE_FP16", np.dtype("<f2"), _ONNX["FLOAT16"], 2, False),
    DataType("FP32", "TYPE_FP32", np.dtype("<f4"), _ONNX["FLOAT"], 4, True),
    DataType("FP64", "TYPE_FP64", np.dtype("<f8"), _ONNX["DOUBLE"], 8, True),
    DataType("BF16", "TYPE_BF16", BF16_DTYPE, _ONNX["BFLOAT16"], 2, False),
    DataType("BYTES", "TYPE_STRING", np.dtype(object), _ONNX["STRING"], 0, True),
)

_BY_NAME = {d.name: d for d in DATATYPES}
_BY_CONFIG = {d.config_name: d for d in DATATYPES}
_BY_ONNX = {d.onnx_type: d for d in DATATYPES}
# BF16 shares uint16's numpy dtype; numpy lookups resolve to UINT16.
_BY_NUMPY = {d.numpy: d for d in reversed(DATATYPES) if d.name != "BF16"}


def by_name(name: str) -> DataType:
    """Look up a wire datatype name, or raise a client-facing error."""
    try:
        return _BY_NAME[name]
    except (KeyError, TypeError):
        known = ", ".join(_BY_NAME)
        raise InvalidArgument(f"unknown datatype {name!r}; expected one of {known}") from None


def by_config_name(name: str) -> DataType:
    try:
        return _BY_CONFIG[name]
    except KeyError:
        raise InvalidArgument(f"unsupported config data_type {name!r}") from None


def by_onnx_type(elem_type: int) -> DataType:
    try:
        return _BY_ONNX[elem_type]
    except KeyError:
        raise InvalidArgument(f"unsupported ONNX tensor element type {elem_type}") from None


def by_numpy(dtype: np.dtype) -> DataType:
    dtype = np.dtype(dtype)
    if dtype.kind in "SUO":
        return _BY_NAME["BYTES"]
    try:
        return _BY_NUMPY[dtype.newbyteorder("<") if dtype.byteorder == ">" else dtype]
    except KeyError:
        raise InvalidArgument(f"unsupported numpy dtype {dtype}") from None
