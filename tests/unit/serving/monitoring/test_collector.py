from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from serving.monitoring import (
    CollectConfig,
    CollectConfigError,
    Collector,
    CollectorOptions,
    sampled,
)
from serving.monitoring._parquet import roll_segment
from serving.monitoring._spool import Spool, read_frames

F4 = np.dtype("<f4")
INPUTS = [("x", F4, (3,)), ("user", np.dtype(object), (1,))]
OUTPUTS = [("y", F4, (1,))]


def _read(dest: Path) -> list[dict]:
    table = ds.dataset(dest, format="parquet", partitioning="hive").to_table()
    return sorted(table.to_pylist(), key=lambda r: (r["request_id"], r["batch_index"]))


def _collector(dest: Path, **kw) -> Collector:
    return Collector(CollectorOptions(dest, roll_secs=3600, **kw), registry=CollectorRegistry())


def _observe(c: Collector, rid: str, rows: int = 2, model: str = "m") -> None:
    x = np.arange(rows * 3, dtype=F4).reshape(rows, 3)
    user = np.array([[f"u{i}".encode()] for i in range(rows)], dtype=object)
    y = x.sum(axis=1, keepdims=True)
    assert c.observe(model, "1", rid, {"x": x, "user": user}, {"y": y}, 2_500_000)


def test_rows_per_batch_element_with_partitions_and_values(tmp_path: Path) -> None:
    c = _collector(tmp_path)
    c.attach("m", "1", {}, INPUTS, OUTPUTS)
    c.start()
    _observe(c, "req-a", rows=2)
    _observe(c, "req-b", rows=1)
    assert c.observe("m", "1", "req-c", {}, {}, 1000, error="invalid_argument: bad shape")
    c.close()
    rows = _read(tmp_path)
    assert [(r["request_id"], r["batch_index"]) for r in rows] == [
        ("req-a", 0), ("req-a", 1), ("req-b", 0), ("req-c", 0),
    ]  # fmt: skip
    assert rows[1]["x"] == [3.0, 4.0, 5.0] and rows[1]["y"] == 12.0 and rows[1]["user"] == b"u1"
    assert rows[0]["model"] == "m" and rows[0]["version"] == 1 and rows[0]["status"] == "ok"
    assert rows[0]["latency_ms"] == 2.5 and rows[0]["sample_rate"] == 1.0
    assert rows[3]["status"] == "error" and rows[3]["error"] == "invalid_argument: bad shape"
    assert rows[3]["x"] is None
    day = rows[0]["timestamp"].date().isoformat()
    assert list(tmp_path.glob(f"model=m/version=1/date={day}/part-*.parquet"))
    assert not list((tmp_path / "_spool").iterdir())  # rolled, then removed


def test_allow_deny_and_hashing(tmp_path: Path) -> None:
    c = _collector(tmp_path)
    params = {
        "sluice.collect.hash": "user",
        "sluice.collect.outputs": "",
        "sluice.collect.deny": "",
    }
    c.attach("m", "1", params, INPUTS, OUTPUTS)
    c.start()
    _observe(c, "r", rows=1)
    c.close()
    (row,) = _read(tmp_path)
    assert "y" not in row  # outputs allow list is empty
    assert row["user"] == hashlib.sha256(b"u0").hexdigest()
    c2 = _collector(tmp_path / "deny")
    c2.attach("m", "1", {"sluice.collect.deny": "user,y"}, INPUTS, OUTPUTS)
    c2.start()
    _observe(c2, "r", rows=1)
    c2.close()
    (row,) = _read(tmp_path / "deny")
    assert "user" not in row and "y" not in row and row["x"] == [0.0, 1.0, 2.0]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"sluice.collect.sample_rte": "1"}, "unknown parameter sluice.collect.sample_rte"),
        ({"sluice.collect.sample_rate": "2"}, "sample_rate '2' is not a number in 0..1"),
        ({"sluice.collect.hash": "email"}, "hash names 'email', which the model does not have"),
        ({"sluice.collect.by_request_id": "maybe"}, "by_request_id 'maybe' is not true or false"),
    ],
)
def test_bad_parameters_are_precise_and_leave_the_model_uncollected(
    tmp_path: Path, params: dict[str, str], message: str
) -> None:
    with pytest.raises(CollectConfigError, match=message):
        CollectConfig.from_parameters("m", params, INPUTS, OUTPUTS)
    c = _collector(tmp_path)
    assert c.attach("m", "1", params, INPUTS, OUTPUTS) is None
    assert not c.observe("m", "1", "r", {}, {}, 1)


def test_sampling_by_request_id_is_predictable_and_near_its_rate() -> None:
    config = CollectConfig.from_parameters(
        "m", {"sluice.collect.sample_rate": "0.25", "sluice.collect.by_request_id": "true"},
        INPUTS, OUTPUTS,
    )  # fmt: skip
    ids = [f"req-{i}" for i in range(4000)]
    first = [sampled(config, rid, 0.0) for rid in ids]
    assert first == [sampled(config, rid, 0.99) for rid in ids]  # the draw does not matter
    assert 0.22 < sum(first) / len(ids) < 0.28


def test_full_queue_drops_and_counts_without_blocking(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    c = Collector(CollectorOptions(tmp_path, queue_size=2), registry=registry)
    c.attach("m", "1", {}, INPUTS, OUTPUTS)  # writer not started: nothing drains the queue
    x = {"x": np.zeros((1, 3), F4)}
    assert c.observe("m", "1", "a", x, {}, 1) and c.observe("m", "1", "b", x, {}, 1)
    assert not c.observe("m", "1", "c", x, {}, 1)
    assert c.dropped("queue_full") == 1
    text = generate_latest(registry).decode()
    assert 'sluice_collect_dropped_total{reason="queue_full"} 1.0' in text


def test_record_over_the_byte_cap_is_dropped_and_counted(tmp_path: Path) -> None:
    c = _collector(tmp_path)
    c.attach("m", "1", {"sluice.collect.max_record_bytes": "20"}, INPUTS, OUTPUTS)
    c.start()
    _observe(c, "big", rows=4)  # 48 bytes of x alone
    c.close()
    assert c.dropped("too_large") == 1
    assert not list(tmp_path.glob("model=*"))


def test_a_dead_writers_open_segment_is_rolled_on_start_and_a_torn_tail_ignored(
    tmp_path: Path,
) -> None:
    first = _collector(tmp_path)
    first.attach("m", "1", {}, INPUTS, OUTPUTS)
    first.start()
    _observe(first, "kept-1")
    _observe(first, "kept-2")
    deadline = time.monotonic() + 10
    while not list((tmp_path / "_spool").glob("*.open")) and time.monotonic() < deadline:
        time.sleep(0.01)
    (segment,) = (tmp_path / "_spool").glob("*.open")
    while len(list(read_frames(segment))) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    # While its writer lives the segment is locked: another collector leaves it alone.
    assert Spool(tmp_path / "_spool").adopt_orphans() == 0
    # The writer dies without closing (the lock goes with its file descriptor), leaving
    # half a frame at the end.
    first._stop.set()
    assert first._segment is not None
    os.close(first._segment._file.fileno())
    with open(segment, "ab") as f:
        f.write(b"\x50\x00\x00\x00\x00\x00")
    second = _collector(tmp_path)
    second.start()
    second.close()
    assert [r["request_id"] for r in _read(tmp_path)] == ["kept-1", "kept-1", "kept-2", "kept-2"]
    assert not list((tmp_path / "_spool").iterdir())


def test_rolling_a_segment_twice_rewrites_the_same_file(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "_spool")
    c = _collector(tmp_path)
    c.attach("m", "1", {}, INPUTS, OUTPUTS)
    from serving.monitoring._record import CollectRecord, encode

    seg = spool.new_segment()
    config = c.config_for("m", "1")
    assert config is not None
    rec = CollectRecord("r", time.time_ns() // 1000, "m", "1", 1.0, "ok", None, 5,
                        {"x": np.ones((1, 3), F4)}, {})  # fmt: skip
    seg.append(encode(rec, config))
    closed = seg.close()
    copy = closed.read_bytes()
    first = roll_segment(closed, tmp_path)
    closed.write_bytes(copy)  # as if the process died after the rename, before the unlink
    second = roll_segment(closed, tmp_path)
    assert first == second
    assert len(_read(tmp_path)) == 1


def test_output_cap_drops_the_oldest_files_and_counts_their_rows(tmp_path: Path) -> None:
    c = _collector(tmp_path, output_max_bytes=1)
    c.attach("m", "1", {}, INPUTS, OUTPUTS)
    c.start()
    _observe(c, "old", rows=3)
    c.flush()
    deadline = time.monotonic() + 10
    while c.dropped("output_cap") == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    c.close()
    assert c.dropped("output_cap") == 3
    assert not list(tmp_path.glob("model=*/*/*/*.parquet"))


def test_spool_cap_drops_the_oldest_segments(tmp_path: Path) -> None:
    spool_dir = tmp_path / "_spool"
    spool = Spool(spool_dir)
    from serving.monitoring._record import CollectRecord, encode

    c = _collector(tmp_path, spool_max_bytes=1)
    config = c.attach("m", "1", {}, INPUTS, OUTPUTS)
    assert config is not None
    for _ in range(2):
        seg = spool.new_segment()
        rec = CollectRecord("r", 0, "m", "1", 1.0, "ok", None, 5, {"x": np.ones((1, 3), F4)}, {})
        seg.append(encode(rec, config))
        seg.close()
    c._cap_spool()
    assert c.dropped("spool_cap") == 2
    assert not spool.closed_segments()
