"""One interval's verdict: compare the candidate arm with the baseline arm.

Pure: windows in, a decision and its reason out, so the rules are tested without a
server or a clock. A decision needs enough samples; with too few it holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

import numpy as np

from serving.rollout._spec import RolloutSpec
from serving.traffic import ArmStats

__all__ = [
    "ADVANCE", "HOLD", "ROLLBACK", "ArmSample", "Decision", "Snapshot", "Window", "decide",
]  # fmt: skip

ADVANCE = "advance"
HOLD = "hold"
ROLLBACK = "rollback"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Cumulative counts of one arm at one moment (``ArmStats`` are cumulative)."""

    requests: int = 0
    errors: int = 0
    compared: int = 0
    rows: int = 0
    agreeing_rows: int = 0

    @classmethod
    def of(cls, stats: ArmStats | None) -> Snapshot:
        if stats is None:
            return cls()
        return cls(stats.requests, stats.errors, stats.compared, stats.rows, stats.agreeing_rows)


@dataclass(frozen=True, slots=True)
class ArmSample:
    """What one arm did since a mark, in one process: counts and the raw latencies and
    output differences, so samples of several workers merge into one ``Window`` (a p99
    is taken over all their latencies, never averaged)."""

    requests: int = 0
    errors: int = 0
    compared: int = 0
    rows: int = 0
    agreeing_rows: int = 0
    latencies_ns: tuple[int, ...] = ()
    diffs: tuple[float, ...] = ()

    @classmethod
    def between(cls, stats: ArmStats | None, before: Snapshot) -> ArmSample:
        if stats is None:
            return cls()
        now = Snapshot.of(stats)
        requests = now.requests - before.requests
        recent = max(0, min(requests, len(stats.latencies_ns)))
        compared = now.compared - before.compared
        recent_diffs = max(0, min(compared, len(stats.diffs)))
        return cls(
            requests=requests,
            errors=now.errors - before.errors,
            compared=compared,
            rows=now.rows - before.rows,
            agreeing_rows=now.agreeing_rows - before.agreeing_rows,
            latencies_ns=tuple(islice(stats.latencies_ns, len(stats.latencies_ns) - recent, None)),
            diffs=tuple(islice(stats.diffs, len(stats.diffs) - recent_diffs, None)),
        )

    def to_wire(self) -> tuple[Any, ...]:
        """Plain values, for a pipe between processes."""
        return (self.requests, self.errors, self.compared, self.rows, self.agreeing_rows,
                self.latencies_ns, self.diffs)  # fmt: skip

    @classmethod
    def from_wire(cls, data: Sequence[Any]) -> ArmSample:
        requests, errors, compared, rows, agreeing, latencies, diffs = data
        return cls(
            int(requests), int(errors), int(compared), int(rows), int(agreeing),
            tuple(int(v) for v in latencies), tuple(float(v) for v in diffs),
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Window:
    """What one arm did over one interval (in every process that served it)."""

    requests: int = 0
    errors: int = 0
    p99_ms: float | None = None
    compared: int = 0
    rows: int = 0
    agreeing_rows: int = 0
    max_abs_diff: float = 0.0

    @classmethod
    def between(cls, stats: ArmStats | None, before: Snapshot) -> Window:
        return cls.merge([ArmSample.between(stats, before)])

    @classmethod
    def merge(cls, samples: Iterable[ArmSample]) -> Window:
        """One window of the samples of several processes (under ``--workers N``)."""
        samples = list(samples)
        latencies = [v for s in samples for v in s.latencies_ns]
        p99 = None
        if latencies:
            p99 = float(np.percentile(np.asarray(latencies, np.int64), 99)) / 1e6
        return cls(
            requests=sum(s.requests for s in samples),
            errors=sum(s.errors for s in samples),
            p99_ms=p99,
            compared=sum(s.compared for s in samples),
            rows=sum(s.rows for s in samples),
            agreeing_rows=sum(s.agreeing_rows for s in samples),
            max_abs_diff=max((d for s in samples for d in s.diffs), default=0.0),
        )

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


@dataclass(frozen=True, slots=True)
class Decision:
    action: str
    reason: str


def decide(
    spec: RolloutSpec,
    candidate: Window,
    baseline: Window,
    *,
    shadow: bool,
    baseline_p99: float | None,
) -> Decision:
    """The verdict on one interval. ``shadow``: the candidate only got shadow copies
    (its output comparisons count). ``baseline_p99``: the baseline's p99 to compare
    with when this interval has too few baseline requests (the step at 100%)."""
    samples = candidate.requests
    if samples < spec.min_samples:
        what = "shadow copies" if shadow else "candidate requests"
        return Decision(HOLD, f"waiting for samples: {samples} of {spec.min_samples} {what}")
    if candidate.error_rate > spec.max_error_rate:
        return Decision(
            ROLLBACK,
            f"error rate {candidate.error_rate:.2%} ({candidate.errors} of {candidate.requests}) "
            f"is above {spec.max_error_rate:.2%}",
        )
    reference = baseline.p99_ms if baseline.requests >= spec.min_samples else baseline_p99
    if reference is None:
        return Decision(
            HOLD,
            f"waiting for samples: {baseline.requests} of {spec.min_samples} baseline requests",
        )
    if candidate.p99_ms is not None and reference > 0:
        ratio = candidate.p99_ms / reference
        if ratio > spec.max_p99_ratio:
            return Decision(
                ROLLBACK,
                f"p99 {candidate.p99_ms:.3f} ms is {ratio:.2f}x the baseline's "
                f"{reference:.3f} ms (at most {spec.max_p99_ratio:g}x)",
            )
    if shadow and spec.min_agreement is not None:
        if not candidate.rows:
            return Decision(ROLLBACK, "outputs have no class dimension to compare by argmax")
        agreement = candidate.agreeing_rows / candidate.rows
        if agreement < spec.min_agreement:
            return Decision(
                ROLLBACK,
                f"argmax agreement {agreement:.2%} over {candidate.rows} rows is below "
                f"{spec.min_agreement:.2%}",
            )
    if shadow and spec.max_output_diff is not None:
        if candidate.max_abs_diff > spec.max_output_diff:
            return Decision(
                ROLLBACK,
                f"outputs differ by up to {candidate.max_abs_diff:.6g} "
                f"(at most {spec.max_output_diff:g})",
            )
    return Decision(ADVANCE, f"{samples} samples within the criteria")
