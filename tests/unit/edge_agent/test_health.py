from __future__ import annotations

from edge_agent._health import LiveSample, compare_golden, judge_live

CONFIG = {
    "health.min_requests": 10,
    "health.max_error_rate": 0.1,
    "health.max_p99_ms": 100.0,
    "health.window_requests": 50,
    "health.window_secs": 30.0,
}


def sample(success: int, failure: int, slow: int = 0) -> LiveSample:
    fast = (0.001,) * (success + failure - slow)
    return LiveSample(success, failure, fast + (0.25,) * slow)


def test_p99_is_the_nearest_rank() -> None:
    assert sample(100, 0, slow=1).p99_secs() == 0.001  # 1 slow in 100: under the 99th
    assert sample(100, 0, slow=2).p99_secs() == 0.25
    assert LiveSample().p99_secs() == 0.0


def test_the_gate_waits_for_enough_requests_then_judges() -> None:
    assert not judge_live(sample(3, 2), 1.0, CONFIG).done
    verdict = judge_live(sample(16, 4), 1.0, CONFIG)
    assert verdict.done and not verdict.healthy and "error rate 20.0%" in verdict.reason
    assert "p99" in judge_live(sample(20, 0, slow=20), 1.0, CONFIG).reason
    good = judge_live(sample(50, 0), 1.0, CONFIG)
    assert good.healthy and good.done
    assert judge_live(LiveSample(), 31.0, CONFIG).healthy  # a quiet window ends on time
    assert not judge_live(sample(9, 0), 1.0, CONFIG).done


def test_golden_outputs_within_tolerance() -> None:
    golden = {"outputs": [{"name": "y", "shape": [1, 2], "data": [1.0, 2.0]}]}
    ok = {"outputs": [{"name": "y", "shape": [1, 2], "data": [[1.00001, 2.0]]}]}
    assert compare_golden(golden, ok, 1e-4, 1e-3) is None
    off = {"outputs": [{"name": "y", "shape": [1, 2], "data": [1.0, 2.5]}]}
    assert "y'[1]" in (compare_golden(golden, off, 1e-4, 1e-3) or "")
    assert "missing" in (compare_golden(golden, {"outputs": []}, 1e-4, 1e-3) or "")
