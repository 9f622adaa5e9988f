"""Model lifecycle: load, warm up, swap in, retire, unload, and repository polling.

A new version takes traffic only after it has loaded and warmed up; what it
replaces keeps serving until then, and a failed load leaves what was serving
untouched. In poll mode a version's files must look the same on two scans in a
row before it is loaded, so a model still being copied in is never loaded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from serving.errors import InvalidArgument, NotFound, SluiceError, Unavailable, Unsupported
from serving.metrics import Metrics
from serving.model import ModelVersion, Runtime, lineage_parameters
from serving.observers import ObserverSet
from serving.scheduler import DirectScheduler, Scheduler
from serving.settings import ControlMode, Settings

__all__ = ["ModelManager", "VersionStatus"]

log = logging.getLogger("sluice.manager")


class _LoadFailed(InvalidArgument):
    """A load that failed, already counted and logged where it failed (once per version)."""


READY = "READY"
LOADING = "LOADING"
UNAVAILABLE = "UNAVAILABLE"

_NONE_READY: Mapping[int, ModelVersion] = MappingProxyType({})

RuntimeFactory = Callable[[Path, Any, Settings], Runtime]


def _default_runtime_factory(model_path: Path, config: Any, settings: Settings) -> Runtime:
    from serving.runtime import create_runtime

    return create_runtime(model_path, config, cores=settings.cores, cache_dir=settings.cache_dir)


@dataclass(slots=True)
class VersionStatus:
    state: str
    reason: str = ""


@dataclass(slots=True)
class _ModelRecord:
    name: str
    serving: dict[int, ModelVersion] = field(default_factory=dict)
    status: dict[int, VersionStatus] = field(default_factory=dict)
    fingerprints: dict[int, tuple] = field(default_factory=dict)
    config_fingerprint: tuple = ()
    disk_state: tuple = ()  # what the repository looked like at the last load attempt
    reason: str = ""  # model-level failure (bad config, no versions)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class ModelManager:
    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        runtime_factory: RuntimeFactory = _default_runtime_factory,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self._runtime_factory = runtime_factory
        self._records: dict[str, _ModelRecord] = {}
        self._executor = ThreadPoolExecutor(max_workers=64, thread_name_prefix="sluice-exec")
        self._poller: asyncio.Task[None] | None = None
        self._pending: dict[str, tuple] = {}  # poll mode: fingerprints seen once
        self._retiring: set[asyncio.Task[None]] = set()
        self._pinned: dict[str, tuple[int, ...]] = {}  # set by the registry follower
        # Optional observers (serving.observers) every version tells after each inference.
        self.observers = ObserverSet()

    @property
    def repository(self) -> Path:
        return self.settings.model_repository

    # -- startup and shutdown ----------------------------------------------

    async def start(self) -> None:
        from serving.repository import scan_repository

        mode = self.settings.model_control_mode
        if mode is ControlMode.EXPLICIT:
            names = list(self.settings.load_models)
            if "*" in names:
                names = sorted(scan_repository(self.repository))
        else:
            names = sorted(scan_repository(self.repository))
        for name in names:
            try:
                await self.load(name, _internal=True)
            except _LoadFailed:
                pass  # counted and logged where it failed
            except SluiceError as exc:
                log.error("model '%s' failed to load: %s", name, exc.message)
        if mode is ControlMode.POLL:
            self._poller = asyncio.create_task(self._poll_forever(), name="sluice-poller")

    def drain(self) -> None:
        """Shutting down: no serving version holds requests back to fill a batch any more."""
        for version in self.serving_versions():
            version.scheduler.drain()

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            try:
                await self._poller
            except asyncio.CancelledError:
                pass
        for record in self._records.values():
            for version in record.serving.values():
                await version.retire(self.settings.drain_timeout_secs)
            record.serving = {}
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- lookups ------------------------------------------------------------

    def get(self, name: str, version: str = "") -> ModelVersion:
        record = self._records.get(name)
        if record is None:
            raise NotFound(f"unknown model '{name}'")
        if not version:
            if not record.serving:
                raise Unavailable(f"model '{name}' is not ready: {self._why_not_ready(record)}")
            return record.serving[max(record.serving)]
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

    def pin_versions(self, name: str, versions: Iterable[int] | None) -> None:
        """Serve exactly ``versions`` of ``name`` from the next load on, whatever the config's
        ``version_policy`` says (``None`` gives the choice back to the policy).

        The registry follower uses this rather than a config override so every load of
        the model (start-up, poll mode, the repository API) keeps to the followed version
        and still reads ``config.pbtxt`` from disk.
        """
        if versions is None:
            self._pinned.pop(name, None)
        else:
            self._pinned[name] = tuple(sorted(set(versions)))

    def _why_not_ready(self, record: _ModelRecord) -> str:
        if record.reason:
            return record.reason
        failures = [
            f"version {v}: {s.reason}" for v, s in sorted(record.status.items()) if s.reason
        ]
        return "; ".join(failures) or "no version is loaded"

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

    # -- repository API ------------------------------------------------------

    async def load(
        self, name: str, config_override: Any = None, *, _internal: bool = False
    ) -> None:
        if not _internal and self.settings.model_control_mode is not ControlMode.EXPLICIT:
            raise Unsupported(
                "explicit model load / unload is not allowed unless the server runs with "
                "--model-control-mode explicit"
            )
        if not name or "/" in name or name.startswith("."):
            raise InvalidArgument(f"invalid model name {name!r}")
        model_dir = self.repository / name
        if not model_dir.is_dir():
            raise NotFound(f"no model '{name}' in the model repository")
        record = self._records.setdefault(name, _ModelRecord(name))
        async with record.lock:
            failures = await self._load_locked(record, model_dir, config_override)
        if failures:
            kept = " (the versions already serving keep serving)" if record.serving else ""
            raise _LoadFailed(f"failed to load model '{name}': {'; '.join(failures)}{kept}")

    async def unload(self, name: str, *, _internal: bool = False) -> None:
        if not _internal and self.settings.model_control_mode is not ControlMode.EXPLICIT:
            raise Unsupported(
                "explicit model load / unload is not allowed unless the server runs with "
                "--model-control-mode explicit"
            )
        record = self._records.get(name)
        if record is None:
            if (self.repository / name).is_dir():
                return  # known but not loaded: nothing to do
            raise NotFound(f"unknown model '{name}'")
        async with record.lock:
            retired = record.serving
            record.serving = {}
            for version in record.status:
                record.status[version] = VersionStatus(UNAVAILABLE, "unloaded")
                self.metrics.model_ready.labels(name, str(version)).set(0)
            record.fingerprints = {}
            record.disk_state = ()
            record.reason = "unloaded" if not record.status else ""
        for model_version in retired.values():
            await model_version.retire(self.settings.drain_timeout_secs)
        log.info("model '%s' unloaded", name)

    # -- loading -------------------------------------------------------------

    async def _load_locked(
        self, record: _ModelRecord, model_dir: Path, config_override: Any
    ) -> list[str]:
        """Load what the policy selects; return what failed (empty when all loaded)."""
        from serving.repository import fingerprint, model_file, scan_repository, select_versions

        loop = asyncio.get_running_loop()
        name = record.name
        try:
            directory = scan_repository(self.repository).get(name)
            if directory is None:
                raise NotFound(f"no model '{name}' in the model repository")
            record.disk_state = self._disk_state(model_dir, directory.versions)
            pinned = self._pinned.get(name)
            candidates = directory.versions
            if pinned is not None:  # derive the config from the pinned version's graph
                candidates = tuple(v for v in directory.versions if v in pinned)
            config = await loop.run_in_executor(
                None, self._load_config, record, model_dir, candidates, config_override
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
        except _LoadFailed as exc:  # every candidate version failed, each counted and logged
            record.reason = exc.message
            return [exc.message]
        except SluiceError as exc:
            record.reason = exc.message
            self.metrics.load_failures.labels(name, "").inc()
            log.error("model '%s': %s", name, exc.message)
            return [exc.message]
        except Exception as exc:  # a broken model must not take the server down
            record.reason = f"{type(exc).__name__}: {exc}"
            self.metrics.load_failures.labels(name, "").inc()
            log.exception("model '%s' failed to load", name)
            return [record.reason]
        record.reason = ""
        config_changed = (
            config_override is not None or self._config_fp(model_dir) != record.config_fingerprint
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
                    None, self._build_version, name, version, path, config
                )
            except Exception as exc:
                message = (
                    exc.message if isinstance(exc, SluiceError) else f"{type(exc).__name__}: {exc}"
                )
                record.status[version] = VersionStatus(UNAVAILABLE, message)
                self.metrics.load_failures.labels(name, str(version)).inc()
                log.error("model '%s' version %d failed to load: %s", name, version, message)
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
        record.serving = dict(sorted(new_serving.items()))
        record.config_fingerprint = self._config_fp(model_dir)
        for version in new_serving:
            self.metrics.model_ready.labels(name, str(version)).set(1)
        for version, mv in old.items():
            if new_serving.get(version) is mv:
                continue
            if version not in new_serving:
                record.status[version] = VersionStatus(UNAVAILABLE, "unloaded")
                record.fingerprints.pop(version, None)
                self.metrics.model_ready.labels(name, str(version)).set(0)
            task = asyncio.create_task(mv.retire(self.settings.drain_timeout_secs))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)
        for version in list(record.status):
            if version not in record.serving and version not in wanted:
                if record.status[version].state == LOADING:
                    record.status[version] = VersionStatus(UNAVAILABLE, "unloaded")
        return failures

    @staticmethod
    def _config_fp(model_dir: Path) -> tuple:
        cfg = model_dir / "config.pbtxt"
        try:
            st = cfg.stat()
        except FileNotFoundError:
            return ("absent",)
        return (st.st_mtime_ns, st.st_size)

    def _load_config(
        self, record: _ModelRecord, model_dir: Path, versions: tuple[int, ...], override: Any
    ) -> Any:
        """The complete config, derived from the newest version whose graph can be read.

        A version whose file cannot be read is marked failed here, so a broken new
        version does not take the whole model down with it.
        """
        from serving.config import (
            config_from_json,
            load_model_config,
            model_config_pb2,
            parse_config_file,
        )
        from serving.repository import model_file

        base = config_from_json(override) if override is not None else None
        stated = base
        if stated is None:
            path = model_dir / "config.pbtxt"
            stated = parse_config_file(path) if path.is_file() else model_config_pb2.ModelConfig()
        error: SluiceError | None = None
        for version in sorted(versions, reverse=True):
            onnx_path = model_file(model_dir, version, stated)
            if not onnx_path.is_file():
                continue
            try:
                return load_model_config(
                    model_dir, onnx_path, self.settings.default_max_batch_size, config=base
                )
            except SluiceError as exc:
                error = exc
                record.status[version] = VersionStatus(UNAVAILABLE, exc.message)
                self.metrics.load_failures.labels(record.name, str(version)).inc()
                log.error("model '%s' version %d: %s", record.name, version, exc.message)
        if error is not None:
            raise _LoadFailed(error.message)
        return load_model_config(model_dir, None, self.settings.default_max_batch_size, config=base)

    def _build_version(self, name: str, version: int, path: Path, config: Any) -> ModelVersion:
        """Create the runtime and warm it up; runs in a worker thread."""
        from serving.warmup import warmup_samples

        if not path.is_file():
            raise NotFound(f"model file {path} does not exist")
        runtime = self._runtime_factory(path, config, self.settings)
        try:
            for sample_name, count, inputs in warmup_samples(config, path.parent.parent):
                for _ in range(count):
                    try:
                        runtime.run(inputs, None)
                    except Exception as exc:
                        raise InvalidArgument(f"warmup '{sample_name}' failed: {exc}") from exc
        except BaseException:
            runtime.close()
            raise
        scheduler: Scheduler
        if config.HasField("dynamic_batching") and config.max_batch_size > 0:
            from serving.batching import DynamicBatcher

            scheduler = DynamicBatcher(
                runtime.run,
                runtime.instances,
                self._executor,
                config,
                metrics=self.metrics,
                model=name,
                version=str(version),
            )
        else:
            scheduler = DirectScheduler(
                runtime.run,
                runtime.instances,
                self._executor,
                inline_below_ns=self.settings.inline_execution_us * 1000,
            )
        lineage = lineage_parameters(self.repository / name / str(version))
        return ModelVersion(
            name, version, config, runtime, scheduler, self.metrics, lineage, self.observers
        )

    # -- polling -------------------------------------------------------------

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.repository_poll_secs)
            try:
                await self.poll_once()
            except Exception:
                log.exception("repository poll failed")

    async def poll_once(self) -> None:
        """Rescan the repository: load what is new or changed, unload what is gone."""
        from serving.repository import scan_repository

        on_disk = scan_repository(self.repository)
        for name in list(self._records):
            if name not in on_disk and self._records[name].serving:
                await self.unload(name, _internal=True)
        for name, directory in sorted(on_disk.items()):
            state = self._disk_state(directory.path, directory.versions)
            record = self._records.get(name)
            if record is not None and record.disk_state == state:
                self._pending.pop(name, None)
                continue
            if self._pending.get(name) != state:
                self._pending[name] = state  # changed since the last scan: wait until it settles
                continue
            del self._pending[name]
            try:
                await self.load(name, _internal=True)
            except _LoadFailed:
                pass  # counted and logged where it failed
            except SluiceError as exc:
                log.error("model '%s' failed to load: %s", name, exc.message)

    def _disk_state(self, model_dir: Path, versions: tuple[int, ...]) -> tuple:
        from serving.repository import fingerprint

        return (
            self._config_fp(model_dir),
            tuple((v, fingerprint(model_dir / str(v))) for v in versions),
        )
