"""The recommendation rule, applied to the measurements and written beside them.

Among load points with no errors and p99 within the SLO (all error-free points when no
SLO is given), the one with the most throughput per CPU core used wins; a tie goes to the
higher throughput. The pod request: CPU = cores used at that point x (1 + headroom),
rounded up to 0.1 core; memory = peak RSS x (1 + headroom), rounded up to 16 MiB. Where
CPU was not measured (``--url`` without ``--server-pid``) the most throughput wins and no
pod request is made.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["HEADROOM", "RULE", "Recommendation", "recommend"]

HEADROOM = 0.25
RULE = (
    "among load points with 0 errors and p99 <= SLO (every error-free point without an SLO), "
    "the most throughput per CPU core used wins (ties: higher throughput); "
    f"CPU request = cores used x {1 + HEADROOM:g} rounded up to 0.1 core, "
    f"memory request = peak RSS x {1 + HEADROOM:g} rounded up to 16 MiB; "
    "where CPU was not measured, the most throughput wins and no request is made"
)
_MIB = 2**20


@dataclass(frozen=True, slots=True)
class Recommendation:
    index: int  # into the measured points
    per_core: float | None  # None: CPU not measured (a remote server)
    cpu_request_cores: float | None
    memory_request_bytes: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "point": self.index,
            "throughput_per_core": self.per_core,
            "cpu_request_cores": self.cpu_request_cores,
            "memory_request_bytes": self.memory_request_bytes,
            "memory_request": None
            if self.memory_request_bytes is None
            else f"{self.memory_request_bytes // _MIB}Mi",
        }


def per_core(point: dict[str, Any]) -> float:
    return point["throughput"] / max(point["cpu_cores"], 1e-3)


def eligible(point: dict[str, Any], slo_p99_ms: float | None) -> bool:
    if point["errors"] or point["successes"] == 0:
        return False
    return slo_p99_ms is None or point["latency_ms"]["p99"] <= slo_p99_ms


def recommend(points: list[dict[str, Any]], slo_p99_ms: float | None) -> Recommendation | None:
    """The winning point by ``RULE``; None when no point qualifies."""
    candidates = [i for i, p in enumerate(points) if eligible(p, slo_p99_ms)]
    if not candidates:
        return None
    if any(points[i]["cpu_cores"] is None for i in candidates):
        best = max(candidates, key=lambda i: points[i]["throughput"])
        return Recommendation(best, None, None, None)
    best = max(candidates, key=lambda i: (per_core(points[i]), points[i]["throughput"]))
    point = points[best]
    cpu = math.ceil(point["cpu_cores"] * (1 + HEADROOM) * 10) / 10
    memory = math.ceil(point["peak_rss_bytes"] * (1 + HEADROOM) / (16 * _MIB)) * 16 * _MIB
    return Recommendation(best, per_core(point), max(cpu, 0.1), memory)


def closest(points: list[dict[str, Any]]) -> int | None:
    """The error-free point with the lowest p99 (shown when none meets the SLO)."""
    clean = [i for i, p in enumerate(points) if not p["errors"] and p["successes"]]
    return min(clean, key=lambda i: points[i]["latency_ms"]["p99"]) if clean else None
