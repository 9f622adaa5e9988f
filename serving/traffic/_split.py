"""A model's traffic split: weights per version, shadow shares, the sticky request key.

One value, parsed once at the edge (config parameters ``sluice.traffic``,
``sluice.shadow``, ``sluice.sticky``, the admin API's JSON, the CLI's ``V=W``
arguments) and plain enough to travel as JSON between workers and in the desired state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = [
    "PARAMETER_SHADOW",
    "PARAMETER_STICKY",
    "PARAMETER_TRAFFIC",
    "StickyKey",
    "TrafficSplit",
    "parse_shares",
]

PARAMETER_TRAFFIC = "sluice.traffic"
PARAMETER_SHADOW = "sluice.shadow"
PARAMETER_STICKY = "sluice.sticky"

_STICKY_KINDS = ("header", "parameter")
_NONE: Mapping[int, int] = MappingProxyType({})


def parse_shares(text: str | Iterable[str], what: str) -> dict[int, int]:
    """``"1:80,2:20"`` (or ``["1=80", "2=20"]``) as ``{1: 80, 2: 20}``; ValueError naming
    ``what`` and the bad entry otherwise."""
    entries = text.split(",") if isinstance(text, str) else list(text)
    shares: dict[int, int] = {}
    for entry in entries:
        entry = entry.strip()
        if not entry:
            continue
        sep = ":" if ":" in entry else "="
        version, _, weight = entry.partition(sep)
        version, weight = version.strip(), weight.strip()
        if not (version.isascii() and version.isdigit() and weight.isascii() and weight.isdigit()):
            raise ValueError(f"{what}: {entry!r} is not VERSION:WEIGHT (two whole numbers)")
        if int(version) in shares:
            raise ValueError(f"{what}: version {int(version)} is named twice")
        shares[int(version)] = int(weight)
    return shares


@dataclass(frozen=True, slots=True)
class StickyKey:
    """Where a request's routing key is read: a header (HTTP header or gRPC metadata,
    lower-cased) or a request parameter."""

    kind: str
    name: str

    def __post_init__(self) -> None:
        if self.kind not in _STICKY_KINDS or not self.name:
            raise ValueError(
                f"sticky key {self.kind}:{self.name}: expected header:NAME or parameter:NAME"
            )
        if self.kind == "header":
            object.__setattr__(self, "name", self.name.lower())

    @classmethod
    def parse(cls, text: str) -> StickyKey:
        kind, sep, name = text.strip().partition(":")
        if not sep:
            raise ValueError(f"sticky key {text!r}: expected header:NAME or parameter:NAME")
        return cls(kind.strip(), name.strip())

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"


@dataclass(frozen=True, slots=True)
class TrafficSplit:
    """``weights``: version -> weight for requests that name no version (any positive
    total; empty: the highest ready version takes all). ``shadow``: version -> percent
    (0-100) of those requests copied to it, answers discarded. ``sticky``: the key that
    keeps one client on one version (None: each request is drawn on its own)."""

    weights: Mapping[int, int] = field(default_factory=lambda: _NONE)
    shadow: Mapping[int, int] = field(default_factory=lambda: _NONE)
    sticky: StickyKey | None = None

    def __post_init__(self) -> None:
        if any(w < 0 for w in self.weights.values()):
            raise ValueError("traffic weights must be >= 0")
        if self.weights and not sum(self.weights.values()):
            raise ValueError("traffic weights must not all be 0")
        if any(not 0 <= p <= 100 for p in self.shadow.values()):
            raise ValueError("shadow shares are percentages (0-100)")
        both = set(self.shadow) & {v for v, w in self.weights.items() if w}
        if both:
            raise ValueError(f"version {min(both)} cannot be both an arm and a shadow")
        object.__setattr__(self, "weights", MappingProxyType(dict(sorted(self.weights.items()))))
        object.__setattr__(self, "shadow", MappingProxyType(dict(sorted(self.shadow.items()))))

    @property
    def empty(self) -> bool:
        return not self.weights and not any(self.shadow.values())

    def versions(self) -> set[int]:
        return set(self.weights) | set(self.shadow)

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, str]) -> TrafficSplit | None:
        """The split a model config's parameters set (None when they set none)."""
        traffic = parameters.get(PARAMETER_TRAFFIC, "")
        shadow = parameters.get(PARAMETER_SHADOW, "")
        sticky = parameters.get(PARAMETER_STICKY, "")
        if not (traffic.strip() or shadow.strip() or sticky.strip()):
            return None
        return cls(
            parse_shares(traffic, PARAMETER_TRAFFIC),
            parse_shares(shadow, PARAMETER_SHADOW),
            StickyKey.parse(sticky) if sticky.strip() else None,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "traffic": {str(v): w for v, w in self.weights.items()},
            "shadow": {str(v): p for v, p in self.shadow.items()},
            "sticky": str(self.sticky) if self.sticky else "",
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrafficSplit:
        """The admin API's body (``{"traffic": {"1": 80, "2": 20}, "shadow": {"3": 10},
        "sticky": "header:x-user-id"}``); ValueError saying what is wrong."""
        if not isinstance(data, Mapping):
            raise ValueError("a traffic split is a JSON object")
        unknown = set(data) - {"traffic", "shadow", "sticky"}
        if unknown:
            raise ValueError(
                f"unknown field {sorted(unknown)[0]!r} (known: traffic, shadow, sticky)"
            )
        parts = []
        for key in ("traffic", "shadow"):
            value = data.get(key) or {}
            if isinstance(value, str):
                parts.append(parse_shares(value, key))
                continue
            if not isinstance(value, Mapping):
                raise ValueError(f"'{key}' must be an object of version -> weight")
            shares: dict[int, int] = {}
            for version, weight in value.items():
                if (
                    not str(version).isdigit()
                    or isinstance(weight, bool)
                    or not isinstance(weight, int)
                ):
                    raise ValueError(
                        f"'{key}': {version!r}: {weight!r} is not version: whole number"
                    )
                shares[int(version)] = weight
            parts.append(shares)
        sticky = data.get("sticky") or ""
        if not isinstance(sticky, str):
            raise ValueError("'sticky' must be a string such as 'header:x-user-id'")
        return cls(parts[0], parts[1], StickyKey.parse(sticky) if sticky else None)
