"""One collected inference and its spool encoding.

The request path builds a ``CollectRecord`` holding references to the decoded
arrays (no copy) and enqueues it; the writer thread applies the model's
allow/deny lists and hashing (``encode``) before anything touches the disk.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

from serving.monitoring._config import CollectConfig, ColumnSpec

__all__ = [
    "ERROR",
    "OK",
    "CollectRecord",
    "RecordTooLarge",
    "SpooledRecord",
    "decode",
    "element_hash",
    "encode",
]

OK = "ok"
ERROR = "error"


class RecordTooLarge(Exception):
    """The record is over the model's ``sluice.collect.max_record_bytes``."""


@dataclass(frozen=True, slots=True)
class CollectRecord:
    request_id: str
    timestamp_us: int  # UTC, microseconds since the epoch
    model: str
    version: str
    sample_rate: float
    status: str  # "ok" | "error"
    error: str | None
    latency_us: int
    inputs: Mapping[str, np.ndarray]  # tensor name -> array as decoded (batch dim first)
    outputs: Mapping[str, np.ndarray]


def element_hash(row: Any) -> str:
    if isinstance(row, bytes | bytearray):
        data = bytes(row)
    elif isinstance(row, np.ndarray) and row.dtype == object:
        data = b"\x00".join(bytes(x) if isinstance(x, bytes | bytearray) else str(x).encode()
                            for x in row.ravel())  # fmt: skip
    elif isinstance(row, np.ndarray):
        data = np.ascontiguousarray(row).tobytes()
    else:
        data = str(row).encode()
    return hashlib.sha256(data).hexdigest()


def _type_name(spec: ColumnSpec) -> str:
    if spec.hashed:
        return "sha256"
    return "bytes" if spec.dtype == object else spec.dtype.str


def _is_scalar(spec: ColumnSpec) -> bool:
    """One value per batch element (dims [] or [1]): a plain column, not a list."""
    return spec.hashed or (-1 not in spec.dims and int(np.prod(spec.dims, dtype=np.int64)) == 1)


def encode(record: CollectRecord, config: CollectConfig) -> bytes:
    """The spool frame payload (msgpack): the collected columns only, hashed where asked.

    Raises RecordTooLarge over the model's per-record byte cap.
    """
    tensors: dict[str, list[Any]] = {}
    size = 0
    rows = 0
    for spec in config.columns:
        source = record.inputs if spec.kind == "input" else record.outputs
        arr = source.get(spec.tensor)
        if arr is None:
            continue
        arr = np.asarray(arr)
        if not config.batching:
            arr = arr.reshape((1, *arr.shape))
        rows = max(rows, int(arr.shape[0]) if arr.ndim else 1)
        if spec.hashed:
            hashes = [element_hash(arr[i]) for i in range(arr.shape[0])]
            tensors[spec.column] = ["sha256", hashes]
            size += 64 * len(hashes)
        elif arr.dtype == object:
            cells = [x if isinstance(x, bytes) else bytes(x) for x in arr.ravel()]
            tensors[spec.column] = ["bytes", list(arr.shape), cells]
            size += sum(len(c) for c in cells)
        else:
            data = np.ascontiguousarray(arr)
            tensors[spec.column] = [data.dtype.str, list(data.shape), data.tobytes()]
            size += data.nbytes
    if config.max_record_bytes and size > config.max_record_bytes:
        raise RecordTooLarge(f"{size} bytes of tensors, cap {config.max_record_bytes}")
    body = {
        "c": [[c.column, c.kind, _type_name(c), _is_scalar(c), c.dims] for c in config.columns],
        "id": record.request_id,
        "ts": record.timestamp_us,
        "m": record.model,
        "v": record.version,
        "r": record.sample_rate,
        "s": record.status,
        "e": record.error,
        "l": record.latency_us,
        "n": rows or 1,
        "t": tensors,
    }
    return msgpack.packb(body, use_bin_type=True)


@dataclass(frozen=True, slots=True)
class SpooledRecord:
    """A record read back from the spool: metadata, row count and column values."""

    request_id: str
    timestamp_us: int
    model: str
    version: str
    sample_rate: float
    status: str
    error: str | None
    latency_us: int
    rows: int
    columns: Mapping[str, Any]  # column -> ndarray (rows first) or list of hex digests
    layout: tuple[
        tuple[str, str, str, bool, tuple[int, ...]], ...
    ]  # (column, kind, type, scalar, dims)


def decode(payload: bytes) -> SpooledRecord:
    body = msgpack.unpackb(payload, raw=False)
    columns: dict[str, Any] = {}
    for name, value in body["t"].items():
        if value[0] == "sha256":
            columns[name] = list(value[1])
        elif value[0] == "bytes":
            arr = np.empty(len(value[2]), dtype=object)
            arr[:] = value[2]
            columns[name] = arr.reshape(value[1])
        else:
            columns[name] = np.frombuffer(value[2], dtype=np.dtype(value[0])).reshape(value[1])
    return SpooledRecord(
        request_id=body["id"],
        timestamp_us=body["ts"],
        model=body["m"],
        version=body["v"],
        sample_rate=body["r"],
        status=body["s"],
        error=body["e"],
        latency_us=body["l"],
        rows=body["n"],
        columns=columns,
        layout=tuple((c[0], c[1], c[2], bool(c[3]), tuple(c[4])) for c in body["c"]),
    )
