"""Driving each configuration with each load point and recording what was measured.

Per point: throughput, latency percentiles from an HDR histogram (open loop from the
intended send time, so no coordinated omission), errors, the server's CPU (cores) and
peak RSS from /proc, and the batch sizes the server executed (the statistics endpoint's
``batch_stats``, counted before and after the point). The warm-up is a run of its own
before the counts are taken, so every request of the measured run (each one row) is in
the batch counts, and nothing else is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np

from serving.convert import ToolError
from serving.profile._grid import Configuration, LoadPoint
from serving.profile._load import HttpSender, LoadSpec, drive, summarize_values
from serving.profile._requests import infer_requests
from serving.profile._resources import ResourceSample, ResourceWindow

__all__ = ["Target", "measure_point"]

REQUESTS_ENCODED = 256
ProgressFn = Callable[[float, int, int], None]


@dataclass(frozen=True, slots=True)
class Target:
    """A ready server: its URL, the model, and the pid to read /proc from (None: remote)."""

    url: str
    model: str
    pid: int | None
    batched: bool


def batch_histogram(url: str, model: str) -> dict[int, int]:
    """Executions per batch size so far (the statistics endpoint's batch_stats)."""
    response = httpx.get(f"{url}/v2/models/{model}/stats", timeout=10)
    response.raise_for_status()
    counts: dict[int, int] = {}
    for stats in response.json().get("model_stats", []):
        for batch in stats.get("batch_stats", []):
            size = int(batch["batch_size"])
            counts[size] = counts.get(size, 0) + int(batch["compute_infer"]["count"])
    return counts


def measure_point(
    target: Target,
    configuration: Configuration | None,
    point: LoadPoint,
    arrays: dict[str, np.ndarray],
    duration: float,
    warmup: float,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """One load point against ``target``, as one JSON-ready record."""
    parts = urlsplit(target.url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    requests = infer_requests(host, port, target.model, arrays, target.batched, REQUESTS_ENCODED)
    connections = int(point.value) if point.mode == "closed" else _open_connections(point.value)
    spec = LoadSpec(
        connections=connections,
        duration=duration,
        mode="closed" if point.mode == "closed" else "poisson",
        rate=0.0 if point.mode == "closed" else point.value,
    )
    if warmup > 0:  # its own run, so the batch counts below cover the measured run alone
        asyncio.run(_drive(host, port, requests, replace(spec, duration=warmup), None))
    before = batch_histogram(target.url, target.model)
    window = ResourceWindow(target.pid) if target.pid is not None else None
    if window is not None:
        with window:
            result = asyncio.run(_drive(host, port, requests, spec, progress))
    else:
        result = asyncio.run(_drive(host, port, requests, spec, progress))
    after = batch_histogram(target.url, target.model)
    executed = {k: after.get(k, 0) - before.get(k, 0) for k in sorted(after)}
    summary, _histogram = summarize_values(result.latencies_us)
    usage = window.sample if window is not None else ResourceSample(0.0, 0.0, 0)
    return {
        "configuration": configuration.to_json() if configuration else None,
        "load": point.to_json(),
        "duration_s": duration,
        "successes": result.successes,
        "errors": result.errors,
        "error_samples": list(result.error_samples),
        "throughput": result.throughput,
        "latency_ms": {
            "p50": summary.p50_ms,
            "p90": summary.p90_ms,
            "p99": summary.p99_ms,
            "p99.9": summary.p999_ms,
            "max": summary.max_ms,
            "mean": summary.mean_ms,
        },
        "cpu_cores": None if window is None else usage.cpu_cores,
        "peak_rss_bytes": None if window is None else usage.peak_rss_bytes,
        "batch_sizes": {str(k): v for k, v in executed.items() if v},
    }


def _open_connections(rate: float) -> int:
    return max(4, min(256, int(rate / 50) + 4))


async def _drive(
    host: str, port: int, requests: list[bytes], spec: LoadSpec, progress: ProgressFn | None
) -> Any:
    senders = []
    try:
        for _ in range(spec.connections):
            senders.append(await HttpSender(host, port, requests).connect())
    except OSError as exc:
        raise ToolError(f"cannot connect to {host}:{port}: {exc}") from None
    try:
        return await drive(senders, spec, len(requests), progress)  # type: ignore[arg-type]
    finally:
        for sender in senders:
            await sender.close()
