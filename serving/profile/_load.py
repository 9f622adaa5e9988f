"""The one place the profiler reaches the load generator the benchmark suite also uses."""

from __future__ import annotations

from serving.loadgen import HttpSender, LoadResult, LoadSpec, drive, summarize_values

__all__ = ["HttpSender", "LoadResult", "LoadSpec", "drive", "summarize_values"]
