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
    seg.append(encode([rec], config).payloads[0])
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
        seg.append(encode([rec], config).payloads[0])
        seg.close()
    c._cap_spool()
    assert c.dropped("spool_cap") == 2
    assert not spool.closed_segments()


def _old_frame(rid: str, ts_us: int, x: np.ndarray) -> bytes:
    """A frame as the spool held it before Arrow batches: one msgpack map per record."""
    import msgpack

    body = {
        "c": [["x", "input", "<f4", False, [3]], ["y", "output", "<f4", True, [1]]],
        "id": rid, "ts": ts_us, "m": "m", "v": "1", "r": 1.0, "s": "ok", "e": None,
        "l": 1500, "n": x.shape[0], "t": {"x": ["<f4", list(x.shape), x.tobytes()]},
    }  # fmt: skip
    return msgpack.packb(body, use_bin_type=True)


def test_a_spool_written_before_arrow_batches_still_rolls(tmp_path: Path) -> None:
    """An upgrade finds the old format's segments (closed, or open and adopted) and rolls
    them with the same columns as before."""
    seg = Spool(tmp_path / "_spool").new_segment()
    x = np.arange(6, dtype=F4).reshape(2, 3)
    seg.append(_old_frame("old-1", 1_700_000_000_000_000, x))
    seg.append(_old_frame("old-2", 1_700_000_000_000_001, x[:1]))
    seg.close()
    c = _collector(tmp_path)
    c.start()
    c.close()
    rows = _read(tmp_path)
    assert [(r["request_id"], r["batch_index"], r["x"]) for r in rows] == [
        ("old-1", 0, [0.0, 1.0, 2.0]), ("old-1", 1, [3.0, 4.0, 5.0]), ("old-2", 0, [0.0, 1.0, 2.0]),
    ]  # fmt: skip
    assert rows[0]["y"] is None and rows[0]["latency_ms"] == 1.5
    assert list(tmp_path.glob("model=m/version=1/date=2023-11-14/part-*.parquet"))


def test_inference_records_are_collected_by_reference_and_anonymous_ones_get_random_ids(
    tmp_path: Path,
) -> None:
    from serving.monitoring import CollectObserver, VersionDescription
    from serving.observers import InferenceRecord
    from serving.types import InferInput, InferOutput

    desc = VersionDescription({}, INPUTS, OUTPUTS, batching=True)
    c = _collector(tmp_path)
    observer = CollectObserver(c, lambda model, version: desc)
    c.start()
    x = np.ones((1, 3), F4)
    user = np.array([[b"u"]], dtype=object)
    inputs = (InferInput("x", "FP32", (1, 3), x), InferInput("user", "BYTES", (1, 1), user))
    outputs = (InferOutput("y", "FP32", (1, 1), np.full((1, 1), 3.0, F4)),)
    for rid in ("", "", "given"):
        observer.on_inference(InferenceRecord(
            model="m", version="1", request_id=rid, batch_size=1, total_ns=4_000_000,
            inputs=inputs, outputs=outputs,
        ))  # fmt: skip
    observer.on_inference(InferenceRecord(
        model="m", version="1", request_id="bad", outcome="invalid_argument", error="no",
        inputs=inputs,
    ))  # fmt: skip
    c.close()
    rows = _read(tmp_path)
    assert len(rows) == 4
    by_id = {r["request_id"]: r for r in rows}
    assert by_id["given"]["x"] == [1.0, 1.0, 1.0] and by_id["given"]["y"] == 3.0
    assert by_id["given"]["user"] == b"u" and by_id["given"]["latency_ms"] == 4.0
    assert by_id["bad"]["status"] == "error" and by_id["bad"]["error"] == "invalid_argument: no"
    assert by_id["bad"]["x"] is None
    anonymous = [rid for rid in by_id if rid not in ("given", "bad")]
    assert len(anonymous) == 2 and all(len(rid) == 32 for rid in anonymous)
    assert all(int(rid, 16) >= 0 for rid in anonymous)


def test_text_in_a_bytes_tensor_is_stored_as_utf8_and_the_writer_carries_on(
    tmp_path: Path,
) -> None:
    """A Python model may answer str objects in a BYTES output: collected as UTF-8 (the
    writer thread once died on them and collected nothing more)."""
    c = _collector(tmp_path)
    c.attach("m", "1", {}, INPUTS, [("label", np.dtype(object), (1,))])
    c.start()
    x = np.zeros((2, 3), F4)
    assert c.observe("m", "1", "text", {"x": x}, {"label": np.array([["cat"], ["dög"]], object)}, 1)
    c.flush()
    deadline = time.monotonic() + 10
    while c.rows_written < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert c.observe("m", "1", "after", {"x": x[:1]}, {"label": np.array([[b"b"]], object)}, 1)
    c.close()
    rows = _read(tmp_path)
    assert [(r["request_id"], r["label"]) for r in rows] == [
        ("after", b"b"), ("text", b"cat"), ("text", "dög".encode()),
    ]  # fmt: skip


def test_one_drain_of_mixed_records_becomes_the_same_rows_as_one_by_one(tmp_path: Path) -> None:
    """Variable widths, missing tensors, failures, several days and a model without a batch
    dimension, encoded as batches in one go: the rows each record alone would give."""
    from serving.monitoring._record import CollectRecord, encode

    inputs = [("v", F4, (-1,)), ("s", np.dtype("<i8"), (1,))]
    batched = CollectConfig.from_parameters("m", {}, inputs, OUTPUTS)
    day = 86_400_000_000
    recs = [
        CollectRecord("a", 3 * day - 1, "m", "1", 1.0, "ok", None, 1000,
                      {"v": np.arange(4, dtype=F4).reshape(2, 2), "s": np.array([[7], [8]])},
                      {"y": np.array([[1.0], [2.0]], F4)}),
        CollectRecord("b", 3 * day, "m", "1", 1.0, "ok", None, 2000,
                      {"v": np.arange(5, dtype=F4).reshape(1, 5)}, {}),
        CollectRecord("c", 3 * day + 1, "m", "1", 1.0, "error", "internal: boom", 3000, {}, {}),
        CollectRecord("d", 3 * day + 2, "m", "1", 1.0, "ok", None, 4000,
                      {"s": np.array([[9]])}, {"y": np.array([[5.0]], F4)}),
    ]  # fmt: skip
    spool = Spool(tmp_path / "_spool")
    seg = spool.new_segment()
    for payload in encode(recs, batched).payloads:
        seg.append(payload)
    roll_segment(seg.close(), tmp_path / "together")
    for rec in recs:
        seg = spool.new_segment()
        seg.append(encode([rec], batched).payloads[0])
        roll_segment(seg.close(), tmp_path / "apart")
    together, apart = _read(tmp_path / "together"), _read(tmp_path / "apart")
    assert together == apart
    assert [(r["request_id"], r["batch_index"], r["v"], r["s"], r["y"]) for r in together] == [
        ("a", 0, [0.0, 1.0], 7, 1.0), ("a", 1, [2.0, 3.0], 8, 2.0),
        ("b", 0, [0.0, 1.0, 2.0, 3.0, 4.0], None, None), ("c", 0, None, None, None),
        ("d", 0, None, 9, 5.0),
    ]  # fmt: skip
    assert [str(r["date"]) for r in together] == ["1970-01-03"] * 2 + ["1970-01-04"] * 3
    # Without a batch dimension a request is one row holding the whole tensor.
    single = CollectConfig.from_parameters("n", {}, [("v", F4, (2, 2))], [], batching=False)
    rec = CollectRecord("e", 0, "n", "1", 1.0, "ok", None, 1, {"v": np.ones((2, 2), F4)}, {})
    seg = spool.new_segment()
    seg.append(encode([rec], single).payloads[0])
    roll_segment(seg.close(), tmp_path / "single")
    (row,) = _read(tmp_path / "single")
    assert row["v"] == [1.0] * 4 and row["batch_index"] == 0


def test_a_drain_of_request_tensors_gives_the_rows_mappings_give(tmp_path: Path) -> None:
    """The writer encodes the request's tensors as handed over (InferInput tuples), all
    records of a drain at once when they agree in shape: the same rows as the
    record-by-record path over mappings (forced here by a byte cap no record reaches)."""
    from serving.monitoring._record import CollectRecord, encode
    from serving.types import InferInput, InferOutput

    params = {"sluice.collect.hash": "user"}
    inputs = [("x", F4, (3,)), ("user", np.dtype(object), (1,)), ("t", np.dtype(object), (1,))]
    uniform = CollectConfig.from_parameters("m", params, inputs, OUTPUTS)
    capped = CollectConfig.from_parameters(
        "m", {**params, "sluice.collect.max_record_bytes": "1000000"}, inputs, OUTPUTS
    )
    tensors, mappings = [], []
    for i in range(5):
        x = np.arange(6, dtype=F4).reshape(2, 3) + i
        user = np.array([[f"u{i}".encode()], [b"v"]], dtype=object)
        t = np.array([[f"t{i}".encode()], [b"w"]], dtype=object)
        y = x.sum(axis=1, keepdims=True)
        ins = (InferInput("user", "BYTES", (2, 1), user), InferInput("x", "FP32", (2, 3), x),
               InferInput("t", "BYTES", (2, 1), t))  # fmt: skip
        outs = (InferOutput("y", "FP32", (2, 1), y),)
        tensors.append(CollectRecord(f"r{i}", 10 + i, "m", "1", 1.0, "ok", None, 5, ins, outs))
        mappings.append(CollectRecord(f"r{i}", 10 + i, "m", "1", 1.0, "ok", None, 5,
                                      {"x": x, "user": user, "t": t}, {"y": y}))  # fmt: skip
    spool = Spool(tmp_path / "_spool")
    for name, records, config in (("fast", tensors, uniform), ("slow", mappings, capped)):
        encoded = encode(records, config)
        assert len(encoded.payloads) == 1 and encoded.too_large == 0
        seg = spool.new_segment()
        seg.append(encoded.payloads[0])
        roll_segment(seg.close(), tmp_path / name)
    fast, slow = _read(tmp_path / "fast"), _read(tmp_path / "slow")
    assert fast == slow and len(fast) == 10
    assert fast[2]["x"] == [1.0, 2.0, 3.0] and fast[2]["y"] == 6.0 and fast[2]["t"] == b"t1"
    assert fast[2]["user"] == hashlib.sha256(b"u1").hexdigest()
    # Without a batch dimension, and with one record unlike the rest (the per-record path).
    single = CollectConfig.from_parameters("n", {}, [("v", F4, (2, 2))], [], batching=False)
    odd = [
        CollectRecord(rid, 0, "n", "1", 1.0, "ok", None, 1,
                      (InferInput("v", "FP32", shape, np.ones(shape, F4)),), ())
        for rid, shape in (("a", (2, 2)), ("b", (2, 2)), ("c", (4,)))
    ]  # fmt: skip
    for name, records in (("single", odd[:2]), ("odd", odd)):
        seg = spool.new_segment()
        seg.append(encode(records, single).payloads[0])
        roll_segment(seg.close(), tmp_path / name)
    assert [(r["request_id"], r["v"]) for r in _read(tmp_path / "single")] == [
        ("a", [1.0] * 4), ("b", [1.0] * 4),
    ]  # fmt: skip
    assert [(r["request_id"], r["v"]) for r in _read(tmp_path / "odd")] == [
        ("a", [1.0] * 4), ("b", [1.0] * 4), ("c", [1.0] * 4),
    ]  # fmt: skip


def test_listeners_hear_only_the_versions_they_want_as_mappings(tmp_path: Path) -> None:
    from serving.observers import InferenceRecord
    from serving.types import InferInput

    c = _collector(tmp_path)
    for version in ("1", "2"):
        c.attach("m", version, {}, [("x", F4, (3,))], [])
    asked: list[tuple[str, str]] = []
    heard: list[tuple[str, object]] = []

    def wants(model: str, version: str) -> bool:
        asked.append((model, version))
        return version == "1"

    c.add_listener(lambda record, config: heard.append((record.version, record.inputs)), wants)
    c.start()
    x = np.ones((1, 3), F4)
    for version in ("1", "2", "1", "2"):
        assert c.observe_inference(InferenceRecord(
            model="m", version=version, request_id="r", batch_size=1, total_ns=1,
            inputs=(InferInput("x", "FP32", (1, 3), x),), outputs=(),
        ))  # fmt: skip
    c.close()
    assert sorted(asked) == [("m", "1"), ("m", "2")]  # once per version
    assert [v for v, _ in heard] == ["1", "1"]
    assert all(isinstance(inputs, dict) and inputs["x"] is x for _, inputs in heard)
    assert len(_read(tmp_path)) == 4


def test_a_short_queue_waits_for_more_records_and_a_full_one_is_drained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer drains once a quarter of the queue (here 2 of 8) is waiting, or
    DRAIN_SECS after its last drain (here never), not at every look."""
    import serving.monitoring._collector as module

    monkeypatch.setattr(module, "DRAIN_SECS", 3600.0)
    c = _collector(tmp_path, queue_size=8)
    c.attach("m", "1", {}, INPUTS, OUTPUTS)
    c.start()
    _observe(c, "a")
    time.sleep(0.5)  # ten looks at the queue
    assert c._queue and c._segment is None
    _observe(c, "b")
    deadline = time.monotonic() + 10
    while c._segment is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert c._segment is not None and not c._queue
    c.close()
    assert {r["request_id"] for r in _read(tmp_path)} == {"a", "b"}


def test_a_waiting_record_keeps_nothing_the_garbage_collector_tracks(tmp_path: Path) -> None:
    """Queued tuples and tensor objects kept the cyclic collector running 40 times as
    often with collection on; the queue holds only the config, strings, numbers and
    the arrays (numpy arrays are not tracked)."""
    import gc

    from serving.observers import InferenceRecord
    from serving.types import InferInput, InferOutput

    c = _collector(tmp_path)
    c.attach("m", "1", {}, INPUTS, OUTPUTS)
    x = np.ones((1, 3), F4)
    user = np.array([[b"u"]], dtype=object)
    for outcome in ("ok", "internal"):
        assert c.observe_inference(InferenceRecord(
            model="m", version="1", request_id=outcome, batch_size=1, total_ns=1, outcome=outcome,
            inputs=(InferInput("x", "FP32", (1, 3), x), InferInput("user", "BYTES", (1, 1), user)),
            outputs=(InferOutput("y", "FP32", (1, 1), x[:, :1]),) if outcome == "ok" else None,
        ))  # fmt: skip
    assert c.observe("m", "1", "s", {"x": x}, {}, 1)
    config = c.config_for("m", "1")
    assert c._queue and all(item is config or not gc.is_tracked(item) for item in c._queue)
    c.start()
    c.close()
    rows = _read(tmp_path)
    assert [(r["request_id"], r["status"], r["x"]) for r in rows] == [
        ("internal", "error", None), ("ok", "ok", [1.0, 1.0, 1.0]), ("s", "ok", [1.0, 1.0, 1.0]),
    ]  # fmt: skip
    assert rows[1]["user"] == b"u" and rows[1]["y"] == 1.0 and rows[2]["y"] is None
