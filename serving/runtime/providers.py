"""Execution provider selection: a Triton model config becomes ordered ONNX Runtime providers.

Each execution instance gets its own plan because GPU instances differ by ``device_id``. A
provider the installed ONNX Runtime build lacks falls back along a fixed chain (TensorRT -> CUDA
-> CPU, OpenVINO -> CPU) and one warning per model names what was asked and what runs.
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from serving.errors import InvalidArgument

__all__ = [
    "CPU",
    "CUDA",
    "OPENVINO",
    "TENSORRT",
    "InstancePlan",
    "ProviderSpec",
    "available_providers",
    "ort_flavour",
    "plan_instances",
    "requested_providers",
    "resolve_providers",
]

logger = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
OPENVINO = "OpenVINOExecutionProvider"

_FALLBACK = {TENSORRT: CUDA, CUDA: CPU, OPENVINO: CPU}

# Every ONNX Runtime flavour installs the same `onnxruntime` module; the distribution name tells
# them apart.
_FLAVOURS = (
    "onnxruntime-gpu",
    "onnxruntime-openvino",
    "onnxruntime-directml",
    "onnxruntime-qnn",
    "onnxruntime",
)

# Accelerator parameters as users write them in config.pbtxt -> ONNX Runtime OpenVINO EP option
# names (onnxruntime-openvino 1.18+; checked against 1.24.1).
_OPENVINO_OPTIONS = {
    "device_type": "device_type",  # CPU, GPU, GPU.0, NPU, AUTO:GPU,CPU, HETERO:GPU,CPU, ...
    "device": "device_type",
    "precision": "precision",  # FP32, FP16, ACCURACY
    "num_of_threads": "num_of_threads",
    "num_threads": "num_of_threads",
    "num_streams": "num_streams",
    "cache_dir": "cache_dir",
    "load_config": "load_config",
    "model_priority": "model_priority",
    "enable_opencl_throttling": "enable_opencl_throttling",
    "disable_dynamic_shapes": "disable_dynamic_shapes",
    "enable_qdq_optimizer": "enable_qdq_optimizer",
    "enable_causallm": "enable_causallm",
}

# Triton's onnxruntime backend TensorRT accelerator keys -> ONNX Runtime TensorRT EP options.
_TENSORRT_OPTIONS = {
    "max_workspace_size_bytes": "trt_max_workspace_size",
    "trt_max_workspace_size": "trt_max_workspace_size",
    "trt_engine_cache_enable": "trt_engine_cache_enable",
    "trt_engine_cache_path": "trt_engine_cache_path",
    "trt_timing_cache_enable": "trt_timing_cache_enable",
    "trt_timing_cache_path": "trt_timing_cache_path",
    "trt_fp16_enable": "trt_fp16_enable",
    "trt_int8_enable": "trt_int8_enable",
    "trt_builder_optimization_level": "trt_builder_optimization_level",
}

# CUDA EP options pass through under their own names.
_CUDA_OPTIONS = {
    name: name
    for name in (
        "cudnn_conv_algo_search",
        "cudnn_conv_use_max_workspace",
        "gpu_mem_limit",
        "arena_extend_strategy",
        "do_copy_in_default_stream",
        "enable_cuda_graph",
        "use_tf32",
        "tunable_op_enable",
    )
}


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """One ONNX Runtime execution provider with its options."""

    name: str
    options: tuple[tuple[str, str], ...] = ()

    def as_ort(self) -> tuple[str, dict[str, str]]:
        return self.name, dict(self.options)


@dataclass(frozen=True, slots=True)
class InstancePlan:
    """The providers for one execution instance, after fallback."""

    kind: str  # "KIND_CPU" or "KIND_GPU"
    device_id: int | None
    providers: tuple[ProviderSpec, ...]

    @property
    def provider_names(self) -> list[str]:
        return [p.name for p in self.providers]


def ort_flavour() -> tuple[str, str]:
    """Return ``(distribution, version)`` of the installed ONNX Runtime build."""
    for dist in _FLAVOURS:
        try:
            return dist, importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown", "unknown"


def available_providers() -> list[str]:
    import onnxruntime

    return list(onnxruntime.get_available_providers())


def requested_providers(config: Any, kind: str, device_id: int | None) -> list[ProviderSpec]:
    """The providers the config asks for, best first, always ending with the CPU provider."""
    accelerators = config.optimization.execution_accelerators
    specs: list[ProviderSpec] = []
    if kind == "KIND_GPU":
        device = (("device_id", str(device_id or 0)),)
        for acc in accelerators.gpu_execution_accelerator:
            name = acc.name.lower()
            if name == "tensorrt":
                opts = _tensorrt_options(acc.parameters)
                specs.append(ProviderSpec(TENSORRT, device + opts))
            elif name == "cuda":
                opts = _mapped_options("cuda", _CUDA_OPTIONS, acc.parameters)
                specs.append(ProviderSpec(CUDA, device + opts))
            else:
                raise InvalidArgument(
                    f"unknown gpu_execution_accelerator {acc.name!r}; expected 'tensorrt' or 'cuda'"
                )
        if not any(s.name == CUDA for s in specs):
            specs.append(ProviderSpec(CUDA, device))
    for acc in accelerators.cpu_execution_accelerator:
        if acc.name.lower() != "openvino":
            raise InvalidArgument(
                f"unknown cpu_execution_accelerator {acc.name!r}; expected 'openvino'"
            )
        options = _openvino_options(acc.parameters)  # validated even where unused
        if kind != "KIND_GPU":
            specs.append(ProviderSpec(OPENVINO, options))
    specs.append(ProviderSpec(CPU))
    return specs


def resolve_providers(
    requested: Sequence[ProviderSpec], available: Iterable[str]
) -> tuple[list[ProviderSpec], list[str]]:
    """Drop providers the build lacks; returns ``(providers, missing names)``.

    Dropping TensorRT leaves CUDA next, dropping CUDA or OpenVINO leaves the CPU provider, which
    every build has, so the fallback chain is the order of ``requested`` itself.
    """
    have = set(available)
    kept = [s for s in requested if s.name in have or s.name == CPU]
    missing = [s.name for s in requested if s.name not in have and s.name != CPU]
    return kept, missing


def plan_instances(
    config: Any, available: Iterable[str] | None = None, *, gpu_count: int | None = None
) -> list[InstancePlan]:
    """One plan per execution instance, Triton style.

    A KIND_GPU group makes ``count`` instances on each listed GPU (all GPUs when none are
    listed); KIND_AUTO means GPU when the build has the CUDA provider, else CPU; no group at all
    means one CPU instance. Logs one warning when a requested provider is unavailable.
    """
    have = list(available_providers() if available is None else available)
    groups = list(config.instance_group)
    plans: list[InstancePlan] = []
    missing: dict[str, None] = {}
    asked: list[str] = []
    ran: list[str] = []
    for group in groups or [None]:
        kind = _kind_name(group) if group is not None else "KIND_CPU"
        count = max(1, group.count) if group is not None else 1
        if kind == "KIND_AUTO":
            kind = "KIND_GPU" if CUDA in have else "KIND_CPU"
        if kind == "KIND_MODEL":
            kind = "KIND_CPU"
        if kind == "KIND_GPU":
            gpus = list(group.gpus) if group is not None and group.gpus else None
            if gpus is None:
                gpus = list(range(gpu_count if gpu_count is not None else _gpu_count()))
            devices: list[int | None] = list(gpus)
        else:
            devices = [None]
        for device in devices:
            requested = requested_providers(config, kind, device)
            kept, lost = resolve_providers(requested, have)
            for name in lost:
                missing[name] = None
            if lost and not asked:
                asked = [s.name for s in requested]
                ran = [s.name for s in kept]
            plans.extend(InstancePlan(kind, device, tuple(kept)) for _ in range(count))
    if missing:
        logger.warning(
            "model %r asked for %s, which this ONNX Runtime build (%s %s) lacks; running on %s",
            getattr(config, "name", ""),
            " > ".join(asked),
            *ort_flavour(),
            " > ".join(ran),
        )
    return plans


def _kind_name(group: Any) -> str:
    enum = group.DESCRIPTOR.fields_by_name["kind"].enum_type
    return enum.values_by_number[group.kind].name


def _gpu_count() -> int:
    from serving.runtime.gpu import device_count

    return max(1, device_count())


def _mapped_options(
    what: str, table: dict[str, str], parameters: Any
) -> tuple[tuple[str, str], ...]:
    out: dict[str, str] = {}
    for key, value in sorted(parameters.items()):
        try:
            out[table[key]] = str(value)
        except KeyError:
            known = ", ".join(sorted(table))
            raise InvalidArgument(
                f"unknown {what} accelerator parameter {key!r}; expected one of {known}"
            ) from None
    return tuple(out.items())


def _openvino_options(parameters: Any) -> tuple[tuple[str, str], ...]:
    return _mapped_options("openvino", _OPENVINO_OPTIONS, parameters)


def _tensorrt_options(parameters: Any) -> tuple[tuple[str, str], ...]:
    params = dict(parameters)
    precision = params.pop("precision_mode", None)
    opts = dict(_mapped_options("tensorrt", _TENSORRT_OPTIONS, params))
    if precision is not None:
        mode = precision.upper()
        if mode not in ("FP32", "FP16", "INT8"):
            raise InvalidArgument(
                f"tensorrt precision_mode {precision!r}; expected FP32, FP16 or INT8"
            )
        opts["trt_fp16_enable"] = "1" if mode in ("FP16", "INT8") else "0"
        opts["trt_int8_enable"] = "1" if mode == "INT8" else "0"
    return tuple(sorted(opts.items()))
