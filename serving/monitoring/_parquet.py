"""Rolling closed spool segments into Parquet, one row per batch element.

Files land in hive partitions ``model=<m>/version=<v>/date=YYYY-MM-DD`` (UTC) as
``part-<segment>.parquet``: the name comes from the segment, so rolling a segment
again after a crash rewrites the same file instead of adding a copy. A file is
written beside its final name (dot-prefixed, which readers skip), fsynced, renamed
and its directory fsynced before the segment is removed: at-least-once.

Columns: ``request_id``, ``timestamp`` (UTC), ``sample_rate``, ``status``, ``error``,
``latency_ms``, ``batch_index``, then one column per collected tensor (a scalar
column when a batch element holds one value, a list of the flattened element
otherwise; sha256 hex strings for hashed tensors). ``model``, ``version`` and
``date`` are the partition columns. The schema metadata names the input and
output columns and their element shapes (``sluice.columns``).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from serving.monitoring._record import (
    BASE_COLUMNS,
    METADATA_KEY,
    SpooledRecord,
    arrow_type,
    decode,
    decode_batch,
    is_batch,
)
from serving.monitoring._spool import read_frames

__all__ = ["BASE_COLUMNS", "OutputIndex", "partition_of", "roll_segment"]


def partition_of(record: SpooledRecord) -> tuple[str, str, str]:
    day = dt.datetime.fromtimestamp(record.timestamp_us / 1e6, tz=dt.UTC).date().isoformat()
    return record.model, record.version, day


def _column_values(values: Any, rows: int, scalar: bool) -> list[Any]:
    if isinstance(values, list):  # hashed
        return values
    flat = values.reshape(rows, -1) if rows else values.reshape(0, 0)
    if scalar:
        return [flat[i, 0] if flat.shape[1] else None for i in range(rows)]
    return [flat[i] for i in range(rows)]


def _legacy_table(records: list[SpooledRecord]) -> Any:
    """The rows of records from a spool written before Arrow batches (one msgpack map
    per record), built value by value as that version did."""
    import pyarrow as pa

    layout: dict[str, tuple[str, str, bool, tuple[int, ...]]] = {}
    for rec in records:
        for column, kind, type_name, scalar, dims in rec.layout:
            layout.setdefault(column, (kind, type_name, scalar, dims))
    base: dict[str, list[Any]] = {name: [] for name in BASE_COLUMNS}
    tensors: dict[str, list[Any]] = {name: [] for name in layout}
    for rec in records:
        rows = rec.rows if rec.status == "ok" else 1
        base["request_id"] += [rec.request_id] * rows
        base["timestamp"] += [rec.timestamp_us] * rows
        base["sample_rate"] += [rec.sample_rate] * rows
        base["status"] += [rec.status] * rows
        base["error"] += [rec.error] * rows
        base["latency_ms"] += [rec.latency_us / 1000.0] * rows
        base["batch_index"] += list(range(rows))
        for column, (_kind, _type, scalar, _dims) in layout.items():
            values = rec.columns.get(column)
            if values is None or rec.status != "ok":
                tensors[column] += [None] * rows
            else:
                tensors[column] += _column_values(values, rows, scalar)
    arrays = [
        pa.array(base["request_id"], pa.string()),
        pa.array(base["timestamp"], pa.timestamp("us", tz="UTC")),
        pa.array(base["sample_rate"], pa.float64()),
        pa.array(base["status"], pa.string()),
        pa.array(base["error"], pa.string()),
        pa.array(base["latency_ms"], pa.float64()),
        pa.array(base["batch_index"], pa.int32()),
    ]
    names = list(BASE_COLUMNS)
    for column, (_kind, type_name, scalar, _dims) in layout.items():
        arrays.append(pa.array(tensors[column], arrow_type(type_name, scalar)))
        names.append(column)
    meta = {
        column: {"kind": kind, "type": type_name, "dims": list(dims)}
        for column, (kind, type_name, _scalar, dims) in layout.items()
    }
    schema = pa.schema(
        [pa.field(n, a.type) for n, a in zip(names, arrays, strict=True)],
        metadata={METADATA_KEY: json.dumps(meta).encode()},
    )
    return pa.Table.from_arrays(arrays, schema=schema)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durably(table: Any, final: Path) -> None:
    import pyarrow.parquet as pq

    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp")
    with tmp.open("wb") as f:
        pq.write_table(table, f, compression="zstd")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)
    _fsync_dir(final.parent)


def _write_remote(table: Any, fs: Any, final: str) -> None:
    """One write to the final name: an object store shows the file only once complete."""
    import pyarrow.parquet as pq

    fs.makedirs(final.rsplit("/", 1)[0], exist_ok=True)
    with fs.open(final, "wb") as f:
        pq.write_table(table, f, compression="zstd")


def _merge(tables: list[Any]) -> Any:
    """One table of a partition's batches: base columns first, then every tensor column
    in order of first appearance (null where a batch lacks it), and ``sluice.columns``
    the union of the batches' descriptions."""
    import pyarrow as pa

    meta: dict[str, Any] = {}
    for table in tables:
        for column, described in json.loads(table.schema.metadata[METADATA_KEY]).items():
            meta.setdefault(column, described)
    tables = [t.replace_schema_metadata(None) for t in tables]
    merged = (
        tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="permissive")
    )
    merged = merged.select([*BASE_COLUMNS, *meta])
    return merged.replace_schema_metadata({METADATA_KEY: json.dumps(meta).encode()})


def roll_segment(
    segment: Path, destination: Path | str, *, fs: Any = None
) -> list[tuple[Path | str, int]]:
    """Write a closed segment's records as Parquet under ``destination`` (a local
    directory, or with ``fs`` an fsspec filesystem's root path), then remove the
    segment. Returns the files written and their row counts."""
    batches: dict[tuple[str, str, str], list[Any]] = defaultdict(list)
    legacy: dict[tuple[str, str, str], list[SpooledRecord]] = defaultdict(list)
    for payload in read_frames(segment):
        if is_batch(payload):
            partition, table = decode_batch(payload)
            batches[partition].append(table)
        else:
            record = decode(payload)
            legacy[partition_of(record)].append(record)
    for partition, records in legacy.items():
        batches[partition].insert(0, _legacy_table(records))
    written: list[tuple[Path | str, int]] = []
    for (model, version, day), tables in sorted(batches.items()):
        table = _merge(tables)
        relative = f"model={model}/version={version}/date={day}/part-{segment.stem}.parquet"
        if fs is None:
            final = Path(destination) / relative
            _write_durably(table, final)
            written.append((final, table.num_rows))
        else:
            remote = f"{destination}/{relative}"
            _write_remote(table, fs, remote)
            written.append((remote, table.num_rows))
    segment.unlink()
    return written


class OutputIndex:
    """The Parquet files under the destination, oldest first, for the disk cap."""

    def __init__(self, destination: Path) -> None:
        self.destination = destination
        self._files: dict[Path, tuple[float, int]] = {}
        for path in destination.glob("model=*/version=*/date=*/part-*.parquet"):
            self._add(path)

    def _add(self, path: Path) -> None:
        try:
            st = path.stat()
        except FileNotFoundError:
            return
        self._files[path] = (st.st_mtime, st.st_size)

    def added(self, paths: Iterable[Path]) -> None:
        for path in paths:
            self._add(path)

    @property
    def bytes(self) -> int:
        return sum(size for _, size in self._files.values())

    def evict_over(self, cap: int) -> int:
        """Remove the oldest files until the total is at most ``cap``; returns rows removed."""
        import pyarrow.parquet as pq

        removed_rows = 0
        total = self.bytes
        for path in sorted(self._files, key=lambda p: (self._files[p][0], p.name)):
            if total <= cap:
                break
            try:
                removed_rows += pq.read_metadata(path).num_rows
                path.unlink()
            except (FileNotFoundError, OSError):
                pass
            total -= self._files.pop(path)[1]
        return removed_rows
