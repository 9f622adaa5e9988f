"""Driving each configuration with each load point and recording what was measured.

Per point: throughput, latency percentiles from an HDR histogram (open loop from the
intended send time, so no coordinated omission), errors, the server's CPU (cores) and
peak RSS from /proc, and from the statistics endpoint, read before and after the point:
the batch sizes the server executed (``batch_stats``) and the server-side split of a
request's time (``inference_stats``: queue, compute input / infer / output, the whole
request), as means per request and per execution of each batch size. The warm-up is a run
of its own before the counts are taken, so every request of the measured run (each one
row) is in the counts, and nothing else is.
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

__all__ = ["SERVER_PHASES", "ServerCounters", "Target", "measure_point", "server_split"]

REQUESTS_ENCODED = 256
ProgressFn = Callable[[float, int, int], None]


@dataclass(frozen=True, slots=True)
class Target:
    """A ready server: its URL, the model, and the pid to read /proc from (None: remote)."""

    url: str
    model: str
    pid: int | None
    batched: bool


SERVER_PHASES = ("queue", "compute_input", "compute_infer", "compute_output")


@dataclass(frozen=True, slots=True)
class ServerCounters:
    """The statistics endpoint's cumulative counts, summed over the model's versions:
    ``phases`` maps ``success`` and each of ``SERVER_PHASES`` to (count, ns), ``batches``
    maps a batch size to (executions, compute_infer ns)."""

    phases: dict[str, tuple[int, int]]
    batches: dict[int, tuple[int, int]]


def server_counters(url: str, model: str) -> ServerCounters:
    response = httpx.get(f"{url}/v2/models/{model}/stats", timeout=10)
    response.raise_for_status()
    phases: dict[str, tuple[int, int]] = {}
    batches: dict[int, tuple[int, int]] = {}
    for stats in response.json().get("model_stats", []):
        for phase in ("success", *SERVER_PHASES):
            entry = stats.get("inference_stats", {}).get(phase, {})
            count, ns = phases.get(phase, (0, 0))
            phases[phase] = (count + int(entry.get("count", 0)), ns + int(entry.get("ns", 0)))
        for batch in stats.get("batch_stats", []):
            size, infer = int(batch["batch_size"]), batch["compute_infer"]
            count, ns = batches.get(size, (0, 0))
            batches[size] = (count + int(infer["count"]), ns + int(infer["ns"]))
    return ServerCounters(phases, batches)


def server_split(before: ServerCounters, after: ServerCounters) -> dict[str, Any]:
    """What the server counted during the point: the mean of each phase per request (ms;
    a request that rode in a batch counts the whole execution, as Triton's statistics do)
    and the mean compute_infer per execution of each batch size."""

    def mean_ms(now: tuple[int, int], then: tuple[int, int]) -> float | None:
        count = now[0] - then[0]
        return (now[1] - then[1]) / count / 1e6 if count > 0 else None

    zero = (0, 0)
    requests = after.phases.get("success", zero)[0] - before.phases.get("success", zero)[0]
    split: dict[str, Any] = {"requests": requests}
    split["request_ms"] = mean_ms(after.phases.get("success", zero),
                                  before.phases.get("success", zero))  # fmt: skip
    for phase in SERVER_PHASES:
        split[f"{phase}_ms"] = mean_ms(after.phases.get(phase, zero),
                                       before.phases.get(phase, zero))  # fmt: skip
    split["compute_infer_ms_by_batch_size"] = {
        str(size): mean
        for size in sorted(after.batches)
        if (mean := mean_ms(after.batches[size], before.batches.get(size, zero))) is not None
    }
    return split


def _executions(before: ServerCounters, after: ServerCounters) -> dict[int, int]:
    return {
        size: after.batches[size][0] - before.batches.get(size, (0, 0))[0]
        for size in sorted(after.batches)
    }


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
    before = server_counters(target.url, target.model)
    window = ResourceWindow(target.pid) if target.pid is not None else None
    if window is not None:
        with window:
            result = asyncio.run(_drive(host, port, requests, spec, progress))
    else:
        result = asyncio.run(_drive(host, port, requests, spec, progress))
    after = server_counters(target.url, target.model)
    executed = _executions(before, after)
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
        "server": server_split(before, after),
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
