"""The one place the profiler reaches the load generator the benchmark suite also uses."""

from __future__ import annotations

from benchmarks.histogram import summarize_values
from benchmarks.http_client import HttpSender
from benchmarks.loadgen import LoadResult, LoadSpec, drive

__all__ = ["HttpSender", "LoadResult", "LoadSpec", "drive", "summarize_values"]
