"""Latency histograms (HDR, microseconds) and the summary every report prints."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

__all__ = [
    "HIGHEST_US",
    "PERCENTILES",
    "LatencySummary",
    "new_histogram",
    "summarize",
    "summarize_values",
]

HIGHEST_US = 120_000_000  # two minutes: anything slower is a failure, not a latency
PERCENTILES = (50.0, 90.0, 99.0, 99.9)


def new_histogram() -> Any:
    from hdrh.histogram import HdrHistogram

    return HdrHistogram(1, HIGHEST_US, 3)


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """Latency in milliseconds; ``count`` is the number of recorded samples."""

    count: int
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float | None  # None where the source (wrk's summary) has none
    max_ms: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def summarize(histogram: Any) -> LatencySummary:
    """Percentiles of an HDR histogram recorded in microseconds."""
    count = histogram.get_total_count()
    if count == 0:
        return LatencySummary(0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    p50, p90, p99, p999 = (histogram.get_value_at_percentile(p) / 1000.0 for p in PERCENTILES)
    return LatencySummary(
        count=count,
        mean_ms=histogram.get_mean_value() / 1000.0,
        p50_ms=p50,
        p90_ms=p90,
        p99_ms=p99,
        p999_ms=p999,
        max_ms=histogram.get_max_value() / 1000.0,
    )


def summarize_values(latencies_us: Iterable[int]) -> tuple[LatencySummary, Any]:
    """Record ``latencies_us`` into a new histogram; return its summary and the histogram."""
    histogram = new_histogram()
    record = histogram.record_value
    for value in latencies_us:
        record(min(max(int(value), 1), HIGHEST_US))
    return summarize(histogram), histogram
