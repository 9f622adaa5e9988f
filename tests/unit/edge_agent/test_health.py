from __future__ import annotations

from edge_agent._health import LiveSample, compare_golden, judge_live, parse_metrics

CONFIG = {
    "health.min_requests": 10,
    "health.max_error_rate": 0.1,
    "health.max_p99_ms": 100.0,
    "health.window_requests": 50,
    "health.window_secs": 30.0,
}

METRICS = """
sluice_inference_requests_total{model="mlp",outcome="success",version="2"} 90.0
sluice_inference_requests_total{model="mlp",outcome="failure",version="2"} 10.0
sluice_inference_requests_total{model="mlp",outcome="success",version="1"} 5.0
sluice_request_duration_seconds_bucket{le="0.01",model="mlp",version="2"} 80.0
sluice_request_duration_seconds_bucket{le="0.25",model="mlp",version="2"} 99.0
sluice_request_duration_seconds_bucket{le="+Inf",model="mlp",version="2"} 100.0
"""


def test_the_servers_metrics_give_the_versions_counts_and_p99() -> None:
    sample = parse_metrics(METRICS, "mlp", 2)
    assert (sample.success, sample.failure) == (90.0, 10.0)
    assert sample.p99_secs() == 0.25
    base = LiveSample(50.0, 0.0, ((0.01, 50.0), (0.25, 50.0), (float("inf"), 50.0)))
    delta = sample.minus(base)
    assert (delta.success, delta.failure, delta.p99_secs()) == (
        40.0,
        10.0,
        float("inf"),
    )  # 1 of 50 past 0.25 s


def test_the_gate_waits_for_enough_requests_then_judges() -> None:
    few = LiveSample(3, 2, ((0.01, 5.0), (float("inf"), 5.0)))
    assert not judge_live(few, 1.0, CONFIG).done
    bad = LiveSample(16, 4, ((0.01, 20.0), (float("inf"), 20.0)))
    verdict = judge_live(bad, 1.0, CONFIG)
    assert verdict.done and not verdict.healthy and "error rate 20.0%" in verdict.reason
    slow = LiveSample(20, 0, ((0.01, 0.0), (0.25, 20.0), (float("inf"), 20.0)))
    assert "p99" in judge_live(slow, 1.0, CONFIG).reason
    good = LiveSample(50, 0, ((0.01, 50.0), (float("inf"), 50.0)))
    assert judge_live(good, 1.0, CONFIG).healthy and judge_live(good, 1.0, CONFIG).done
    assert judge_live(LiveSample(), 31.0, CONFIG).healthy  # a quiet window ends on time


def test_golden_outputs_within_tolerance() -> None:
    golden = {"outputs": [{"name": "y", "shape": [1, 2], "data": [1.0, 2.0]}]}
    ok = {"outputs": [{"name": "y", "shape": [1, 2], "data": [[1.00001, 2.0]]}]}
    assert compare_golden(golden, ok, 1e-4, 1e-3) is None
    off = {"outputs": [{"name": "y", "shape": [1, 2], "data": [1.0, 2.5]}]}
    assert "y'[1]" in (compare_golden(golden, off, 1e-4, 1e-3) or "")
    assert "missing" in (compare_golden(golden, {"outputs": []}, 1e-4, 1e-3) or "")
