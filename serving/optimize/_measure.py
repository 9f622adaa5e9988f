"""Latency and throughput of an ONNX model in process, on the sample's rows.

Each measurement runs for a fixed time (not a fixed count), one ONNX Runtime session
with the defaults the server uses for one instance, so the original and the result are
measured alike in the same run.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["Speed", "measure"]


@dataclass(frozen=True, slots=True)
class Speed:
    batch1_p50_ms: float
    batch1_rows_per_s: float
    best_batch: int
    best_rows_per_s: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def measure(
    session: Any, inputs: dict[str, np.ndarray], batches: list[int], seconds: float
) -> Speed:
    """Batch 1 latency (median) and rows/s at each of ``batches``; the best is reported."""
    rows = len(next(iter(inputs.values())))
    one = {name: value[:1] for name, value in inputs.items()}
    latencies = _run_for(session, one, seconds)
    p50 = float(np.median(latencies)) * 1000.0
    best_batch, best = 1, 1.0 / max(float(np.mean(latencies)), 1e-9)
    for batch in batches:
        if batch <= 1:
            continue
        feed = {name: _tile(value, batch, rows) for name, value in inputs.items()}
        times = _run_for(session, feed, seconds)
        rate = batch / max(float(np.mean(times)), 1e-9)
        if rate > best:
            best_batch, best = batch, rate
    return Speed(p50, 1.0 / max(float(np.mean(latencies)), 1e-9), best_batch, best)


def _tile(value: np.ndarray, batch: int, rows: int) -> np.ndarray:
    reps = -(-batch // rows)
    return np.concatenate([value] * reps)[:batch]


def _run_for(session: Any, feed: dict[str, np.ndarray], seconds: float) -> list[float]:
    session.run(None, feed)  # warm
    times: list[float] = []
    clock = time.perf_counter
    deadline = clock() + seconds
    while clock() < deadline or len(times) < 3:
        start = clock()
        session.run(None, feed)
        times.append(clock() - start)
    return times
