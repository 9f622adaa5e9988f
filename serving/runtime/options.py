"""ONNX Runtime session options derived from a Triton model config.

Threads: each instance gets ``max(1, cores // instances)`` intra-op threads unless the config
``parameters`` give Triton's ``intra_op_thread_count`` / ``inter_op_thread_count``; spinning is
switched off when several instances share the cores, so idle instances do not burn them. The
parameter ``allow_spinning: "true"`` / ``"false"`` forces it either way (intra- and inter-op).

Graph optimization follows Triton's onnxruntime backend for ``optimization.graph.level``:

    -1 -> ORT_ENABLE_BASIC     1 -> ORT_ENABLE_EXTENDED     2 -> ORT_DISABLE_ALL
    0 or absent -> ORT_ENABLE_ALL

and the parameter ``disable_graph_optimization: "true"`` forces ORT_DISABLE_ALL.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from serving.errors import InvalidArgument

__all__ = [
    "GRAPH_LEVELS",
    "SessionSettings",
    "build_session_options",
    "config_parameter",
    "default_cores",
    "derive_settings",
]

# Names of onnxruntime.GraphOptimizationLevel members, by Triton's `optimization.graph.level`.
GRAPH_LEVELS = {
    -1: "ORT_ENABLE_BASIC",
    0: "ORT_ENABLE_ALL",
    1: "ORT_ENABLE_EXTENDED",
    2: "ORT_DISABLE_ALL",
}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True, slots=True)
class SessionSettings:
    """What :func:`build_session_options` puts into each instance's SessionOptions."""

    instances: int
    intra_op_threads: int
    inter_op_threads: int  # 0 lets ONNX Runtime choose
    allow_spinning: bool
    parallel_execution: bool
    graph_level: str  # a GraphOptimizationLevel member name


def default_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def config_parameter(config: Any, key: str) -> str | None:
    """The ``string_value`` of a config ``parameters`` entry, or None."""
    params = config.parameters
    return params[key].string_value if key in params else None


def config_flag(config: Any, key: str) -> bool | None:
    value = config_parameter(config, key)
    if value is None:
        return None
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InvalidArgument(f"parameter {key!r} must be true or false, got {value!r}")


def _int_parameter(config: Any, key: str) -> int | None:
    value = config_parameter(config, key)
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        raise InvalidArgument(f"parameter {key!r} must be an integer, got {value!r}") from None
    if number < 0:
        raise InvalidArgument(f"parameter {key!r} must not be negative, got {number}")
    return number


def derive_settings(config: Any, *, instances: int, cores: int | None = None) -> SessionSettings:
    cores = cores if cores is not None else default_cores()
    intra = _int_parameter(config, "intra_op_thread_count")
    inter = _int_parameter(config, "inter_op_thread_count")
    mode = _int_parameter(config, "execution_mode")  # Triton: 0 sequential, 1 parallel
    if mode not in (None, 0, 1):
        raise InvalidArgument(f"parameter 'execution_mode' must be 0 or 1, got {mode}")

    level = 0
    if config.HasField("optimization") and config.optimization.HasField("graph"):
        level = config.optimization.graph.level
    graph_level = GRAPH_LEVELS.get(level, "ORT_ENABLE_ALL")
    if config_flag(config, "disable_graph_optimization"):
        graph_level = "ORT_DISABLE_ALL"

    spinning = config_flag(config, "allow_spinning")
    return SessionSettings(
        instances=instances,
        intra_op_threads=intra if intra else max(1, cores // max(1, instances)),
        inter_op_threads=inter or 0,
        allow_spinning=instances <= 1 if spinning is None else spinning,
        parallel_execution=mode == 1,
        graph_level=graph_level,
    )


def build_session_options(settings: SessionSettings) -> Any:
    """A fresh ``onnxruntime.SessionOptions`` carrying ``settings``."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.intra_op_threads
    options.inter_op_num_threads = settings.inter_op_threads
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, settings.graph_level)
    options.execution_mode = (
        ort.ExecutionMode.ORT_PARALLEL
        if settings.parallel_execution
        else ort.ExecutionMode.ORT_SEQUENTIAL
    )
    spin = "1" if settings.allow_spinning else "0"
    options.add_session_config_entry("session.intra_op.allow_spinning", spin)
    options.add_session_config_entry("session.inter_op.allow_spinning", spin)
    return options
