"""The health gate a new version passes before it is committed.

Two checks: the golden inputs shipped with the version (a KServe V2 request body plus
the expected outputs) answer within tolerance, and the live requests of the canary
window stay under an error rate and a p99 latency. The live numbers come from an
observer on the serving core (``serving.observers``): every request the new version
answers, with its outcome and its time in the server.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["GateVerdict", "LiveSample", "compare_golden", "judge_live"]


@dataclass(frozen=True, slots=True)
class LiveSample:
    """The live requests a model version answered since its canary began."""

    success: int = 0
    failure: int = 0
    latencies_secs: tuple[float, ...] = ()  # every request's time in the server

    @property
    def total(self) -> int:
        return self.success + self.failure

    def p99_secs(self) -> float:
        """The nearest-rank 99th percentile (0 with no requests)."""
        if not self.latencies_secs:
            return 0.0
        ordered = sorted(self.latencies_secs)
        return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


@dataclass(frozen=True, slots=True)
class GateVerdict:
    done: bool
    healthy: bool
    reason: str = ""


def judge_live(sample: LiveSample, elapsed: float, config: Any) -> GateVerdict:
    """The verdict on the canary window so far (``config``: the agent's health.* keys)."""
    total = sample.total
    if total >= config["health.min_requests"]:
        rate = sample.failure / total
        if rate > config["health.max_error_rate"]:
            return GateVerdict(True, False, f"live error rate {rate:.1%} over {int(total)} requests exceeds {config['health.max_error_rate']:.1%}")  # fmt: skip
        p99_ms = sample.p99_secs() * 1000
        if p99_ms > config["health.max_p99_ms"]:
            return GateVerdict(True, False, f"live p99 latency {p99_ms:.1f} ms over {int(total)} requests exceeds {config['health.max_p99_ms']:g} ms")  # fmt: skip
    if total >= config["health.window_requests"] or elapsed >= config["health.window_secs"]:
        return GateVerdict(True, True, f"{int(total)} live requests, {int(sample.failure)} failed")
    return GateVerdict(False, True)


def compare_golden(golden: dict[str, Any], response: dict[str, Any], atol: float, rtol: float) -> str | None:  # fmt: skip
    """None when every expected output matches; otherwise the first difference."""
    got = {o.get("name"): o for o in response.get("outputs", [])}
    for expected in golden.get("outputs", []):
        name = expected.get("name")
        out = got.get(name)
        if out is None:
            return f"golden output {name!r} missing from the answer"
        if "shape" in expected and list(out.get("shape", [])) != list(expected["shape"]):
            return f"golden output {name!r}: shape {out.get('shape')} != {expected['shape']}"
        want, have = list(_flat(expected.get("data", []))), list(_flat(out.get("data", [])))
        if len(want) != len(have):
            return f"golden output {name!r}: {len(have)} values, expected {len(want)}"
        for i, (w, h) in enumerate(zip(want, have, strict=True)):
            if isinstance(w, str) or isinstance(h, str):
                if w != h:
                    return f"golden output {name!r}[{i}]: {h!r} != {w!r}"
            elif not math.isclose(float(h), float(w), rel_tol=rtol, abs_tol=atol):
                return f"golden output {name!r}[{i}]: {h} differs from {w} beyond atol={atol:g} rtol={rtol:g}"  # fmt: skip
    return None


def _flat(data: Any) -> Any:
    if isinstance(data, list):
        for item in data:
            yield from _flat(item)
    else:
        yield data
