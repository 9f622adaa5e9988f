"""The collection outbox on a device: complete files only, whole-file drops, acks."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from edge_agent._chunk import decode_chunk
from edge_agent._shipper import CollectShipper
from edge_agent._topics import Topics


def parquet(collect: Path, segment: str, rows: int, *, model: str = "mlp") -> Path:
    """A collection file as the collector names it, with ``rows`` random-ish bytes."""
    path = collect / f"model={model}/version=1/date=2026-12-01/part-{segment}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = [bytes([(i * 7 + j) % 251 for j in range(64)]) for i in range(rows)]
    pq.write_table(pa.table({"request_id": [f"r{i}" for i in range(rows)], "x": blob}), path, compression="none")  # fmt: skip
    return path


def shipper(tmp_path: Path, **kw: object) -> CollectShipper:
    options: dict[str, object] = {"max_bytes": 1 << 20, "chunk_bytes": 1024} | kw
    return CollectShipper(tmp_path / "collect-outbox.db", tmp_path / "collect", Topics("dev-1"), **options)  # type: ignore[arg-type]  # fmt: skip


def test_only_complete_files_are_taken_and_then_removed(tmp_path: Path) -> None:
    collect = tmp_path / "collect"
    done = parquet(collect, "0001-1", 40)
    half = done.with_name(".part-0002-1.parquet.tmp")  # the collector's write in progress
    half.write_bytes(b"PAR1 half")
    s = shipper(tmp_path)
    assert s.scan() == 1
    assert not done.exists() and half.exists()
    chunks = [decode_chunk(m.payload) for m in s.pending(limit=1000)]
    assert {c.path for c in chunks} == {"model=mlp/version=1/date=2026-12-01/part-0001-1.parquet"}
    assert [c.index for c in chunks] == list(range(chunks[0].count)) and chunks[0].count > 1
    assert {m.topic for m in s.pending(limit=1000)} == {"sluice/devices/dev-1/collect/mlp/1"}
    assert s.stats()["pending_rows"] == 40


def test_a_file_leaves_the_outbox_only_when_its_last_chunk_is_acknowledged(tmp_path: Path) -> None:
    parquet(tmp_path / "collect", "0001-1", 40)
    s = shipper(tmp_path)
    s.scan()
    messages = s.pending(limit=1000)
    for m in messages[:-1]:
        s.ack(m.row)
    assert s.stats()["pending_files"] == 1 and s.stats()["shipped_files"] == 0
    assert [m.row for m in s.pending(limit=1000)] == [messages[-1].row]
    s.ack(messages[-1].row)
    assert s.stats() | {"dropped": None} == {
        "pending_files": 0, "pending_rows": 0, "pending_bytes": 0,
        "shipped_files": 1, "shipped_rows": 40, "dropped": None,
    }  # fmt: skip


def test_over_the_cap_the_oldest_whole_files_go_and_are_counted(tmp_path: Path) -> None:
    collect = tmp_path / "collect"
    parquet(collect, "0001-1", 40)
    probe = shipper(tmp_path / "probe")
    (tmp_path / "probe").mkdir(exist_ok=True)
    probe.collect_dir = collect
    probe.scan()
    size = probe.pending_bytes()  # one file's chunks, headers included
    parquet(collect, "0001-1", 40)
    told: list[tuple[str, int, str]] = []
    s = shipper(tmp_path, max_bytes=int(size * 2.5), on_dropped=lambda *a: told.append(a))
    s.scan()
    parquet(collect, "0002-1", 40)
    s.scan()
    parquet(collect, "0003-1", 40)
    s.scan()
    assert s.pending_bytes() <= int(size * 2.5)
    paths = {decode_chunk(m.payload).path.rsplit("/", 1)[1] for m in s.pending(limit=1000)}
    assert paths == {"part-0002-1.parquet", "part-0003-1.parquet"}
    assert s.stats()["dropped"]["full_oldest"] == {"files": 1, "rows": 40}
    assert told == [("model=mlp/version=1/date=2026-12-01/part-0001-1.parquet", 40, "full_oldest")]


def test_a_file_larger_than_the_cap_is_dropped_and_counted(tmp_path: Path) -> None:
    parquet(tmp_path / "collect", "0001-1", 400)
    s = shipper(tmp_path, max_bytes=2048)
    assert s.scan() == 1
    assert s.pending() == [] and s.stats()["dropped"]["too_large"] == {"files": 1, "rows": 400}


def test_a_file_taken_again_after_a_crash_is_not_queued_twice(tmp_path: Path) -> None:
    path = parquet(tmp_path / "collect", "0001-1", 40)
    content = path.read_bytes()
    s = shipper(tmp_path)
    s.scan()
    before = len(s.pending(limit=1000))
    path.write_bytes(content)  # as if the removal had not happened
    s.scan()
    assert len(s.pending(limit=1000)) == before and not path.exists()


def test_a_file_that_is_not_parquet_stays_and_is_not_sent(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    bad = tmp_path / "collect/model=mlp/version=1/date=2026-12-01/part-0001-1.parquet"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not parquet")
    s = shipper(tmp_path)
    assert s.scan() == 0 and s.scan() == 0
    assert bad.exists() and s.pending() == []
    assert len([r for r in caplog.records if "cannot ship collected file" in r.message]) == 1
