"""ONNX Runtime sessions for one model version: one session per execution instance.

``run`` borrows a free session for the length of one execution, so at most ``instances``
executions run at once; callers beyond that block in their worker thread until one is returned.
"""

from __future__ import annotations

import logging
import os
import queue
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from serving.errors import InternalError, InvalidArgument, NotFound, SluiceError, Unavailable
from serving.runtime import tensors
from serving.runtime.cache import OptimizedModelCache
from serving.runtime.options import (
    SessionSettings,
    build_session_options,
    config_flag,
    derive_settings,
)
from serving.runtime.providers import OPENVINO, InstancePlan, plan_instances

__all__ = ["OnnxRuntimeModel", "create_runtime", "default_cache_dir"]

logger = logging.getLogger(__name__)

# Phrases of ONNX Runtime FAIL statuses that blame the inputs rather than the model or runtime.
_INPUT_FAULTS = (
    "broadcast",
    "dimension mismatch",
    "invalid rank",
    "invalid dimensions",
    "got invalid dimensions",
    "shape mismatch",
    "input shape",
    "unexpected input data type",
    "invalid input name",
    "invalid output name",
    "the input tensor cannot be reshaped",
)


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "sluice" / "optimized-models"


class OnnxRuntimeModel:
    """The sessions of one model version and the lock-free pool that hands them out."""

    def __init__(self, model_path: Path, sessions: Sequence[Any]) -> None:
        if not sessions:
            raise InternalError(f"no sessions for {model_path}")
        self.model_path = model_path
        self._sessions = list(sessions)
        self._free: queue.SimpleQueue[Any] = queue.SimpleQueue()
        for session in self._sessions:
            self._free.put(session)
        first = self._sessions[0]
        self.instances = len(self._sessions)
        self.providers: list[str] = list(first.get_providers())
        self._inputs = {i.name: i.type for i in first.get_inputs()}
        self._outputs = {o.name: o.type for o in first.get_outputs()}
        self.input_names = list(self._inputs)
        self.output_names = list(self._outputs)
        self._typed_path = "tensor(bfloat16)" in {*self._inputs.values(), *self._outputs.values()}
        self._closed = False

    def run(
        self, inputs: Mapping[str, np.ndarray], output_names: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Execute once; blocks while every instance is busy. Thread-safe."""
        names = list(output_names) if output_names else self.output_names
        for name in names:
            if name not in self._outputs:
                raise InvalidArgument(
                    f"unknown output {name!r}; expected one of {self.output_names}"
                )
        feeds = self._feeds(inputs)
        session = self._free.get()
        if session is None:  # closed: pass the sentinel on to the next waiter
            self._free.put(None)
            raise Unavailable(f"model {self.model_path} is unloaded")
        try:
            if self._typed_path:
                values = session.run_with_ort_values(names, feeds)
                results = [tensors.ortvalue_to_numpy(v) for v in values]
            else:
                results = session.run(names, feeds)
        except SluiceError:
            raise
        except Exception as exc:
            raise _run_error(exc) from exc
        finally:
            self._free.put(session)
        out: dict[str, np.ndarray] = {}
        for name, array in zip(names, results, strict=True):
            if self._outputs[name] == "tensor(string)":
                array = tensors.strings_to_bytes(np.asarray(array))
            out[name] = array
        return out

    def close(self) -> None:
        """Drop the sessions; later and waiting ``run`` calls raise Unavailable."""
        if self._closed:
            return
        self._closed = True
        self._sessions.clear()
        while True:
            try:
                self._free.get_nowait()
            except queue.Empty:
                break
        self._free.put(None)

    def _feeds(self, inputs: Mapping[str, np.ndarray]) -> dict[str, Any]:
        feeds: dict[str, Any] = {}
        for name, array in inputs.items():
            kind = self._inputs.get(name)
            if kind is None:
                raise InvalidArgument(f"unknown input {name!r}; expected one of {self.input_names}")
            if kind == "tensor(string)":
                array = tensors.bytes_to_strings(name, np.asarray(array))
                if self._typed_path:
                    raise InvalidArgument(
                        f"input {name!r}: a model mixing BF16 and string tensors is not supported"
                    )
            elif kind == "tensor(bfloat16)":
                feeds[name] = tensors.bf16_to_ortvalue(name, np.asarray(array))
                continue
            if self._typed_path:
                import onnxruntime as ort

                feeds[name] = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array))
            else:
                feeds[name] = array
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise InvalidArgument(f"missing inputs {missing}; the model needs {self.input_names}")
        return feeds


def create_runtime(
    model_path: Path,
    config: Any,
    *,
    cores: int | None = None,
    cache_dir: Path | None = None,
) -> OnnxRuntimeModel:
    """Build every instance's session for ``model_path`` as ``config`` describes.

    Optimized models are cached under ``cache_dir`` when it is given, or under
    :func:`default_cache_dir` when the config parameter ``optimized_model_cache`` is true; that
    parameter set to false turns caching off even with a ``cache_dir``.
    """
    model_path = Path(model_path)
    if not model_path.is_file():
        raise NotFound(f"model file {model_path} does not exist")
    plans = plan_instances(config)
    settings = derive_settings(config, instances=len(plans), cores=cores)
    wanted = config_flag(config, "optimized_model_cache")
    if wanted is False:
        cache_dir = None
    elif wanted and cache_dir is None:
        cache_dir = default_cache_dir()
    cache = OptimizedModelCache(cache_dir) if cache_dir is not None else None
    sessions = []
    for plan in plans:
        sessions.append(_create_session(model_path, plan, settings, cache))
    runtime = OnnxRuntimeModel(model_path, sessions)
    lost = [name for name in plans[0].provider_names if name not in runtime.providers]
    if lost:
        # ONNX Runtime itself drops a provider that fails to start (bad option, absent device)
        # and only prints to stderr; say so in our log too.
        logger.warning(
            "model %r: ONNX Runtime could not start %s; running on %s",
            getattr(config, "name", "") or str(model_path),
            " > ".join(lost),
            " > ".join(runtime.providers),
        )
    logger.debug(
        "loaded %s: %d instance(s), providers %s, %d intra-op thread(s) each, %s",
        model_path,
        runtime.instances,
        runtime.providers,
        settings.intra_op_threads,
        settings.graph_level,
    )
    return runtime


def _create_session(
    model_path: Path,
    plan: InstancePlan,
    settings: SessionSettings,
    cache: OptimizedModelCache | None,
) -> Any:
    import onnxruntime as ort

    providers = [spec.as_ort() for spec in plan.providers]
    for name, options in providers:
        if name == OPENVINO and "num_of_threads" not in options and settings.instances > 1:
            # Several instances share the cores: keep OpenVINO to this instance's share.
            options["num_of_threads"] = str(settings.intra_op_threads)
    if cache is None or not cache.cacheable(plan.provider_names):
        return _load(model_path, build_session_options(settings), providers, model_path)

    final = cache.path_for(model_path, plan.provider_names, settings.graph_level, ort.__version__)
    if final.is_file():
        options = build_session_options(settings)
        # The cached graph is already optimized for these providers; do not redo the work.
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        try:
            return _load(final, options, providers, model_path)
        except SluiceError as exc:
            logger.warning("dropping unreadable optimized model %s: %s", final, exc)
            cache.discard(final)

    temp = cache.temp_path(final)
    options = build_session_options(settings)
    options.optimized_model_filepath = str(temp)
    try:
        session = _load(model_path, options, providers, model_path)
        if temp.is_file():
            cache.publish(temp, final)
    finally:
        cache.discard(temp)
    return session


def _load(path: Path, options: Any, providers: list[Any], model_path: Path) -> Any:
    import onnxruntime as ort

    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as exc:
        raise InvalidArgument(
            f"failed to load ONNX model {model_path}: {_ort_message(exc)}"
        ) from exc


def _ort_message(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.split("[ONNXRuntimeError] : ", 1)[-1]


def _run_error(exc: Exception) -> SluiceError:
    message = _ort_message(exc)
    if type(exc).__name__ == "InvalidArgument" or isinstance(exc, ValueError | TypeError):
        return InvalidArgument(message)
    lowered = message.lower()
    if any(phrase in lowered for phrase in _INPUT_FAULTS):
        return InvalidArgument(message)
    return InternalError(message)
