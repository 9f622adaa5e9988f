"""The model manager: the one owner of which versions serve.

Intent arrives as ``serving.desired_state.ModelTarget``s (the repository scan at
start-up and in poll mode, the repository API, a followed registry reference, an edge
agent); the manager keeps the ``DesiredState`` and reconciles each model towards its
target (``Reconciler``: load, warm up, switch, retire). ``VersionLoader`` builds
versions, ``RepositoryPoller`` watches the disk.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from serving.desired_state import DesiredState, ModelTarget, Source
from serving.errors import InvalidArgument, NotFound, SluiceError, Unavailable, Unsupported
from serving.manager._loader import RuntimeFactory, VersionLoader
from serving.manager._poller import RepositoryPoller
from serving.manager._reconciler import LifecycleListener, Reconciler
from serving.manager._records import (
    READY,
    UNAVAILABLE,
    LoadFailed,
    ModelRecord,
    VersionStatus,
)
from serving.metrics import Metrics
from serving.model import ModelVersion
from serving.observers import ObserverSet
from serving.settings import ControlMode, Settings

__all__ = ["ModelManager"]

log = logging.getLogger("sluice.manager")

_NONE_READY: Mapping[int, ModelVersion] = MappingProxyType({})

TargetListener = Callable[[ModelTarget], None]


class ModelManager:
    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        runtime_factory: RuntimeFactory | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        # Optional observers (serving.observers) every version tells after each inference.
        self.observers = ObserverSet()
        self.desired = DesiredState()
        self._records: dict[str, ModelRecord] = {}
        self._loader = VersionLoader(settings, metrics, self.observers, runtime_factory)
        self._loader.models = self.get  # what a Python model's BLS call or an ensemble reaches
        self._loader.failed = self._runtime_failed  # a runtime that can serve no more
        self._failing: set[asyncio.Task[None]] = set()
        self._reconciler = Reconciler(self._loader, metrics, settings.drain_timeout_secs)
        self._poller = RepositoryPoller(
            self.repository, self._records, self._reconcile_quietly, self._retire
        )
        self._poll_task: asyncio.Task[None] | None = None
        self.started = False  # start() has begun: targets from now on are reconciled
        # Told about each target set through the repository API (--workers N broadcasts it).
        self.api_listeners: list[TargetListener] = []
        # Told about every target held, from any source (serving.traffic reads its split).
        self.target_listeners: list[TargetListener] = []
        # Told as versions load, fail to load and unload (serving.monitoring's events).
        self.lifecycle_listeners: list[LifecycleListener] = self._reconciler.listeners

    @property
    def repository(self) -> Path:
        return self.settings.model_repository

    # -- startup and shutdown ----------------------------------------------

    async def start(self) -> None:
        from serving.repository import scan_repository

        self._loader.loop = asyncio.get_running_loop()
        self.started = True
        mode = self.settings.model_control_mode
        if mode is ControlMode.EXPLICIT:
            names = list(self.settings.load_models)
            if "*" in names:
                names = sorted(scan_repository(self.repository))
        else:
            names = sorted(scan_repository(self.repository))
        # and whatever the desired state already asks for (held before the start)
        names += sorted(n for n, t in self.desired.models.items() if t.serve and n not in names)
        for name in names:
            await self._reconcile_quietly(name)
        if mode is ControlMode.POLL:
            self._poll_task = asyncio.create_task(
                self._poller.poll_forever(self.settings.repository_poll_secs), name="sluice-poller"
            )

    def drain(self) -> None:
        """Shutting down: no serving version holds requests back to fill a batch any more."""
        for version in self.serving_versions():
            version.scheduler.drain()

    async def close(self) -> None:
        if self._poll_task is not None:
            self._poll_task.cancel()
            try:
                await self._poll_task
            except asyncio.CancelledError:
                pass
        for record in self._records.values():
            for version in record.serving.values():
                await version.retire(self.settings.drain_timeout_secs)
            record.serving = {}
        await self._reconciler.close()
        self._loader.close()

    def _runtime_failed(self, runtime: Any, reason: str) -> None:
        """From any thread: a serving version's runtime gave up (a Python model whose
        instance no longer starts). The version stops serving; the index says why."""
        loop = self._loader.loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._fail_version, runtime, reason)

    def _fail_version(self, runtime: Any, reason: str) -> None:
        for record in self._records.values():
            for number, version in record.serving.items():
                if version.runtime is not runtime:
                    continue
                record.serving = {n: v for n, v in record.serving.items() if n != number}
                record.status[number] = VersionStatus(UNAVAILABLE, reason)
                self.metrics.model_ready.labels(record.name, str(number)).set(0)
                log.error("model '%s' version %d failed: %s", record.name, number, reason)
                task = asyncio.create_task(version.retire(self.settings.drain_timeout_secs))
                self._failing.add(task)
                task.add_done_callback(self._failing.discard)
                return

    # -- lookups ------------------------------------------------------------

    def get(self, name: str, version: str = "") -> ModelVersion:
        """``version`` of ``name``, or its highest ready version (never a weighted choice:
        that is the router's)."""
        record = self._records.get(name)
        if record is None:
            raise NotFound(f"unknown model '{name}'")
        if not version:
            highest = record.highest  # worked out when ``serving`` changes, not per request
            if highest is None:
                raise Unavailable(f"model '{name}' is not ready: {record.why_not_ready()}")
            return highest
        # Only ASCII digits: int() would also take other scripts' digits, "1_0", "+1" and " 1".
        if not (version.isascii() and version.isdigit()):
            raise InvalidArgument(f"model version {version!r} is not a number")
        if len(version) > 18:
            raise InvalidArgument(f"model version {version!r} is out of range")
        number = int(version)
        found = record.serving.get(number)
        if found is not None:
            return found
        status = record.status.get(number)
        if status is None:
            raise NotFound(f"model '{name}' has no version {number}")
        reason = f": {status.reason}" if status.reason else ""
        raise Unavailable(f"model '{name}' version {number} is {status.state.lower()}{reason}")

    def ready(self, name: str) -> Mapping[int, ModelVersion]:
        """The versions of ``name`` serving now, by number (empty when none or unknown)."""
        record = self._records.get(name)
        return record.serving if record is not None else _NONE_READY

    def ready_versions(self, name: str) -> list[str]:
        record = self._records.get(name)
        return [str(v) for v in sorted(record.serving)] if record else []

    def serving_versions(self) -> list[ModelVersion]:
        return [v for r in self._records.values() for v in r.serving.values()]

    def index(self, ready_only: bool = False) -> list[dict[str, str]]:
        from serving.repository import scan_repository

        on_disk = scan_repository(self.repository)
        entries: list[dict[str, str]] = []
        for name in sorted(set(on_disk) | set(self._records)):
            record = self._records.get(name)
            if record is None:
                if not ready_only:
                    entries.append({"name": name, "version": "", "state": "", "reason": ""})
                continue
            if not record.status:
                if not ready_only:
                    state = UNAVAILABLE if record.reason else ""
                    entries.append(
                        {"name": name, "version": "", "state": state, "reason": record.reason}
                    )
                continue
            for version, status in sorted(record.status.items()):
                if ready_only and status.state != READY:
                    continue
                entries.append(
                    {
                        "name": name,
                        "version": str(version),
                        "state": status.state,
                        "reason": status.reason,
                    }
                )
        return entries

    # -- desired state ---------------------------------------------------------

    async def apply(self, target: ModelTarget, *, reconcile: bool = True) -> bool:
        """Make ``target`` the intent for its model and reconcile towards it.

        A target that carries a generation no newer than the one held is a duplicate or
        a late delivery: it changes nothing (returns False). ``reconcile=False`` records
        the intent for the next load (a registry follower before the first load).
        Raises what the load raises; what was serving keeps serving then.
        """
        if not self.hold(target):
            return False
        if reconcile:
            await self._reconcile(target.name)
        return True

    def hold(self, target: ModelTarget) -> bool:
        """Record ``target`` as the intent without loading anything now: the next load of
        the model (or ``start``) keeps to it. False for a duplicate or late delivery."""
        held = self.desired.target(target.name)
        if target.generation > 0 and not target.newer_than(held):
            return False
        self.desired = self.desired.with_target(target)
        stamped = self.desired.target(target.name)
        assert stamped is not None
        for listener in self.target_listeners:
            listener(stamped)
        return True

    async def _reconcile(self, name: str) -> None:
        target = self.desired.target(name) or ModelTarget(name)
        record = self._records.get(name)
        if not target.serve:
            if record is not None:
                await self._reconciler.retire(record)
            return
        if not (self.repository / name).is_dir():
            raise NotFound(f"no model '{name}' in the model repository")
        record = self._records.setdefault(name, ModelRecord(name))
        await self._reconciler.serve(record, target, target.config)

    async def _reconcile_quietly(self, name: str) -> None:
        """Reconcile for the repository scan: failures are logged where they happen."""
        try:
            await self._reconcile(name)
        except LoadFailed:
            pass  # counted and logged where it failed
        except SluiceError as exc:
            log.error("model '%s' failed to load: %s", name, exc.message)

    async def _retire(self, name: str) -> None:
        record = self._records.get(name)
        if record is not None:
            await self._reconciler.retire(record)

    async def poll_once(self) -> None:
        """Rescan the repository: load what is new or changed, unload what is gone."""
        await self._poller.poll_once()

    # -- repository API ------------------------------------------------------

    def _explicit_only(self) -> None:
        if self.settings.model_control_mode is not ControlMode.EXPLICIT:
            raise Unsupported(
                "explicit model load / unload is not allowed unless the server runs with "
                "--model-control-mode explicit"
            )

    async def load(self, name: str, config_override: Any = None) -> None:
        """The repository API's load: serve ``name`` (a followed model keeps its pin)."""
        self._explicit_only()
        if not name or "/" in name or name.startswith("."):
            raise InvalidArgument(f"invalid model name {name!r}")
        if not (self.repository / name).is_dir():
            raise NotFound(f"no model '{name}' in the model repository")
        held = self.desired.target(name) or ModelTarget(name)
        target = dataclasses.replace(
            held, source=Source.API, serve=True, config=config_override, generation=0
        )  # keeps a pin and a traffic split
        await self._apply_from_api(target)

    def set_split(self, target: ModelTarget) -> None:
        """The admin API's traffic split (``target``'s traffic, shadow and sticky): held
        as the intent, shared with every worker like a load, and nothing reloaded here."""
        self.hold(target)
        stamped = self.desired.target(target.name)
        assert stamped is not None
        for listener in self.api_listeners:
            listener(stamped)

    async def unload(self, name: str) -> None:
        """The repository API's unload."""
        self._explicit_only()
        if name not in self._records and not (self.repository / name).is_dir():
            raise NotFound(f"unknown model '{name}'")
        # Known but not loaded here: nothing to retire, but the intent still counts (other
        # workers of --workers N may serve it).
        held = self.desired.target(name) or ModelTarget(name)
        await self._apply_from_api(
            dataclasses.replace(held, source=Source.API, serve=False, config=None, generation=0)
        )

    async def _apply_from_api(self, target: ModelTarget) -> None:
        try:
            await self.apply(target)
        finally:
            stamped = self.desired.target(target.name)
            assert stamped is not None
            for listener in self.api_listeners:
                listener(stamped)
