"""Per-arm accounting: what each version answered as a split arm or as a shadow.

``ArmObserver`` is a ``serving.observers.Observer``: it hears every inference of the
models that have a split and counts it under ``arm="primary"`` or, when the request is
a shadow copy (``SHADOW`` is set in the copy's task), ``arm="shadow"``, both in
Prometheus (``sluice_arm_*``, labelled model / version / arm, so a dashboard compares
arms) and in memory (what ``sluice traffic show`` and the canary analysis read).
Shadow copies also count what was sent, dropped and failed, and how their outputs
compare with the primary answer to the same request (``compare``).
"""

from __future__ import annotations

import contextvars
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from serving.observers import InferenceRecord
from serving.types import InferResponse

if TYPE_CHECKING:
    from serving.metrics import Metrics

__all__ = ["SHADOW", "ArmObserver", "ArmStats", "Comparison", "compare"]

SHADOW: contextvars.ContextVar[bool] = contextvars.ContextVar("sluice_shadow", default=False)

_LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
)  # fmt: skip
_WINDOW = 4096  # latencies kept per arm for percentiles


@dataclass(frozen=True, slots=True)
class Comparison:
    """One shadow answer against the primary answer to the same request."""

    rows: int  # rows compared by argmax (outputs with a class dimension), 0 if none
    agreeing_rows: int
    max_abs_diff: float  # over every numeric output both answered; inf on a shape mismatch


def compare(primary: InferResponse, shadow: InferResponse) -> Comparison:
    """Argmax agreement over the last dimension of outputs that have one wider than 1
    (classifier scores), and the largest absolute difference over every numeric output."""
    theirs = {o.name: o for o in shadow.outputs}
    rows = agreeing = 0
    worst = 0.0
    for ours in primary.outputs:
        other = theirs.get(ours.name)
        if other is None or ours.data.dtype.kind not in "biuf":
            continue
        a, b = ours.data, other.data
        if a.shape != b.shape:
            worst = float("inf")
            continue
        if a.size:
            diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
            worst = max(worst, float(np.nanmax(diff)) if not np.isnan(diff).all() else 0.0)
        if a.ndim >= 2 and a.shape[-1] > 1:
            a2, b2 = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
            rows += a2.shape[0]
            agreeing += int(np.count_nonzero(a2.argmax(axis=1) == b2.argmax(axis=1)))
    return Comparison(rows, agreeing, worst)


@dataclass(slots=True)
class ArmStats:
    """Counts of one (model, version, arm); cumulative, so readers take differences."""

    requests: int = 0
    errors: int = 0
    latencies_ns: deque[int] = field(default_factory=lambda: deque(maxlen=_WINDOW))
    # shadow arms only
    sent: int = 0
    dropped: int = 0
    compared: int = 0
    rows: int = 0
    agreeing_rows: int = 0
    max_abs_diff: float = 0.0
    diffs: deque[float] = field(default_factory=lambda: deque(maxlen=_WINDOW))

    def p99_ms(self) -> float | None:
        if not self.latencies_ns:
            return None
        return float(np.percentile(np.fromiter(self.latencies_ns, np.int64), 99)) / 1e6

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"requests": self.requests, "errors": self.errors}
        p99 = self.p99_ms()
        if p99 is not None:
            out["p99_ms"] = round(p99, 3)
        if self.sent or self.dropped:
            out.update(sent=self.sent, dropped=self.dropped, compared=self.compared)
            if self.rows:
                out["agreement"] = round(self.agreeing_rows / self.rows, 6)
            if self.compared:
                out["max_abs_diff"] = self.max_abs_diff
        return out


class ArmObserver:
    """Counts the inferences of models with a split, by arm."""

    wants_tensors = False

    def __init__(self, metrics: Metrics | None = None) -> None:
        self.models: set[str] = set()  # the models with a split
        self.arms: dict[tuple[str, int, str], ArmStats] = {}
        self._prometheus = metrics is not None
        if metrics is not None:
            from prometheus_client import Counter, Histogram

            labels = ("model", "version", "arm")
            r = metrics.registry
            self._requests = Counter(
                "sluice_arm_requests", "Requests per split arm (primary or shadow) and outcome",
                [*labels, "outcome"], registry=r,
            )  # fmt: skip
            self._duration = Histogram(
                "sluice_arm_request_duration_seconds", "Request time per split arm",
                labels, buckets=_LATENCY_BUCKETS, registry=r,
            )  # fmt: skip
            self._dropped = Counter(
                "sluice_shadow_dropped", "Shadow copies dropped because the shadow fell behind",
                ("model", "version"), registry=r,
            )  # fmt: skip
            self._compared = Counter(
                "sluice_shadow_compared_rows", "Shadow rows compared with the primary, by argmax agreement",
                ("model", "version", "agreement"), registry=r,
            )  # fmt: skip

    def stats(self, model: str, version: int, arm: str) -> ArmStats:
        key = (model, version, arm)
        found = self.arms.get(key)
        if found is None:
            found = self.arms[key] = ArmStats()
        return found

    def on_inference(self, record: InferenceRecord) -> None:
        if record.model not in self.models:
            return
        arm = "shadow" if SHADOW.get() else "primary"
        stats = self.stats(record.model, int(record.version), arm)
        stats.requests += 1
        if not record.ok:
            stats.errors += 1
        stats.latencies_ns.append(record.total_ns)
        if self._prometheus:
            self._requests.labels(record.model, record.version, arm, record.outcome).inc()
            self._duration.labels(record.model, record.version, arm).observe(record.total_ns / 1e9)

    def on_execution(self, record: InferenceRecord) -> None:
        pass

    def shadow_dropped(self, model: str, version: int) -> None:
        self.stats(model, version, "shadow").dropped += 1
        if self._prometheus:
            self._dropped.labels(model, str(version)).inc()

    def shadow_compared(self, model: str, version: int, result: Comparison) -> None:
        stats = self.stats(model, version, "shadow")
        stats.compared += 1
        stats.rows += result.rows
        stats.agreeing_rows += result.agreeing_rows
        stats.max_abs_diff = max(stats.max_abs_diff, result.max_abs_diff)
        stats.diffs.append(result.max_abs_diff)
        if self._prometheus and result.rows:
            v = str(version)
            self._compared.labels(model, v, "agree").inc(result.agreeing_rows)
            self._compared.labels(model, v, "disagree").inc(result.rows - result.agreeing_rows)

    def snapshot(self, model: str) -> dict[str, dict[str, Any]]:
        """``{"primary": {"3": {...}}, "shadow": {"4": {...}}}`` for ``model``."""
        out: dict[str, dict[str, Any]] = {"primary": {}, "shadow": {}}
        for (name, version, arm), stats in sorted(self.arms.items()):
            if name == model:
                out[arm][str(version)] = stats.to_json()
        return out
