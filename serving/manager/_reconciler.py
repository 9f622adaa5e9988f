"""Reconciling one model towards its target: load, warm up, switch, retire.

A new version takes traffic only after it has loaded and warmed up; what it replaces
keeps serving until then, and a failed load leaves what was serving untouched.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serving.desired_state import ModelTarget
from serving.errors import InvalidArgument, NotFound, SluiceError
from serving.manager._loader import VersionLoader, config_fingerprint, disk_state
from serving.manager._records import (
    LOADING,
    READY,
    UNAVAILABLE,
    LoadFailed,
    ModelRecord,
    VersionStatus,
)
from serving.metrics import Metrics
from serving.model import ModelVersion

__all__ = ["LifecycleEvent", "LifecycleListener", "Reconciler"]

log = logging.getLogger("sluice.manager")


@dataclass(frozen=True, slots=True)
class LifecycleEvent:
    """A version started serving (``loaded``), stopped (``unloaded``) or failed to load
    (``load_failed``; ``version`` None when the model failed as a whole: its config)."""

    kind: str
    model: str
    version: int | None
    reason: str = ""


LifecycleListener = Callable[[LifecycleEvent], None]


class Reconciler:
    """Brings a model's record to what its target asks, one model at a time (its lock)."""

    def __init__(self, loader: VersionLoader, metrics: Metrics, drain_timeout: float) -> None:
        self.loader = loader
        self.metrics = metrics
        self.drain_timeout = drain_timeout
        self._retiring: set[asyncio.Task[None]] = set()
        # Told, on the event loop, as versions load, fail and unload (events, audit).
        self.listeners: list[LifecycleListener] = []

    def _tell(self, kind: str, model: str, version: int | None, reason: str = "") -> None:
        event = LifecycleEvent(kind, model, version, reason)
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:  # a listener never fails a load
                log.exception("lifecycle listener failed on %s", event)

    @property
    def repository(self) -> Path:
        return self.loader.repository

    async def close(self) -> None:
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)

    async def serve(self, record: ModelRecord, target: ModelTarget, override: Any) -> None:
        """Load what ``target`` selects (``override``: a config to use instead of
        config.pbtxt for this load); raise ``LoadFailed`` saying what failed."""
        name = record.name
        model_dir = self.repository / name
        if not model_dir.is_dir():
            raise NotFound(f"no model '{name}' in the model repository")
        async with record.lock:
            failures = await self._load_locked(record, model_dir, target, override)
        if failures:
            kept = " (the versions already serving keep serving)" if record.serving else ""
            raise LoadFailed(f"failed to load model '{name}': {'; '.join(failures)}{kept}")

    async def retire(self, record: ModelRecord) -> None:
        """Stop serving every version of ``record`` (unloaded on purpose or gone from disk)."""
        async with record.lock:
            retired = record.serving
            record.serving = {}
            for version in record.status:
                record.status[version] = VersionStatus(UNAVAILABLE, "unloaded")
                self.metrics.model_ready.labels(record.name, str(version)).set(0)
            record.fingerprints = {}
            record.disk_state = ()
            record.reason = "unloaded" if not record.status else ""
        for model_version in retired.values():
            await model_version.retire(self.drain_timeout)
        for number in retired:
            self._tell("unloaded", record.name, number)
        log.info("model '%s' unloaded", record.name)

    async def _load_locked(
        self, record: ModelRecord, model_dir: Path, target: ModelTarget, override: Any
    ) -> list[str]:
        """Load what the target selects; return what failed (empty when all loaded)."""
        from serving.repository import fingerprint, model_file, scan_repository, select_versions

        loop = asyncio.get_running_loop()
        name = record.name
        pinned = target.versions
        try:
            directory = scan_repository(self.repository).get(name)
            if directory is None:
                raise NotFound(f"no model '{name}' in the model repository")
            record.disk_state = disk_state(model_dir, directory.versions)
            candidates = directory.versions
            if pinned is not None:  # derive the config from the pinned version's graph
                candidates = tuple(v for v in directory.versions if v in pinned)
            config = await loop.run_in_executor(
                None, self.loader.load_config, record, model_dir, candidates, override
            )
            if pinned is not None:
                config.version_policy.Clear()
                config.version_policy.specific.versions.extend(pinned)
            wanted = select_versions(config.version_policy, directory.versions)
            if not wanted:
                raise InvalidArgument(
                    "no version directory matches the version policy "
                    f"(on disk: {list(directory.versions) or 'none'})"
                )
        except LoadFailed as exc:  # every candidate version failed, each counted and logged
            record.reason = exc.message
            self._tell("load_failed", name, None, exc.message)
            return [exc.message]
        except SluiceError as exc:
            record.reason = exc.message
            self.metrics.load_failures.labels(name, "").inc()
            log.error("model '%s': %s", name, exc.message)
            self._tell("load_failed", name, None, exc.message)
            return [exc.message]
        except Exception as exc:  # a broken model must not take the server down
            record.reason = f"{type(exc).__name__}: {exc}"
            self.metrics.load_failures.labels(name, "").inc()
            log.exception("model '%s' failed to load", name)
            self._tell("load_failed", name, None, record.reason)
            return [record.reason]
        record.reason = ""
        config_changed = (
            override is not None or config_fingerprint(model_dir) != record.config_fingerprint
        )
        new_serving: dict[int, ModelVersion] = {}
        failures: list[str] = []
        for version in wanted:
            path = model_file(model_dir, version, config)
            fp = fingerprint(model_dir / str(version))
            current = record.serving.get(version)
            if (
                current is not None
                and not config_changed
                and record.fingerprints.get(version) == fp
            ):
                new_serving[version] = current
                continue
            record.status[version] = VersionStatus(LOADING)
            started = time.perf_counter()
            try:
                loaded = await loop.run_in_executor(
                    None, self.loader.build_version, name, version, path, config
                )
            except Exception as exc:
                message = (
                    exc.message if isinstance(exc, SluiceError) else f"{type(exc).__name__}: {exc}"
                )
                record.status[version] = VersionStatus(UNAVAILABLE, message)
                self.metrics.load_failures.labels(name, str(version)).inc()
                log.error("model '%s' version %d failed to load: %s", name, version, message)
                self._tell("load_failed", name, version, message)
                failures.append(f"version {version}: {message}")
                if current is not None:
                    new_serving[version] = current  # keep what was serving
                    record.status[version] = VersionStatus(READY, f"reload failed: {message}")
                continue
            self.metrics.load_duration.labels(name, str(version)).observe(
                time.perf_counter() - started
            )
            record.fingerprints[version] = fp
            record.status[version] = VersionStatus(READY)
            new_serving[version] = loaded
            log.info(
                "model '%s' version %d ready on %s",
                name,
                version,
                ", ".join(loaded.runtime.providers),
            )
        if not new_serving:
            # Nothing of the new selection could load: leave what was serving untouched.
            return failures
        old = record.serving
        self._switch(record, new_serving, wanted, model_dir)
        for version, mv in new_serving.items():
            if old.get(version) is not mv:
                self._tell("loaded", name, version)
        for version in old:
            if version not in new_serving:
                self._tell("unloaded", name, version)
        return failures

    def _switch(
        self,
        record: ModelRecord,
        new_serving: dict[int, ModelVersion],
        wanted: tuple[int, ...] | list[int],
        model_dir: Path,
    ) -> None:
        """Traffic moves to ``new_serving`` at once; what it replaces drains and retires."""
        name = record.name
        old = record.serving
        record.serving = dict(sorted(new_serving.items()))
        record.config_fingerprint = config_fingerprint(model_dir)
        for version in new_serving:
            self.metrics.model_ready.labels(name, str(version)).set(1)
        for version, mv in old.items():
            if new_serving.get(version) is mv:
                continue
            if version not in new_serving:
                record.status[version] = VersionStatus(UNAVAILABLE, "unloaded")
                record.fingerprints.pop(version, None)
                self.metrics.model_ready.labels(name, str(version)).set(0)
            task = asyncio.create_task(mv.retire(self.drain_timeout))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)
        for version in list(record.status):
            if version not in record.serving and version not in wanted:
                if record.status[version].state == LOADING:
                    record.status[version] = VersionStatus(UNAVAILABLE, "unloaded")
