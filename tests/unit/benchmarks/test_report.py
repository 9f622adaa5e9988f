from __future__ import annotations

import pytest

from benchmarks.limit import LimitResult
from benchmarks.report import Measurement, RunReport, pick_best, render_markdown
from serving.loadgen import LatencySummary, new_histogram, summarize, summarize_values

pytest.importorskip("hdrh")


def test_percentiles_of_a_uniform_distribution() -> None:
    summary, histogram = summarize_values(range(1, 1001))  # 1 us .. 1 ms
    assert summary.count == 1000
    assert summary.p50_ms == pytest.approx(0.5, rel=0.002)
    assert summary.p90_ms == pytest.approx(0.9, rel=0.002)
    assert summary.p99_ms == pytest.approx(0.99, rel=0.002)
    assert summary.p999_ms == pytest.approx(0.999, rel=0.002)
    assert summary.max_ms == pytest.approx(1.0, rel=0.002)
    assert summary.mean_ms == pytest.approx(0.5005, rel=0.002)
    assert histogram.get_total_count() == 1000


def test_a_tail_shows_in_the_high_percentiles_only() -> None:
    summary, _ = summarize_values([1000] * 990 + [50_000] * 10)  # 1% at 50 ms
    assert summary.p50_ms == pytest.approx(1.0, rel=0.002)
    assert summary.p90_ms == pytest.approx(1.0, rel=0.002)
    assert summary.p999_ms == pytest.approx(50.0, rel=0.002)


def test_empty_histogram_summarizes_to_zeros() -> None:
    assert summarize(new_histogram()) == LatencySummary(0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


def _m(config: str, throughput: float, p50: float, errors: int = 0, **kw: object) -> Measurement:
    lat = LatencySummary(100, p50, p50, p50 * 2, p50 * 3, p50 * 4, p50 * 5)
    return Measurement(
        scenario=kw.pop("scenario", "tiny_http_json_c32"),  # type: ignore[arg-type]
        target=kw.pop("target", "sluice"),  # type: ignore[arg-type]
        config=config,
        client="own",
        connections=32,
        mode=kw.pop("mode", "closed"),  # type: ignore[arg-type]
        duration_s=10,
        requests=int(throughput * 10),
        errors=errors,
        throughput=throughput,
        latency=lat,
    )


def test_best_is_error_free_before_it_is_fast() -> None:
    failing = _m("a", 5000, 1.0, errors=500)
    clean = _m("b", 3000, 2.0)
    assert pick_best([failing, clean], "throughput") is clean
    assert pick_best([_m("a", 3000, 1.0), _m("b", 4000, 0.5)], "p50").config == "b"
    assert pick_best([_m("c", 100, 1.0, mode="poisson")], "throughput") is None


def test_ratios_use_the_best_of_each_side_and_the_limit() -> None:
    report = RunReport(
        "python -m benchmarks run",
        "now",
        {"cores": 2},
        {"scenarios": ["tiny_http_json_c32", "wide_http_binary_c64"]},
    )
    report.measurements += [
        _m("tiny_mlp", 4000, 1.0),
        _m("tiny_mlp_batched", 3000, 1.0),
        _m("pw0", 400, 10.0, target="mlserver"),
        _m("pw1", 500, 8.0, target="mlserver"),
        _m("wide_mlp_batched", 6000, 3.0, scenario="wide_http_binary_c64"),
    ]
    report.limits["wide"] = LimitResult("wide", {1: 1000.0, 64: 10000.0})
    rows = {r.label: r for r in report.comparisons()}
    tput = rows["tiny_http_json_c32: throughput Sluice / mlserver"]
    assert tput.value == pytest.approx(8.0)
    assert tput.met is True
    p99 = rows["tiny_http_json_c32: Sluice p99 ms"]
    assert p99.value == pytest.approx(3.0) and p99.met is True
    limit = rows["wide_http_binary_c64: throughput Sluice / limit"]
    assert limit.value == pytest.approx(0.6) and limit.met is True
    missing = rows["wide_http_binary_c64: throughput Sluice / mlserver"]
    assert missing.value is None and missing.met is None and "mlserver" in missing.note
    text = render_markdown(report)
    assert (
        "| tiny_http_json_c32: throughput Sluice / mlserver | own | 4,000 | 500.00 | 8.00 |" in text
    )
