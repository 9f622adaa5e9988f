"""Triton-style inference statistics for one model version.

Updated only from the event loop thread, so plain integers suffice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from serving.observers import InferenceRecord

__all__ = ["Duration", "RequestTimings", "VersionStats"]


@dataclass(slots=True)
class Duration:
    count: int = 0
    ns: int = 0

    def add(self, ns: int, count: int = 1) -> None:
        self.count += count
        self.ns += ns

    def to_json(self) -> dict[str, int]:
        return {"count": self.count, "ns": self.ns}


@dataclass(frozen=True, slots=True)
class RequestTimings:
    """Where one request's time went, in nanoseconds."""

    queue_ns: int = 0
    compute_input_ns: int = 0
    compute_infer_ns: int = 0
    compute_output_ns: int = 0


@dataclass(slots=True)
class _BatchStats:
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)


_PHASES = (
    "success", "fail", "queue", "compute_input", "compute_infer", "compute_output",
    "cache_hit", "cache_miss",
)  # fmt: skip


class VersionStats:
    """Cumulative counters rendered as one entry of the statistics extension; the
    observer (``serving.observers``) of one model version."""

    __slots__ = ("_batches", "_durations", "execution_count", "inference_count", "last_inference")

    wants_tensors = False

    def __init__(self) -> None:
        self._durations = {phase: Duration() for phase in _PHASES}
        self._batches: dict[int, _BatchStats] = {}
        self.inference_count = 0
        self.execution_count = 0
        self.last_inference = 0

    def on_inference(self, record: InferenceRecord) -> None:
        if record.outcome == "ok":
            self.record_success(record.batch_size, record.total_ns, record)
        else:
            self.record_failure(record.total_ns, record.queue_ns)

    def on_execution(self, record: InferenceRecord) -> None:
        self.record_execution(record.execution_size, record)

    def record_success(self, batch_size: int, total_ns: int, timings: RequestTimings) -> None:
        d = self._durations
        d["success"].add(total_ns)
        d["queue"].add(timings.queue_ns)
        d["compute_input"].add(timings.compute_input_ns)
        d["compute_infer"].add(timings.compute_infer_ns)
        d["compute_output"].add(timings.compute_output_ns)
        self.inference_count += batch_size
        self.last_inference = time.time_ns() // 1_000_000

    def record_execution(self, batch_size: int, timings: RequestTimings) -> None:
        """One model execution that served ``batch_size`` batch elements."""
        self.execution_count += 1
        batch = self._batches.get(batch_size)
        if batch is None:
            batch = self._batches[batch_size] = _BatchStats()
        batch.compute_input.add(timings.compute_input_ns)
        batch.compute_infer.add(timings.compute_infer_ns)
        batch.compute_output.add(timings.compute_output_ns)

    def record_failure(self, total_ns: int, queue_ns: int = 0) -> None:
        self._durations["fail"].add(total_ns)
        self._durations["queue"].add(queue_ns)
        self.last_inference = time.time_ns() // 1_000_000

    def to_json(self, name: str, version: int) -> dict[str, Any]:
        return {
            "name": name,
            "version": str(version),
            "last_inference": self.last_inference,
            "inference_count": self.inference_count,
            "execution_count": self.execution_count,
            "inference_stats": {phase: d.to_json() for phase, d in self._durations.items()},
            "batch_stats": [
                {
                    "batch_size": size,
                    "compute_input": b.compute_input.to_json(),
                    "compute_infer": b.compute_infer.to_json(),
                    "compute_output": b.compute_output.to_json(),
                }
                for size, b in sorted(self._batches.items())
            ],
        }
