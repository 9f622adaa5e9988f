"""What a rollout is asked to do: the candidate, the steps, the interval, the criteria."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

__all__ = ["RolloutSpec", "parse_duration"]


def parse_duration(text: str | float | int) -> float:
    """``"60s"``, ``"2m"``, ``"500ms"`` or a number of seconds."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        value = str(text).strip().lower()
        scale = 1.0
        for suffix, factor in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
            if value.endswith(suffix):
                value, scale = value[: -len(suffix)], factor
                break
        try:
            seconds = float(value) * scale
        except ValueError:
            raise ValueError(f"interval {text!r} is not a duration (60s, 2m, 500ms)") from None
    if not seconds > 0:
        raise ValueError(f"interval {text!r} must be positive")
    return seconds


@dataclass(frozen=True, slots=True)
class RolloutSpec:
    """A canary of version ``to`` against ``baseline`` (0: the highest other ready version,
    chosen at the start). ``steps``: the candidate's percent of traffic at each step,
    ending at 100. ``min_samples``: the fewest candidate requests (or shadow comparisons)
    an interval needs before it decides anything."""

    to: int
    baseline: int = 0
    steps: tuple[int, ...] = (5, 25, 50, 100)
    interval_s: float = 60.0
    max_error_rate: float = 0.01
    max_p99_ratio: float = 1.5
    min_agreement: float | None = None
    max_output_diff: float | None = None
    min_samples: int = 50
    shadow_first: bool = False
    promote_alias: str = ""
    registry: str = ""

    def __post_init__(self) -> None:
        if self.to < 0 or self.baseline < 0:
            raise ValueError("versions are non-negative integers")
        steps = tuple(self.steps)
        if not steps or any(not 0 < s <= 100 for s in steps) or list(steps) != sorted(set(steps)):
            raise ValueError("steps are increasing percentages in (0, 100], e.g. 5,25,50,100")
        if steps[-1] != 100:
            raise ValueError("the last step must be 100")
        object.__setattr__(self, "steps", steps)
        if not 0 <= self.max_error_rate <= 1:
            raise ValueError("max_error_rate is a fraction (0-1)")
        if not self.max_p99_ratio > 0:
            raise ValueError("max_p99_ratio must be positive")
        if self.min_agreement is not None and self.max_output_diff is not None:
            raise ValueError("give min_agreement or max_output_diff, not both")
        if self.min_agreement is not None and not 0 <= self.min_agreement <= 1:
            raise ValueError("min_agreement is a fraction (0-1)")
        if (self.min_agreement is not None or self.max_output_diff is not None) and not (
            self.shadow_first
        ):
            raise ValueError(
                "output agreement is measured on shadow traffic: it needs shadow_first"
            )
        if self.min_samples < 1:
            raise ValueError("min_samples must be at least 1")
        if bool(self.promote_alias) != bool(self.registry):
            raise ValueError("promote_alias and registry go together")

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["steps"] = list(self.steps)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RolloutSpec:
        if not isinstance(data, Mapping):
            raise ValueError("a rollout is a JSON object")
        known = {f.name for f in fields(cls)} | {"interval"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown field {sorted(unknown)[0]!r}")
        if "to" not in data:
            raise ValueError("'to' (the candidate version) is required")
        args = dict(data)
        if "interval" in args:
            args["interval_s"] = parse_duration(args.pop("interval"))
        if isinstance(args.get("steps"), str):
            args["steps"] = tuple(int(s) for s in args["steps"].split(",") if s.strip())
        try:
            for key in ("to", "baseline", "min_samples"):
                if key in args:
                    args[key] = int(args[key])
            for key in ("interval_s", "max_error_rate", "max_p99_ratio"):
                if key in args:
                    args[key] = float(args[key])
            for key in ("min_agreement", "max_output_diff"):
                if args.get(key) is not None:
                    args[key] = float(args[key])
            if "steps" in args:
                args["steps"] = tuple(int(s) for s in args["steps"])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"bad rollout field: {exc}") from None
        return cls(**args)
