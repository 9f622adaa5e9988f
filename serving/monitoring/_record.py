"""Collected inferences and their spool encoding.

The request path enqueues references to the decoded arrays (no copy); the writer
thread turns each batch it drains into ``CollectRecord`` objects and encodes those of
one model version and UTC day as one Arrow record batch, the rows already as the
Parquet file holds them (one per batch element, after the allow/deny lists and
hashing). pyarrow serializes the batch (an Arrow IPC stream) as one spool frame, so
the per-row work happens in C; rolling a segment is then concatenating batches.

A frame payload is ``MAGIC``, the number of records (``<u32``) and the IPC stream.
Spools written before this format hold one msgpack map per record (``decode``); a
segment may hold both, and rolling reads both.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import msgpack
import numpy as np

from serving.monitoring._config import CollectConfig, ColumnSpec

__all__ = [
    "BASE_COLUMNS",
    "ERROR",
    "METADATA_KEY",
    "OK",
    "CollectRecord",
    "Encoded",
    "SpooledRecord",
    "decode",
    "decode_batch",
    "element_hash",
    "encode",
    "frame_records",
    "is_batch",
    "tensor_of",
]

OK = "ok"
ERROR = "error"
MAGIC = b"SLB1"  # never the first byte of an older payload (a msgpack map: 0x80-0x8f, 0xde)
_COUNT = struct.Struct("<I")
METADATA_KEY = b"sluice.columns"
_PARTITION_KEY = b"sluice.partition"
BASE_COLUMNS = (
    "request_id", "timestamp", "sample_rate", "status", "error", "latency_ms", "batch_index",
)  # fmt: skip
_DAY_US = 86_400_000_000
_EPOCH = dt.date(1970, 1, 1)


class CollectRecord(NamedTuple):
    """One collected request, as the writer thread, the sink and listeners see it.

    A named tuple rather than a frozen dataclass: the writer builds one per request,
    and a tuple is built in a third of the time, as immutable and as slotted."""

    request_id: str
    timestamp_us: int  # UTC, microseconds since the epoch
    model: str
    version: str
    sample_rate: float
    status: str  # "ok" | "error"
    error: str | None
    latency_us: int
    # tensor name -> array as decoded (batch dim first); ``encode`` also takes a
    # sequence of tensors (``tensor_of``)
    inputs: Mapping[str, np.ndarray]
    outputs: Mapping[str, np.ndarray]


def tensor_of(tensors: Any, name: str) -> Any:
    """The array named ``name`` in a mapping (name -> array) or in a sequence of
    tensors (``.name``, ``.data``: what the request path hands over); None if absent."""
    if type(tensors) is tuple or type(tensors) is list:
        for t in tensors:
            if t.name == name:
                return t.data
        return None
    if tensors is None:
        return None
    return tensors.get(name)


def _column_pieces(sources: list[Any], name: str) -> list[Any]:
    """``tensor_of(s, name)`` for each of ``sources``; when they are sequences of
    tensors holding ``name`` at one position (the usual case), by that position."""
    first = sources[0]
    if type(first) is dict and all(type(s) is dict for s in sources):
        return [s.get(name) for s in sources]
    if type(first) is tuple:
        at = next((i for i, t in enumerate(first) if t.name == name), -1)
        if at >= 0:
            try:
                found = [s[at] for s in sources]
            except (IndexError, TypeError, KeyError):
                found = None
            if found is not None and all(t.name == name for t in found):
                return [t.data for t in found]
    return [tensor_of(s, name) for s in sources]


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
    return spec.hashed or (-1 not in spec.dims and math.prod(spec.dims) == 1)


def arrow_type(type_name: str, scalar: bool) -> Any:
    """The Arrow type of a tensor column (``type_name`` as in ``sluice.columns``)."""
    import pyarrow as pa

    if type_name == "sha256":
        return pa.string()
    base = pa.binary() if type_name == "bytes" else pa.from_numpy_dtype(np.dtype(type_name))
    return base if scalar else pa.list_(base)


def _cell(x: Any) -> bytes:
    if isinstance(x, bytes):
        return x
    if isinstance(x, str):
        return x.encode()
    return bytes(x)


def day_of(timestamp_us: int) -> str:
    """The UTC date of a timestamp, as the ``date=`` partition names it."""
    return (_EPOCH + dt.timedelta(days=timestamp_us // _DAY_US)).isoformat()


@dataclass(frozen=True, slots=True)
class Encoded:
    """Spool frame payloads (one per model version and day) and the records left out
    because they were over the model's ``max_record_bytes``."""

    payloads: list[bytes]
    too_large: int


def _rows_and_size(record: CollectRecord, config: CollectConfig) -> tuple[int, int, list[Any]]:
    """A record's batch elements, the bytes of its collected tensors (0 without a cap)
    and its arrays, one per column (None when absent)."""
    arrays: list[Any] = []
    rows = 0
    size = 0
    cap = config.max_record_bytes
    for spec in config.columns:
        arr = tensor_of(record.inputs if spec.kind == "input" else record.outputs, spec.tensor)
        if arr is not None:
            if type(arr) is not np.ndarray:
                arr = np.asarray(arr)
            if not config.batching:
                arr = arr.reshape((1, *arr.shape))
            lead = int(arr.shape[0]) if arr.ndim else 1
            rows = lead if lead > rows else rows
            if cap:
                if spec.hashed:
                    size += 64 * lead
                elif arr.dtype == object:
                    size += sum(len(_cell(x)) for x in arr.ravel())
                else:
                    size += arr.nbytes
        arrays.append(arr)
    return rows or 1, size, arrays


def _uniform(
    records: Sequence[CollectRecord], config: CollectConfig
) -> tuple[list[list[Any]], list[int]] | None:
    """What ``_rows_and_size`` finds record by record, at one go for the common case:
    no size cap, every request answered, and each column an ndarray of one shape and
    dtype in every record. Returns each column's arrays and the rows per record (the
    same for every record); None when the records are not like that."""
    if config.max_record_bytes or any(r.status != OK for r in records):
        return None
    columns: list[list[Any]] = []
    rows = 0
    for spec in config.columns:
        if spec.kind == "input":
            pieces = _column_pieces([r.inputs for r in records], spec.tensor)
        else:
            pieces = _column_pieces([r.outputs for r in records], spec.tensor)
        if any(type(a) is not np.ndarray for a in pieces):
            return None
        shapes = {a.shape for a in pieces}
        if len(shapes) != 1 or len({a.dtype for a in pieces}) != 1:
            return None
        (shape,) = shapes
        if not config.batching:
            pieces = [a.reshape((1, *shape)) for a in pieces]
            shape = (1, *shape)
        lead = int(shape[0]) if shape else 1
        rows = lead if lead > rows else rows
        columns.append(pieces)
    return columns, [rows or 1] * len(records)


def _values_column(
    spec: ColumnSpec, pieces: list[Any], counts: list[int], uniform: bool = False
) -> Any:
    """The Arrow column of a tensor: each record's array split into its rows (a scalar
    per row, or a list of the row's flattened values), nulls where a record has none.
    ``uniform``: every piece is an ndarray of one shape and dtype (``_uniform``)."""
    import pyarrow as pa

    flat: list[Any] = []
    if uniform and pieces[0].size % counts[0] == 0:
        width = pieces[0].size // counts[0]
        flat = [np.concatenate(pieces, axis=None)]
        lengths = np.full(sum(counts), width, dtype=np.int64)
        valid = np.ones(len(lengths), dtype=bool)
    else:
        widths: list[int] = []  # values per row of each record; -1: its rows are null
        for arr, rows in zip(pieces, counts, strict=True):
            if arr is None or arr.size % rows:
                widths.append(-1)
            else:
                flat.append(arr.reshape(-1))
                widths.append(arr.size // rows)
        per_row = np.repeat(np.asarray(widths, dtype=np.int64), counts)
        valid = per_row >= 0
        lengths = np.where(valid, per_row, 0)
    if spec.dtype == object:
        data: Any = np.empty(0, object) if not flat else np.concatenate(flat)
    else:
        data = (
            np.concatenate(flat).astype(spec.dtype, copy=False) if flat else np.empty(0, spec.dtype)
        )
    if _is_scalar(spec):  # the first value of each row
        present = valid & (lengths > 0)
        if present.all() and len(data) == len(present):
            picked, mask = data, None
        else:
            starts = np.cumsum(lengths) - lengths
            picked = data[starts[present]] if len(data) else data
            full = np.zeros(len(present), dtype=data.dtype)
            full[present] = picked
            picked, mask = full, ~present
        if spec.dtype == object:
            cells = [_cell(x) for x in picked] if mask is None else [
                None if m else _cell(x) for x, m in zip(picked, mask, strict=True)
            ]  # fmt: skip
            return pa.array(cells, pa.binary())
        return pa.array(picked, mask=mask)
    values = (
        pa.array([_cell(x) for x in data], pa.binary()) if spec.dtype == object else pa.array(data)
    )
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    mask = None if valid.all() else pa.array(~valid)
    return pa.ListArray.from_arrays(pa.array(offsets), values, mask=mask)


def _hash_column(pieces: list[Any], counts: list[int]) -> Any:
    import pyarrow as pa

    cells: list[str | None] = []
    for arr, rows in zip(pieces, counts, strict=True):
        if arr is None or (int(arr.shape[0]) if arr.ndim else 1) != rows:
            cells += [None] * rows
        elif arr.ndim == 0:
            cells.append(element_hash(arr))
        else:
            cells += [element_hash(arr[i]) for i in range(rows)]
    return pa.array(cells, pa.string())


def _batch(records: Sequence[CollectRecord], config: CollectConfig,
           arrays: Sequence[list[Any]] | None, counts: list[int], day: str,
           columns_of: list[list[Any]] | None = None) -> Any:  # fmt: skip
    """One record batch; the tensors either per record (``arrays``: one list per
    record, one array per column) or per column (``columns_of``, from ``_uniform``)."""
    import pyarrow as pa

    n = len(records)
    total = sum(counts)
    expand = None if total == n else pa.array(np.repeat(np.arange(n), counts))

    def base(values: Any) -> Any:
        return values if expand is None else values.take(expand)

    if expand is None:
        batch_index = np.zeros(n, dtype=np.int32)
    else:
        starts = np.repeat(np.cumsum(counts) - counts, counts)
        batch_index = (np.arange(total) - starts).astype(np.int32)
    timestamp = pa.timestamp("us", tz="UTC")
    columns = [
        base(pa.array([r.request_id for r in records], pa.string())),
        base(pa.array(np.fromiter((r.timestamp_us for r in records), np.int64, n), timestamp)),
        base(pa.array(np.fromiter((r.sample_rate for r in records), np.float64, n))),
        base(pa.array([r.status for r in records], pa.string())),
        base(pa.array([r.error for r in records], pa.string())),
        base(pa.array(np.fromiter((r.latency_us for r in records), np.float64, n) / 1000.0)),
        pa.array(batch_index),
    ]
    names = list(BASE_COLUMNS)
    meta = {}
    for j, spec in enumerate(config.columns):
        if columns_of is not None:
            pieces = columns_of[j]
        else:
            assert arrays is not None
            pieces = [a[j] for a in arrays]
        column = (
            _hash_column(pieces, counts)
            if spec.hashed
            else _values_column(spec, pieces, counts, uniform=columns_of is not None)
        )
        wanted = arrow_type(_type_name(spec), _is_scalar(spec))
        columns.append(column if column.type == wanted else column.cast(wanted))
        names.append(spec.column)
        meta[spec.column] = {"kind": spec.kind, "type": _type_name(spec), "dims": list(spec.dims)}
    partition = [records[0].model, records[0].version, day]
    schema = pa.schema(
        [pa.field(name, col.type) for name, col in zip(names, columns, strict=True)],
        metadata={METADATA_KEY: json.dumps(meta), _PARTITION_KEY: json.dumps(partition)},
    )
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def encode(records: Sequence[CollectRecord], config: CollectConfig) -> Encoded:
    """The spool frame payloads of ``records`` (all collected under ``config``): one
    Arrow record batch per model version and UTC day. A successful request is one row
    per batch element; a failed one is one row with empty tensor columns. A record's
    inputs and outputs may be mappings or sequences of tensors (``tensor_of``)."""
    groups: dict[tuple[str, str, int], tuple[list[CollectRecord], list[list[Any]], list[int]]]
    if records:
        day = records[0].timestamp_us // _DAY_US
        if all(r.timestamp_us // _DAY_US == day for r in records):
            found = _uniform(records, config)
            if found is not None:
                columns_of, counts = found
                batch = _batch(records, config, None, counts, day_of(day * _DAY_US), columns_of)
                return Encoded([_payload(batch, len(records))], 0)
    groups = {}
    too_large = 0
    cap = config.max_record_bytes
    for record in records:
        if record.status == OK:
            rows, size, arrays = _rows_and_size(record, config)
            if cap and size > cap:
                too_large += 1
                continue
        else:
            rows, arrays = 1, [None] * len(config.columns)
        key = (record.model, record.version, record.timestamp_us // _DAY_US)
        group = groups.get(key)
        if group is None:
            group = groups[key] = ([], [], [])
        group[0].append(record)
        group[1].append(arrays)
        group[2].append(rows)
    payloads = []
    for (_model, _version, day), (recs, arrays_of, counts) in groups.items():
        batch = _batch(recs, config, arrays_of, counts, day_of(day * _DAY_US))
        payloads.append(_payload(batch, len(recs)))
    return Encoded(payloads, too_large)


def _payload(batch: Any, records: int) -> bytes:
    """A spool frame payload: MAGIC, the number of records and the batch's IPC stream."""
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return MAGIC + _COUNT.pack(records) + sink.getvalue().to_pybytes()


def is_batch(payload: bytes) -> bool:
    return payload[: len(MAGIC)] == MAGIC


def frame_records(payload: bytes) -> int:
    """How many collected requests a spool frame holds."""
    return _COUNT.unpack_from(payload, len(MAGIC))[0] if is_batch(payload) else 1


def decode_batch(payload: bytes) -> tuple[tuple[str, str, str], Any]:
    """A frame written by ``encode``: its (model, version, day) and its rows (a Table)."""
    import pyarrow as pa

    start = len(MAGIC) + _COUNT.size
    table = pa.ipc.open_stream(pa.py_buffer(payload)[start:]).read_all()
    model, version, day = json.loads(table.schema.metadata[_PARTITION_KEY])
    return (model, version, day), table


# -- the spool format before Arrow batches: one msgpack map per record ----------------


@dataclass(frozen=True, slots=True)
class SpooledRecord:
    """A record read back from an older spool: metadata, row count and column values."""

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
