"""What the manager knows about each model: its serving versions and their states."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from serving.errors import InvalidArgument
from serving.model import ModelVersion

__all__ = ["LOADING", "READY", "UNAVAILABLE", "LoadFailed", "ModelRecord", "VersionStatus"]

READY = "READY"
LOADING = "LOADING"
UNAVAILABLE = "UNAVAILABLE"


class LoadFailed(InvalidArgument):
    """A load that failed, already counted and logged where it failed (once per version)."""


@dataclass(slots=True)
class VersionStatus:
    state: str
    reason: str = ""


_NOT_SERVING: Mapping[int, ModelVersion] = MappingProxyType({})


@dataclass(slots=True)
class ModelRecord:
    """One model's versions. ``serving`` is replaced, never changed in place (it is a
    read-only view): each assignment works out ``highest``, the version a request that
    names none gets, so no request takes a ``max`` over the versions."""

    name: str
    _serving: Mapping[int, ModelVersion] = field(
        default_factory=lambda: _NOT_SERVING, init=False, repr=False
    )
    highest: ModelVersion | None = field(default=None, init=False)  # of ``serving``
    status: dict[int, VersionStatus] = field(default_factory=dict)
    fingerprints: dict[int, tuple] = field(default_factory=dict)
    config_fingerprint: tuple = ()
    disk_state: tuple = ()  # what the repository looked like at the last load attempt
    reason: str = ""  # model-level failure (bad config, no versions)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def serving(self) -> Mapping[int, ModelVersion]:
        """The versions serving now, by number."""
        return self._serving

    @serving.setter
    def serving(self, versions: Mapping[int, ModelVersion]) -> None:
        self._serving = MappingProxyType(dict(versions)) if versions else _NOT_SERVING
        self.highest = self._serving[max(self._serving)] if self._serving else None

    def why_not_ready(self) -> str:
        if self.reason:
            return self.reason
        failures = [f"version {v}: {s.reason}" for v, s in sorted(self.status.items()) if s.reason]
        return "; ".join(failures) or "no version is loaded"
