"""One loaded model version: its config, runtime, scheduler and statistics.

Requests are checked here against the config (names, datatypes, shapes, batch
size) so every front end gets the same precise errors.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from serving.backends import RequestInputs
from serving.datatypes import DataType, by_config_name
from serving.errors import InvalidArgument, SluiceError, Unavailable
from serving.metrics import Metrics
from serving.observers import InferenceRecord, ObserverSet, notify, observer_failed
from serving.scheduler import Scheduler
from serving.stats import RequestTimings, VersionStats
from serving.types import InferOutput, InferRequest, InferResponse

__all__ = [
    "LINEAGE_FILE",
    "ModelVersion",
    "Runtime",
    "TensorSpec",
    "lineage_parameters",
    "tensor_specs",
]

LINEAGE_FILE = "lineage.json"  # written beside the model files by registry_client's Puller
_LINEAGE_SKIPPED = frozenset({"files", "aliases"})  # long, or stale once an alias moves


class Runtime(Protocol):
    """What a model version needs from an execution runtime."""

    instances: int
    providers: list[str]

    def run(
        self, inputs: Mapping[str, np.ndarray], output_names: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class TensorSpec:
    name: str
    datatype: DataType
    dims: tuple[int, ...]  # without the batch dim
    optional: bool = False
    reshape: tuple[int, ...] | None = None  # shape the runtime sees, without the batch dim

    def metadata(self, batching: bool) -> dict[str, Any]:
        shape = [-1, *self.dims] if batching else list(self.dims)
        return {"name": self.name, "datatype": self.datatype.name, "shape": shape}


def tensor_specs(tensors: Sequence[Any]) -> tuple[TensorSpec, ...]:
    """Build specs from config ``input`` or ``output`` entries."""
    from serving.config.model_config_pb2 import DataType as ConfigDataType

    specs = []
    for t in tensors:
        reshape = tuple(t.reshape.shape) if t.HasField("reshape") else None
        specs.append(
            TensorSpec(
                name=t.name,
                datatype=by_config_name(ConfigDataType.Name(t.data_type)),
                dims=tuple(t.dims),
                optional=getattr(t, "optional", False),
                reshape=reshape,
            )
        )
    return tuple(specs)


def _flatten(prefix: str, value: Any, out: dict[str, str]) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            _flatten(f"{prefix}.{key}", item, out)
    elif isinstance(value, list):
        if all(not isinstance(v, Mapping | list) for v in value) and value:
            out[prefix] = ",".join(str(v) for v in value)
    elif value not in (None, ""):
        out[prefix] = str(value).lower() if isinstance(value, bool) else str(value)


def lineage_parameters(version_dir: Path) -> dict[str, str]:
    """``<version_dir>/lineage.json`` flattened for metadata ``parameters``: string values
    under ``lineage.`` (``lineage.run_id``, ``lineage.git_commit``, ``lineage.registry``,
    ``lineage.version``, ``lineage.tags.<key>``); empty when the version was not pulled.

    Read once when the version loads, never per request.
    """
    try:
        data = json.loads((Path(version_dir) / LINEAGE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    out: dict[str, str] = {}
    inner = data.get("lineage")
    for key, value in data.items():
        if key not in _LINEAGE_SKIPPED and key != "lineage":
            _flatten(f"lineage.{key}", value, out)
    if isinstance(inner, Mapping):
        for key, value in inner.items():
            _flatten(f"lineage.{key}", value, out)
    return dict(sorted(out.items()))


def _shape_matches(shape: Sequence[int], dims: Sequence[int]) -> bool:
    return len(shape) == len(dims) and all(
        d == -1 or d == s for s, d in zip(shape, dims, strict=True)
    )


def _fmt(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


class ModelVersion:
    """A version that is loaded and warmed up; it serves until retired."""

    def __init__(
        self,
        name: str,
        version: int,
        config: Any,
        runtime: Runtime,
        scheduler: Scheduler,
        metrics: Metrics | None = None,
        lineage: Mapping[str, str] | None = None,
        observers: ObserverSet | None = None,
    ) -> None:
        self.name = name
        self.version = version
        self.version_str = str(version)
        self.config = config
        self.runtime = runtime
        self.scheduler = scheduler
        # A runtime that hands the request's id and parameters to a model's code.
        self._takes_request = bool(getattr(runtime, "takes_request", False))
        self.metrics = metrics
        self.lineage = dict(lineage or {})  # registry lineage, for metadata parameters
        self.max_batch_size = int(config.max_batch_size)
        self.inputs = tensor_specs(config.input)
        self.outputs = tensor_specs(config.output)
        self._inputs_by_name = {s.name: s for s in self.inputs}
        self._outputs_by_name = {s.name: s for s in self.outputs}
        self.stats = VersionStats()
        # Told after every inference: this version's statistics and the process's
        # metrics, then the server's optional observers (a collector, a profiler).
        self._own_observers: tuple[Any, ...] = (
            (self.stats,) if metrics is None else (self.stats, metrics)
        )
        self.observers = observers if observers is not None else ObserverSet()
        self._inflight = 0
        # sluice_requests_in_flight: None when the metrics read ``in_flight`` at a scrape.
        self._in_flight_gauge = metrics.track(self) if metrics is not None else None
        self._idle = asyncio.Event()
        self._idle.set()
        self._retired = False

    @property
    def in_flight(self) -> int:
        """Requests this version has taken and not yet answered."""
        return self._inflight

    @property
    def batching(self) -> bool:
        return self.max_batch_size > 0

    def metadata(self, versions: Sequence[str]) -> dict[str, Any]:
        params: dict[str, Any] = {"execution_providers": ",".join(self.runtime.providers)}
        params.update(getattr(self.runtime, "parameters", {}))  # e.g. a Python model's lock
        params.update(self.lineage)
        return {
            "name": self.name,
            "versions": list(versions),
            "platform": self.config.platform or self.config.backend or "onnxruntime_onnx",
            "inputs": [s.metadata(self.batching) for s in self.inputs],
            "outputs": [s.metadata(self.batching) for s in self.outputs],
            "parameters": params,
        }

    def raw_input_spec(self) -> TensorSpec:
        """The single input a raw-binary request (header length 0) fills."""
        if len(self.inputs) != 1:
            raise InvalidArgument(
                f"raw binary requests need a model with exactly one input; model "
                f"'{self.name}' has {len(self.inputs)}"
            )
        return self.inputs[0]

    # -- inference ---------------------------------------------------------

    def prepare(self, request: InferRequest) -> tuple[dict[str, np.ndarray], list[str], int]:
        """Check a request against the config; return runtime inputs, outputs and batch size."""
        seen: dict[str, np.ndarray] = {}
        batch = 0
        for inp in request.inputs:
            spec = self._inputs_by_name.get(inp.name)
            if spec is None:
                expected = ", ".join(repr(s.name) for s in self.inputs)
                raise InvalidArgument(
                    f"unexpected input '{inp.name}' for model '{self.name}'; "
                    f"expected inputs: {expected}"
                )
            if inp.datatype != spec.datatype.name:
                raise InvalidArgument(
                    f"input '{inp.name}': datatype {inp.datatype} does not match the "
                    f"model's {spec.datatype.name}"
                )
            shape = tuple(inp.shape)
            if self.batching:
                if len(shape) != len(spec.dims) + 1 or not _shape_matches(shape[1:], spec.dims):
                    raise InvalidArgument(
                        f"input '{inp.name}': shape {_fmt(shape)} does not match the model's "
                        f"{_fmt([-1, *spec.dims])}"
                    )
                rows = shape[0]
                if rows < 1 or rows > self.max_batch_size:
                    raise InvalidArgument(
                        f"input '{inp.name}': batch size {rows} is outside 1..{self.max_batch_size}"
                    )
                if batch and rows != batch:
                    raise InvalidArgument(
                        f"input '{inp.name}': batch size {rows} differs from other inputs' {batch}"
                    )
                batch = rows
            elif not _shape_matches(shape, spec.dims):
                raise InvalidArgument(
                    f"input '{inp.name}': shape {_fmt(shape)} does not match the model's "
                    f"{_fmt(spec.dims)}"
                )
            data = inp.data
            if spec.reshape is not None:
                lead = (shape[0],) if self.batching else ()
                data = data.reshape(lead + spec.reshape)
            seen[inp.name] = data
        missing = [s.name for s in self.inputs if s.name not in seen and not s.optional]
        if missing:
            raise InvalidArgument(
                f"model '{self.name}' expects {len(self.inputs)} inputs; missing "
                + ", ".join(repr(m) for m in missing)
            )
        if request.outputs:
            names = []
            for out in request.outputs:
                if out.name not in self._outputs_by_name:
                    known = ", ".join(repr(s.name) for s in self.outputs)
                    raise InvalidArgument(
                        f"unknown output '{out.name}' requested from model '{self.name}'; "
                        f"outputs: {known}"
                    )
                names.append(out.name)
        else:
            names = [s.name for s in self.outputs]
        return seen, names, batch or 1

    def _response(
        self, request: InferRequest, names: Sequence[str], arrays: Mapping[str, np.ndarray]
    ) -> InferResponse:
        outputs = []
        for name in names:
            spec = self._outputs_by_name[name]
            arr = arrays[name]
            if spec.reshape is not None and spec.dims.count(-1) <= 1:
                lead = (arr.shape[0],) if self.batching else ()
                arr = arr.reshape(lead + spec.dims)
            outputs.append(InferOutput(name, spec.datatype.name, tuple(arr.shape), arr))
        return InferResponse(
            model_name=self.name,
            model_version=self.version_str,
            outputs=tuple(outputs),
            id=request.id,
        )

    async def infer(self, request: InferRequest) -> InferResponse:
        if self._retired:
            raise Unavailable(f"model '{self.name}' version {self.version} is being unloaded")
        start = time.perf_counter_ns()
        self._inflight += 1
        if self._in_flight_gauge is not None:
            self._in_flight_gauge.inc()
        self._idle.clear()
        queue_ns = 0
        wants_tensors = self.observers.wants_tensors
        try:
            inputs, names, batch = self.prepare(request)
            if self._takes_request:
                inputs = RequestInputs(inputs, request.id, request.parameters)
            prepared = time.perf_counter_ns()
            execution = await self.scheduler.schedule(inputs, names, batch, request.parameters)
            queue_ns = execution.queue_ns
            out_start = time.perf_counter_ns()
            response = self._response(request, names, execution.outputs)
            end = time.perf_counter_ns()
            execution_size = execution.batch_size if execution.first_in_batch else 0
            optional = self.observers.observers
            record = (
                InferenceRecord(
                    queue_ns=queue_ns,
                    compute_input_ns=prepared - start,
                    compute_infer_ns=execution.compute_infer_ns,
                    compute_output_ns=end - out_start,
                    model=self.name,
                    version=self.version_str,
                    request_id=request.id,
                    batch_size=batch,
                    total_ns=end - start,
                    execution_size=execution_size,
                    inputs=request.inputs if wants_tensors else None,
                    outputs=response.outputs if wants_tensors else None,
                )
                if optional
                else None
            )
        except BaseException as exc:
            outcome, error = (
                (exc.code.value, exc.message)
                if isinstance(exc, SluiceError)
                else ("internal", f"{type(exc).__name__}: {exc}")
            )
            self._tell(
                InferenceRecord(
                    queue_ns=queue_ns,
                    model=self.name,
                    version=self.version_str,
                    request_id=request.id,
                    outcome=outcome,
                    error=error,
                    total_ns=time.perf_counter_ns() - start,
                    inputs=request.inputs if wants_tensors else None,
                )
            )
            raise
        finally:
            self._inflight -= 1
            if self._in_flight_gauge is not None:
                self._in_flight_gauge.dec()
            if self._inflight == 0:
                self._idle.set()
        if record is not None:
            self._tell(record)
        else:  # no optional observer: statistics and metrics need only the timings
            self._tell_own(
                batch,
                end - start,
                RequestTimings(
                    queue_ns, prepared - start, execution.compute_infer_ns, end - out_start
                ),
                execution_size,
            )
        return response

    def _tell(self, record: InferenceRecord) -> None:
        notify(self._own_observers, record)
        optional = self.observers.observers
        if optional:
            notify(optional, record)

    def _tell_own(
        self, batch: int, total_ns: int, timings: RequestTimings, execution_size: int
    ) -> None:
        """What ``notify`` of an ``InferenceRecord`` tells the statistics and the metrics
        after a success, without the record (no optional observer would see it)."""
        stats = self.stats
        try:
            stats.record_success(batch, total_ns, timings)
            if execution_size:
                stats.record_execution(execution_size, timings)
        except Exception:
            observer_failed(stats)
        metrics = self.metrics
        if metrics is not None:
            try:
                metrics.observe_success(self.name, self.version_str, batch, total_ns, timings)
                if execution_size:
                    metrics.observe_execution(self.name, self.version_str)
            except Exception:
                observer_failed(metrics)

    async def retire(self, drain_timeout: float = 30.0) -> None:
        """Stop taking requests, run those in flight without waiting for batches to fill,
        then free the runtime."""
        self._retired = True
        self.scheduler.drain()
        try:
            await asyncio.wait_for(self._idle.wait(), drain_timeout)
        except TimeoutError:
            pass
        await self.scheduler.close()
        await asyncio.get_running_loop().run_in_executor(None, self.runtime.close)
