"""Loading one model version: its config, its runtime, warm-up and its scheduler.

Runs in worker threads (``run_in_executor``); touches no manager state but the
failure status of the version it loads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from serving.backends import BackendContext, backend_for
from serving.errors import InvalidArgument, NotFound, PermissionDenied, SluiceError
from serving.manager._records import UNAVAILABLE, LoadFailed, ModelRecord, VersionStatus
from serving.metrics import Metrics
from serving.model import ModelVersion, Runtime, lineage_parameters
from serving.observers import ObserverSet
from serving.scheduler import DirectScheduler, Scheduler
from serving.settings import Settings

__all__ = ["RuntimeFactory", "VersionLoader", "config_fingerprint", "disk_state"]

log = logging.getLogger("sluice.manager")

RuntimeFactory = Callable[[Path, Any, Settings], Runtime]


def _default_runtime_factory(model_path: Path, config: Any, settings: Settings) -> Runtime:
    from serving.runtime import create_runtime

    return create_runtime(model_path, config, cores=settings.cores, cache_dir=settings.cache_dir)


def _runs_own_code(config: Any) -> bool:
    backend = backend_for(config) if config is not None else None
    return backend is not None and backend.runs_own_code


def _on_disk_config(model_dir: Path) -> Any:
    from serving.config import parse_config_file

    path = model_dir / "config.pbtxt"
    try:
        return parse_config_file(path) if path.is_file() else None
    except SluiceError:
        return None


def config_fingerprint(model_dir: Path) -> tuple:
    cfg = model_dir / "config.pbtxt"
    try:
        st = cfg.stat()
    except FileNotFoundError:
        return ("absent",)
    return (st.st_mtime_ns, st.st_size)


def disk_state(model_dir: Path, versions: tuple[int, ...]) -> tuple:
    """What a model directory looks like: its config and each version's files."""
    from serving.repository import fingerprint

    return (
        config_fingerprint(model_dir),
        tuple((v, fingerprint(model_dir / str(v))) for v in versions),
    )


class VersionLoader:
    """Builds ``ModelVersion``s: config, runtime, warm-up, scheduler."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        observers: ObserverSet,
        runtime_factory: RuntimeFactory | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.observers = observers
        self._runtime_factory = runtime_factory or _default_runtime_factory
        # The server's other models and its loop, for backends whose models call them
        # (serving.backends: BLS, ensembles); the manager sets both.
        self.models: Callable[[str, str], ModelVersion] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        # Told (from any thread) when a backend's runtime can serve no more; the manager sets it.
        self.failed: Callable[[Any, str], None] | None = None
        # Where the schedulers run model executions (shared by every version).
        self.executor = ThreadPoolExecutor(max_workers=64, thread_name_prefix="sluice-exec")

    @property
    def repository(self) -> Path:
        return self.settings.model_repository

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)

    def load_config(
        self, record: ModelRecord, model_dir: Path, versions: tuple[int, ...], override: Any
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
        elif _runs_own_code(stated) or _runs_own_code(_on_disk_config(model_dir)):
            raise PermissionDenied(
                f"model '{record.name}' is a model that runs its own code (backend "
                f"{(stated.backend or _on_disk_config(model_dir).backend)!r}); the repository "
                "API cannot load it from a config override, only from its config.pbtxt"
            )
        error: SluiceError | None = None
        default_batch = self.settings.default_max_batch_size
        if backend_for(stated) is not None:  # no ONNX graph to derive from
            return load_model_config(model_dir, None, default_batch, config=base)
        for version in sorted(versions, reverse=True):
            onnx_path = model_file(model_dir, version, stated)
            if not onnx_path.is_file():
                continue
            try:
                return load_model_config(model_dir, onnx_path, default_batch, config=base)
            except SluiceError as exc:
                error = exc
                record.status[version] = VersionStatus(UNAVAILABLE, exc.message)
                self.metrics.load_failures.labels(record.name, str(version)).inc()
                log.error("model '%s' version %d: %s", record.name, version, exc.message)
        if error is not None:
            raise LoadFailed(error.message)
        return load_model_config(model_dir, None, default_batch, config=base)

    def build_version(self, name: str, version: int, path: Path, config: Any) -> ModelVersion:
        """Create the runtime and warm it up; runs in a worker thread."""
        from serving.warmup import warmup_samples

        backend = backend_for(config)
        if not (path.is_file() or (backend is not None and not backend.model_filename)):
            raise NotFound(f"model file {path} does not exist")
        runtime: Runtime
        if backend is None:
            runtime = self._runtime_factory(path, config, self.settings)
        else:
            context = BackendContext(
                self.settings, name, version, self.models, self.loop, self.failed
            )
            runtime = backend.create(path, config, context)
        try:
            # Another backend's model runs only the warm-up its config states: a derived
            # zero sample could reach code (a BLS call) that needs models not loaded yet.
            samples = warmup_samples(config, path.parent.parent)
            if backend is not None and not config.model_warmup:
                samples = []
            for sample_name, count, inputs in samples:
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
                self.executor,
                config,
                metrics=self.metrics,
                model=name,
                version=str(version),
                run_each=getattr(runtime, "run_each", None),
            )
        else:
            scheduler = DirectScheduler(
                runtime.run,
                runtime.instances,
                self.executor,
                # a runtime that blocks on other processes never runs on the event loop
                inline_below_ns=(
                    self.settings.inline_execution_us * 1000
                    if getattr(runtime, "inline", True)
                    else 0
                ),
            )
        lineage = lineage_parameters(self.repository / name / str(version))
        return ModelVersion(
            name, version, config, runtime, scheduler, self.metrics, lineage, self.observers
        )
