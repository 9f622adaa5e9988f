"""ONNX Runtime execution: providers, session options, instances and GPU metrics."""

from __future__ import annotations

from serving.runtime.gpu import GpuStats, device_count, gpu_stats
from serving.runtime.options import SessionSettings, build_session_options, derive_settings
from serving.runtime.providers import (
    InstancePlan,
    ProviderSpec,
    available_providers,
    ort_flavour,
    plan_instances,
)
from serving.runtime.session import OnnxRuntimeModel, create_runtime, default_cache_dir

__all__ = [
    "GpuStats",
    "InstancePlan",
    "OnnxRuntimeModel",
    "ProviderSpec",
    "SessionSettings",
    "available_providers",
    "build_session_options",
    "create_runtime",
    "default_cache_dir",
    "derive_settings",
    "device_count",
    "gpu_stats",
    "ort_flavour",
    "plan_instances",
]
