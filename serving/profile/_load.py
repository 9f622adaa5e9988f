"""The one place the profiler reaches the load generator the benchmark suite also uses."""

from __future__ import annotations

from serving.convert import ToolError
from serving.loadgen import HttpSender, LoadResult, LoadSpec, drive, summarize_values

__all__ = [
    "MISSING_HISTOGRAMS",
    "HttpSender",
    "LoadResult",
    "LoadSpec",
    "drive",
    "require_histograms",
    "summarize_values",
]

MISSING_HISTOGRAMS = (
    "sluice profile needs hdrhistogram for its latency histograms: pip install 'sluice[profile]'"
)


def require_histograms() -> None:
    """Refuse before any server starts when the HDR histogram package is not installed
    (the load generator imports it only once the first point is summarized)."""
    try:
        import hdrh.histogram  # noqa: F401
    except ImportError:
        raise ToolError(MISSING_HISTOGRAMS) from None
