"""What the manager knows about each model: its serving versions and their states."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

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


@dataclass(slots=True)
class ModelRecord:
    name: str
    serving: dict[int, ModelVersion] = field(default_factory=dict)
    status: dict[int, VersionStatus] = field(default_factory=dict)
    fingerprints: dict[int, tuple] = field(default_factory=dict)
    config_fingerprint: tuple = ()
    disk_state: tuple = ()  # what the repository looked like at the last load attempt
    reason: str = ""  # model-level failure (bad config, no versions)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def why_not_ready(self) -> str:
        if self.reason:
            return self.reason
        failures = [f"version {v}: {s.reason}" for v, s in sorted(self.status.items()) if s.reason]
        return "; ".join(failures) or "no version is loaded"
