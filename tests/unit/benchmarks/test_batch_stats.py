"""The batch-size histogram of a measured window, read from real statistics documents."""

from __future__ import annotations

import pytest

from benchmarks.batch_stats import BatchingWindow, limit_at, parse_stats, verdict
from benchmarks.limit import LimitResult
from benchmarks.report import Measurement, RunReport, batching_rows, render_markdown
from serving.loadgen import LatencySummary
from serving.stats import RequestTimings, VersionStats

MS = 1_000_000


def _serve(stats: VersionStats, sizes: list[int], compute_ms: float, queue_ms: float) -> None:
    """Executions of ``sizes`` rows, one request per row, as the batcher reports them."""
    for size in sizes:
        timings = RequestTimings(queue_ns=int(queue_ms * MS), compute_infer_ns=int(compute_ms * MS))
        stats.record_execution(size, timings)
        for _ in range(size):
            stats.record_success(1, int((queue_ms + compute_ms) * MS), timings)


def _doc(stats: VersionStats) -> dict[str, object]:
    return {"model_stats": [stats.to_json("wide_mlp_batched", 1)]}


def _window(
    before: list[int], during: list[int], *, compute_ms: float = 4.0, connections: int = 64
) -> BatchingWindow:
    stats = VersionStats()
    _serve(stats, before, compute_ms, 1.0)
    first = parse_stats(_doc(stats), "wide_mlp_batched", taken_at=100.0)
    _serve(stats, during, compute_ms, 2.0)
    second = parse_stats(_doc(stats), "wide_mlp_batched", taken_at=101.0)
    return BatchingWindow.between(
        first,
        second,
        instances=1,
        max_batch_size=64,
        queue_delay_us=1000,
        connections=connections,
    )


def test_the_window_counts_only_the_batches_formed_between_the_snapshots() -> None:
    window = _window([1, 1, 32, 64], [1, 8, 8, 64])  # warm-up batches, then the window's
    assert window.histogram == {1: 1, 8: 2, 64: 1}
    assert window.executions == 4 and window.rows == 81
    assert window.mean_batch == pytest.approx(81 / 4)
    assert window.queue_ms == pytest.approx(2.0)  # the window's requests only
    assert window.compute_ms == pytest.approx(4.0)
    assert window.busy == pytest.approx(4 * 4.0 / 1000)  # 16 ms of a 1 s window


def test_a_model_missing_from_the_answer_is_named() -> None:
    with pytest.raises(ValueError, match=r"no statistics for model 'other'.*wide_mlp_batched"):
        parse_stats(_doc(VersionStats()), "other", taken_at=0.0)


def test_the_limit_is_interpolated_between_measured_batch_sizes() -> None:
    limit = LimitResult("wide", {1: 1000.0, 4: 3000.0, 16: 5000.0})
    assert limit_at(limit, 2) == pytest.approx(2000.0)  # halfway in log2
    assert limit_at(limit, 8) == pytest.approx(4000.0)
    assert limit_at(limit, 0.5) == 1000.0 and limit_at(limit, 64) == 5000.0


def test_an_idle_instance_and_small_batches_are_named_as_the_limit() -> None:
    limit = LimitResult("wide", {1: 1000.0, 8: 4000.0, 64: 8000.0})
    window = _window([], [2] * 100, compute_ms=0.5)  # 100 executions of 2 rows in 1 s
    said = verdict(window, limit)
    assert "instances idle 95% of the window" in said
    assert "batches small: ONNX Runtime alone does 2,000 rows/s at batch 2.0" in said
    assert "batches slow" not in said


def test_slow_full_batches_are_named_as_the_limit() -> None:
    limit = LimitResult("wide", {1: 1000.0, 64: 8000.0})  # 8 ms for 64 rows alone
    window = _window([], [64] * 50, compute_ms=20.0)  # 50 x 20 ms: busy the whole second
    said = verdict(window, limit)
    assert said.startswith("batches slow: 20.00 ms per execution vs ONNX Runtime's 8.00 ms")
    assert "100% of batches full at max_batch_size 64" in said
    assert "idle" not in said and "batches small" not in said


def test_the_report_carries_the_histogram_in_json_and_markdown() -> None:
    report = RunReport("cmd", "now", {}, {"scenarios": ["wide_http_binary_c64"]})
    report.limits["wide"] = LimitResult("wide", {1: 1000.0, 64: 8000.0})
    report.measurements.append(
        Measurement(
            scenario="wide_http_binary_c64", target="sluice", config="wide_mlp_batched",
            client="own", connections=64, mode="closed", duration_s=1.0, requests=81,
            errors=0, throughput=81.0, latency=LatencySummary(81, 1, 1, 1, 1, 1, 1),
            batching=_window([], [1, 8, 8, 64]),
        )
    )  # fmt: skip
    batching = report.to_json()["measurements"][0]["batching"]
    assert batching["histogram"] == {"1": 1, "8": 2, "64": 1}
    assert batching["ort_best_rows_per_s"] == 8000.0
    assert batching["limited_by"] == verdict(report.measurements[0].batching, report.limits["wide"])
    (row,) = batching_rows(report)
    assert row[6] == "1:1 8:2 64:1"
    assert "| wide_http_binary_c64 | wide_mlp_batched | own | 81 | 4 | 20.2 | 1:1 8:2 64:1 |" in (
        render_markdown(report)
    )


def test_one_thread_instances_are_held_to_the_one_thread_limit() -> None:
    limit = LimitResult("wide", {1: 1000.0, 64: 16000.0}, one_thread={1: 500.0, 64: 8000.0})
    window = _window([], [64] * 50, compute_ms=10.0)  # 10 ms for 64 rows
    assert "batches slow: 10.00 ms per execution vs ONNX Runtime's 4.00 ms alone (default" in (
        verdict(window, limit)
    )
    one = BatchingWindow(**{**_fields(window), "threads": 1})
    assert "batches slow" not in verdict(one, limit)  # 8 ms alone on one thread: 1.25x


def _fields(window: BatchingWindow) -> dict[str, object]:
    return {name: getattr(window, name) for name in BatchingWindow.__dataclass_fields__}
