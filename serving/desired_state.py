"""The desired state: which versions of which models should serve, and who said so.

One contract for every source of intent: the repository scan (start-up, poll mode),
the repository API (explicit load / unload), a registry alias being followed
(``registry_client.Follower``), an edge agent and a rollout controller. Each hands the
manager a ``ModelTarget``; the manager reconciles towards it (load, warm up, switch,
retire) exactly as it always has, and ``--workers N`` broadcasts targets so every
worker converges (``serving.desired_sync``).

Targets and states are frozen and plain (ints, strings, mappings), so they render to
JSON and back for the edge agent's desired document and for the messages between
workers. ``generation`` orders changes: a target is applied only when it is newer
than the one held for that model, so duplicates and late deliveries change nothing.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

__all__ = ["DesiredState", "ModelTarget", "Source"]

_NO_TRAFFIC: Mapping[int, int] = MappingProxyType({})
_NO_MODELS: Mapping[str, ModelTarget] = MappingProxyType({})


class Source(enum.Enum):
    """Where a target came from."""

    REPOSITORY = "repository"  # what the repository holds, by its version policy
    API = "api"  # an explicit load or unload through the repository API
    REGISTRY = "registry"  # a followed registry reference (alias or version)
    EDGE = "edge"  # an edge agent's desired document
    ROLLOUT = "rollout"  # a rollout controller


@dataclass(frozen=True, slots=True)
class ModelTarget:
    """What one model should serve.

    ``versions``: the versions to serve whatever the config's ``version_policy`` says
    (a pin); None lets the policy choose from what is on disk. ``traffic``: weights per
    version for requests that name none (empty: the highest ready version takes all).
    ``shadow``: version -> percent of those requests copied to it, answers discarded.
    ``sticky``: the request key (``header:NAME`` / ``parameter:NAME``) that keeps a
    client on one version (serving.traffic). ``config``: a config override (the
    repository API's ``config`` parameter).
    ``serve`` False: unloaded on purpose.
    """

    name: str
    source: Source = Source.REPOSITORY
    serve: bool = True
    versions: tuple[int, ...] | None = None
    traffic: Mapping[int, int] = field(default_factory=lambda: _NO_TRAFFIC)
    config: str | Mapping[str, Any] | None = None
    shadow: Mapping[int, int] = field(default_factory=lambda: _NO_TRAFFIC)
    sticky: str = ""
    generation: int = 0

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise ValueError(f"invalid model name {self.name!r}")
        if self.versions is not None:
            if any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in self.versions):
                raise ValueError(f"model '{self.name}': versions must be non-negative integers")
            object.__setattr__(self, "versions", tuple(sorted(set(self.versions))))
        if self.traffic:
            if any(w < 0 for w in self.traffic.values()) or not sum(self.traffic.values()):
                raise ValueError(f"model '{self.name}': traffic weights must be >= 0, not all 0")
            if self.versions is not None and not set(self.traffic) <= set(self.versions):
                raise ValueError(f"model '{self.name}': traffic names versions it does not serve")
            object.__setattr__(
                self, "traffic", MappingProxyType(dict(sorted(self.traffic.items())))
            )
        if self.shadow:
            if any(not 0 <= p <= 100 for p in self.shadow.values()):
                raise ValueError(f"model '{self.name}': shadow shares are percentages (0-100)")
            object.__setattr__(self, "shadow", MappingProxyType(dict(sorted(self.shadow.items()))))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "source": self.source.value,
            "serve": self.serve,
            "generation": self.generation,
        }
        if self.versions is not None:
            out["versions"] = list(self.versions)
        if self.traffic:
            out["traffic"] = {str(v): w for v, w in self.traffic.items()}
        if self.config is not None:
            out["config"] = self.config if isinstance(self.config, str) else dict(self.config)
        if self.shadow:
            out["shadow"] = {str(v): p for v, p in self.shadow.items()}
        if self.sticky:
            out["sticky"] = self.sticky
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelTarget:
        try:
            versions = data.get("versions")
            return cls(
                name=str(data["name"]),
                source=Source(data.get("source", Source.REPOSITORY.value)),
                serve=bool(data.get("serve", True)),
                versions=None if versions is None else tuple(int(v) for v in versions),
                traffic={int(v): int(w) for v, w in (data.get("traffic") or {}).items()},
                config=data.get("config"),
                shadow={int(v): int(p) for v, p in (data.get("shadow") or {}).items()},
                sticky=str(data.get("sticky") or ""),
                generation=int(data.get("generation", 0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"invalid model target: {exc}") from None

    def newer_than(self, other: ModelTarget | None) -> bool:
        return other is None or self.generation > other.generation


@dataclass(frozen=True, slots=True)
class DesiredState:
    """Every model's target; ``generation`` is the newest any target carries."""

    models: Mapping[str, ModelTarget] = field(default_factory=lambda: _NO_MODELS)
    generation: int = 0

    def target(self, name: str) -> ModelTarget | None:
        return self.models.get(name)

    def with_target(self, target: ModelTarget) -> DesiredState:
        """This state with ``target`` in force (stamped with the next generation when it
        carries none)."""
        if target.generation <= 0:
            target = replace(target, generation=self.generation + 1)
        models = dict(self.models)
        models[target.name] = target
        return DesiredState(MappingProxyType(models), max(self.generation, target.generation))

    def without(self, name: str) -> DesiredState:
        """No intent for ``name`` any more (the repository no longer holds it)."""
        if name not in self.models:
            return self
        models = {n: t for n, t in self.models.items() if n != name}
        return DesiredState(MappingProxyType(models), self.generation)

    def to_json(self) -> dict[str, Any]:
        return {
            "generation": self.generation,
            "models": [t.to_json() for _, t in sorted(self.models.items())],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DesiredState:
        state = cls()
        for entry in data.get("models", ()):
            state = state.with_target(ModelTarget.from_json(entry))
        return DesiredState(state.models, max(state.generation, int(data.get("generation", 0))))
