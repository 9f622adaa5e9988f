"""The protocol-neutral core every front end calls.

Front ends translate the wire into these calls and the results back; they hold
no serving logic of their own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from serving import __version__
from serving.config import model_config_pb2
from serving.datatypes import by_name
from serving.errors import InvalidArgument
from serving.manager import ModelManager
from serving.metrics import Metrics
from serving.rollout import RolloutController, RolloutSpec
from serving.router import Router
from serving.settings import Settings
from serving.shared_memory import (
    SharedMemoryRegistry,
    disabled_error,
    output_references,
    reference,
)
from serving.traffic import TrafficController, TrafficSplit
from serving.types import UNRESOLVED, InferInput, InferRequest, InferResponse, RawInputSpec

if TYPE_CHECKING:
    from serving.model import ModelVersion

__all__ = ["EXTENSIONS", "SHARED_MEMORY_EXTENSION", "InferenceCore"]

# Only what is implemented: tools switch features on from this list.
EXTENSIONS = (
    "binary_tensor_data",
    "model_configuration",
    "model_repository",
    "statistics",
)
# Listed only when the server runs with --allow-shared-memory.
SHARED_MEMORY_EXTENSION = "system_shared_memory"


_NO_REFS: dict[str, Any] = {}


def _raw_spec(model: ModelVersion) -> RawInputSpec:
    spec = model.raw_input_spec()
    shape = (1, *spec.dims) if model.batching else spec.dims
    return RawInputSpec(spec.name, spec.datatype.name, tuple(shape))


class InferenceCore:
    def __init__(self, settings: Settings, manager: ModelManager, metrics: Metrics) -> None:
        self.settings = settings
        self.manager = manager
        self.metrics = metrics
        # Which version answers each inference request (metadata calls ask the manager).
        self.router = Router(manager)
        # Traffic splits and shadow copies: the router's policies (serving.traffic).
        self.traffic = TrafficController(self.router, manager, metrics)
        self._shadowing = self.traffic.tasks  # the shadow copies in flight
        # Canary rollouts step the splits; their state survives restarts in the repository.
        self.rollout = RolloutController(
            self.traffic, settings.model_repository / ".sluice" / "rollouts"
        )
        # Optional observers (a data collector, a profiler): serving.observers.
        self.observers = manager.observers
        # Told as versions load, fail to load and unload (serving.monitoring's events).
        self.lifecycle_listeners = manager.lifecycle_listeners
        self._started = False
        # None while system shared memory is off (the default).
        self.shared_memory: SharedMemoryRegistry | None = (
            SharedMemoryRegistry() if settings.shared_memory else None
        )

    async def start(self) -> None:
        await self.manager.start()
        self.traffic.sync()
        await self.rollout.resume()
        self._started = True

    def drain(self) -> None:
        """Shutting down: requests in flight finish without waiting for batches to fill,
        while the front ends stop taking new connections and wait for them."""
        self.manager.drain()

    async def close(self) -> None:
        await self.rollout.close()
        await self.traffic.close()
        await self.manager.close()
        if self.shared_memory is not None:
            self.shared_memory.close()

    # -- health and metadata -------------------------------------------------

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        """Ready once the start-up loads have finished; a model that failed to load
        shows in the repository index and its own readiness, not here."""
        return self._started

    def server_metadata(self) -> dict[str, Any]:
        extensions = list(EXTENSIONS)
        if self.shared_memory is not None:
            extensions.append(SHARED_MEMORY_EXTENSION)
        return {"name": "sluice", "version": __version__, "extensions": sorted(extensions)}

    def model_metadata(self, name: str, version: str = "") -> dict[str, Any]:
        mv = self.manager.get(name, version)
        return mv.metadata(self.manager.ready_versions(name))

    def model_ready(self, name: str, version: str = "") -> bool:
        try:
            self.manager.get(name, version)
        except InvalidArgument:
            raise
        except Exception:
            return False
        return True

    def model_config(self, name: str, version: str = "") -> dict[str, Any]:
        from serving.config import config_to_json

        return config_to_json(self.manager.get(name, version).config)

    def model_config_message(self, name: str, version: str = "") -> model_config_pb2.ModelConfig:
        """The config message itself, for front ends that speak protobuf."""
        return self.manager.get(name, version).config

    def raw_input(self, name: str, version: str = "") -> RawInputSpec:
        """The input a raw body fills (``Inference-Header-Content-Length: 0``) for ``version``,
        or the highest ready one, with the batch dimension of 1 a batching model takes. An
        inference request takes its spec from the version that answers it (``infer_raw``)."""
        return _raw_spec(self.manager.get(name, version))

    # -- statistics ------------------------------------------------------------

    def model_statistics(self, name: str = "", version: str = "") -> dict[str, Any]:
        if name:
            if version:
                versions = [self.manager.get(name, version)]
            else:
                self.manager.get(name)  # raises when unknown or not ready
                versions = [v for v in self.manager.serving_versions() if v.name == name]
        else:
            versions = self.manager.serving_versions()
        versions.sort(key=lambda v: (v.name, v.version))
        return {"model_stats": [v.stats.to_json(v.name, v.version) for v in versions]}

    # -- repository ------------------------------------------------------------

    def repository_index(self, ready_only: bool = False) -> list[dict[str, str]]:
        return self.manager.index(ready_only)

    async def load_model(self, name: str, parameters: Mapping[str, Any] | None = None) -> None:
        """Load (or reload) a model; ``parameters`` are the load request's, as plain values.

        ``config`` (a JSON string or object) overrides config.pbtxt; model files sent
        with the request (``file:`` parameters) are refused.
        """
        params = parameters or {}
        if any(key.startswith("file:") for key in params):
            raise InvalidArgument(
                "loading model files through the request ('file:' parameters) is not supported"
            )
        override = params.get("config")
        if isinstance(override, bytes):
            override = override.decode("utf-8", errors="replace")
        if override is not None and not isinstance(override, (str, dict)):
            raise InvalidArgument("parameter 'config' must be a JSON string or object")
        await self.manager.load(name, override)
        self.traffic.sync(name)

    async def unload_model(self, name: str) -> None:
        await self.manager.unload(name)
        self.traffic.sync(name)

    # -- traffic splits (admin) ---------------------------------------------------

    def traffic_show(self, name: str) -> dict[str, Any]:
        """The split in force for ``name``, where it came from, and per-arm counts."""
        return self.traffic.show(name)

    def traffic_set(self, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Set (or, with an empty body, clear) the split of ``name``; returns ``traffic_show``."""
        try:
            split = TrafficSplit.from_json(body) if body else None
        except ValueError as exc:
            raise InvalidArgument(f"model '{name}': {exc}") from None
        self.traffic.set(name, split)
        return self.traffic.show(name)

    # -- canary rollouts (admin) --------------------------------------------------

    async def rollout_start(self, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Start a canary rollout of ``name`` (``serving.rollout.RolloutSpec`` as JSON)."""
        try:
            spec = RolloutSpec.from_json(body)
        except ValueError as exc:
            raise InvalidArgument(f"model '{name}': {exc}") from None
        return await self.rollout.start(name, spec)

    def rollout_status(self, name: str) -> dict[str, Any]:
        return self.rollout.status(name)

    async def rollout_abort(self, name: str) -> dict[str, Any]:
        return await self.rollout.abort(name)

    # -- inference -------------------------------------------------------------

    @property
    def wants_headers(self) -> bool:
        """Whether ``infer`` may route on headers (some model has a traffic split)."""
        return self.router.has_policies

    async def infer(
        self, request: InferRequest, headers: Mapping[str, str] | None = None
    ) -> InferResponse:
        """Run a request: inputs in system shared memory are read first; outputs asked
        for there are written there too, and named in ``InferResponse.placed`` (the front
        end then sends their parameters without data). ``headers``: the HTTP headers or
        gRPC metadata (lower-case names), which a sticky traffic split may route on."""
        router = self.router
        if not router.has_policies and not request.shared_memory_inputs:
            # The common request: no split to route or shadow by, nothing in shared memory
            # to read, and (unless some output asks for it) nothing to place there.
            mv = router.route(request)
            if not any(out.parameters for out in request.outputs):
                return await mv.infer(request)
            return await self._run(mv, request)
        if request.shared_memory_inputs:
            request = self._read_shared_inputs(request)
        if headers and router.has_policies:
            request = dataclasses.replace(request, headers=headers)
        return await self._run(router.route(request), request)

    async def infer_raw(
        self,
        request: InferRequest,
        tensor: Callable[[RawInputSpec], InferInput],
        headers: Mapping[str, str] | None = None,
    ) -> InferResponse:
        """Run a request whose one input is a raw body (``Inference-Header-Content-Length:
        0``): ``request`` comes without inputs, and ``tensor`` decodes the body for the
        input of the version the router picks, so each version of a split gets a body
        shaped for itself. The batch dimension of 1 a batching model takes is in the spec."""
        if headers and self.router.has_policies:
            request = dataclasses.replace(request, headers=headers)
        mv = self.router.route(request)
        request = dataclasses.replace(request, inputs=(tensor(_raw_spec(mv)),))
        return await self._run(mv, request)

    async def _run(self, mv: ModelVersion, request: InferRequest) -> InferResponse:
        """``request`` answered by ``mv``, the router's pick, with its shadow copies."""
        shadowed = self.traffic.shadow(request, mv) if self.router.has_policies else None
        # Only a requested output with parameters can be placed in shared memory.
        refs = (
            output_references(request)
            if any(out.parameters for out in request.outputs)
            else _NO_REFS
        )
        if refs:
            if self.shared_memory is None:
                raise disabled_error()
            self.shared_memory.check_outputs(refs)
        if shadowed is None:
            response = await mv.infer(request)
        else:
            response = await self.traffic.primary(shadowed, mv.infer(request))
        if refs:
            assert self.shared_memory is not None
            written = self.shared_memory.write_outputs(refs, response)
            placed = {name: refs[name].parameters(size) for name, size in written.items()}
            response = dataclasses.replace(response, placed=placed)
        return response

    def _read_shared_inputs(self, request: InferRequest) -> InferRequest:
        """``request`` with every ``UNRESOLVED`` input read from its shared-memory region."""
        if self.shared_memory is None:
            raise disabled_error()
        inputs = []
        for inp in request.inputs:
            if inp.data is UNRESOLVED:
                where = f"input {inp.name!r}"
                ref = reference(inp.parameters, where)
                assert ref is not None  # the front end saw the same parameters
                data = self.shared_memory.read(ref, by_name(inp.datatype), inp.shape, inp.name)
                inp = dataclasses.replace(inp, data=data)
            inputs.append(inp)
        return dataclasses.replace(request, inputs=tuple(inputs), shared_memory_inputs=False)

    # -- system shared memory ---------------------------------------------------

    def _shm(self) -> SharedMemoryRegistry:
        if self.shared_memory is None:
            raise disabled_error()
        return self.shared_memory

    def shm_status(self, name: str = "") -> list[dict[str, Any]]:
        return self._shm().status(name)

    def shm_register(self, name: str, key: str, offset: int, byte_size: int) -> None:
        self._shm().register(name, key, offset, byte_size)

    def shm_unregister(self, name: str = "") -> None:
        self._shm().unregister(name)
