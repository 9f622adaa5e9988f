"""Which runtime serves a model: ONNX Runtime, unless its config names another backend.

One table, keyed by the ``backend`` or ``platform`` a config.pbtxt states (Triton's
spellings). Each entry says which file a version directory holds and where the
factory of its runtime lives (imported only when a model of that kind loads). ONNX
stays the loader's default (its factory is injectable for tests); a new kind of
model (``backend: "python"``, ``platform: "ensemble"``) registers here instead of
being wired into the loader, the config completion or the repository.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

    from serving.model import ModelVersion, Runtime
    from serving.settings import Settings

__all__ = [
    "Backend",
    "BackendContext",
    "BackendFactory",
    "RequestInputs",
    "backend_for",
    "model_filename",
    "register",
]


@dataclass(frozen=True, slots=True)
class BackendContext:
    """What a backend's factory may use beside the model's own files and config."""

    settings: Settings
    name: str
    version: int
    # Another model of this server, as the manager resolves it (name, version or ""):
    # BLS calls and ensemble steps go through it, never back through HTTP.
    models: Callable[[str, str], ModelVersion] | None = None
    # The server's event loop, for runtimes whose worker threads must run a peer's infer.
    loop: asyncio.AbstractEventLoop | None = None
    # Tells the manager, from any thread, that this runtime can serve no more (with why):
    # the version stops serving and its reason shows in the repository index.
    failed: Callable[[Any, str], None] | None = None


class RequestInputs(dict[str, Any]):
    """A request's inputs with its id and parameters, for runtimes that declare
    ``takes_request = True`` (a Python model's ``execute``, an ensemble's steps).

    The scheduler and the batcher hand a runtime the inputs mapping they were given,
    so the request's own values travel with it without widening the scheduler's seam."""

    __slots__ = ("parameters", "request_id")

    def __init__(
        self, inputs: Mapping[str, Any], request_id: str, parameters: Mapping[str, Any]
    ) -> None:
        super().__init__(inputs)
        self.request_id = request_id
        self.parameters = parameters


BackendFactory = Callable[[Path, Any, BackendContext], "Runtime"]


@dataclass(frozen=True, slots=True)
class Backend:
    key: str  # the config's backend (or platform) that selects it
    model_filename: str  # the file a version directory holds; "" when none is needed
    factory: str  # "module:function", a BackendFactory imported at load time
    runs_own_code: bool = False  # a model of this kind executes code from the repository

    def create(self, path: Path, config: Any, context: BackendContext) -> Runtime:
        module, _, function = self.factory.partition(":")
        factory: BackendFactory = getattr(importlib.import_module(module), function)
        return factory(path, config, context)


_BACKENDS: dict[str, Backend] = {
    "python": Backend("python", "model.py", "serving.python_backend:create_runtime", True),
    # platform: "ensemble": the version directory holds no file (serving.ensemble)
    "ensemble": Backend("ensemble", "", "serving.ensemble:create_runtime"),
}


def register(backend: Backend) -> None:
    """Add (or replace) the backend a config selects with ``backend.key``."""
    _BACKENDS[backend.key] = backend


def backend_for(config: Any) -> Backend | None:
    """The registered backend ``config`` selects (by ``backend``, then ``platform``);
    None for ONNX models."""
    return _BACKENDS.get(config.backend) or _BACKENDS.get(config.platform)


def model_filename(config: Any, default: str) -> str:
    """The file a version directory of ``config``'s model holds: ``default_model_filename``,
    else the backend's file, else ``default`` (model.onnx); "" for a backend whose
    versions hold no file (an ensemble: the model file is the version directory)."""
    if config.default_model_filename:
        return str(config.default_model_filename)
    backend = backend_for(config)
    return backend.model_filename if backend is not None else default
