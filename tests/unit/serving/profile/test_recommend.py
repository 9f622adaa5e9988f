"""The recommendation rule on hand-made measurements."""

from __future__ import annotations

from typing import Any

from serving.profile import recommend

MIB = 2**20


def point(throughput: float, cores: float, p99: float, errors: int = 0) -> dict[str, Any]:
    return {
        "throughput": throughput,
        "cpu_cores": cores,
        "latency_ms": {"p99": p99},
        "errors": errors,
        "successes": int(throughput),
        "peak_rss_bytes": 100 * MIB,
    }


def test_most_throughput_per_core_within_the_slo_wins() -> None:
    points = [
        point(1000, 2.0, 5.0),  # 500 per core
        point(900, 1.0, 20.0),  # 900 per core, over the SLO
        point(600, 1.0, 8.0),  # 600 per core
        point(5000, 1.0, 1.0, errors=1),  # errors disqualify
    ]
    chosen = recommend(points, slo_p99_ms=10.0)
    assert chosen is not None and chosen.index == 2
    assert chosen.per_core == 600.0
    without_slo = recommend(points, slo_p99_ms=None)
    assert without_slo is not None and without_slo.index == 1


def test_the_pod_request_is_usage_plus_a_quarter_rounded_up() -> None:
    chosen = recommend([point(100, 1.01, 1.0)], slo_p99_ms=None)
    assert chosen is not None
    assert chosen.cpu_request_cores == 1.3  # 1.2625 rounded up to 0.1
    assert chosen.memory_request_bytes == 128 * MIB  # 125 MiB rounded up to 16 MiB
    assert chosen.to_json()["memory_request"] == "128Mi"


def test_no_point_within_the_slo_recommends_nothing() -> None:
    assert recommend([point(100, 1.0, 50.0)], slo_p99_ms=10.0) is None


def test_without_cpu_measured_the_most_throughput_wins_and_nothing_is_requested() -> None:
    # `--url` without `--server-pid`: the points carry no CPU or RSS figures.
    points = [point(700, 1.0, 5.0), point(900, 1.0, 8.0), point(1200, 1.0, 30.0)]
    for measured in points:
        measured["cpu_cores"] = measured["peak_rss_bytes"] = None
    chosen = recommend(points, slo_p99_ms=10.0)
    assert chosen is not None and chosen.index == 1
    assert chosen.to_json() == {
        "point": 1,
        "throughput_per_core": None,
        "cpu_request_cores": None,
        "memory_request_bytes": None,
        "memory_request": None,
    }
