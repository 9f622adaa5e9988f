"""GPU utilization and memory through NVML, for the metrics endpoint.

``pynvml`` (from the ``nvidia-ml-py`` distribution) is imported lazily; without it, without a
driver or without a GPU every function answers "no GPUs" instead of raising.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

__all__ = ["GpuStats", "device_count", "gpu_stats"]

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_nvml: Any = None
_tried = False


@dataclass(frozen=True, slots=True)
class GpuStats:
    index: int
    uuid: str
    name: str
    utilization: float  # 0.0 - 1.0, like Triton's nv_gpu_utilization
    memory_used_bytes: int
    memory_total_bytes: int
    power_watts: float | None


def _load() -> Any:
    """Import and initialise NVML once; ``None`` when unavailable."""
    global _nvml, _tried
    with _lock:
        if not _tried:
            _tried = True
            try:
                import pynvml

                pynvml.nvmlInit()
                _nvml = pynvml
            except Exception as exc:  # ImportError, NVMLError (no driver), OSError
                logger.debug("NVML unavailable: %s", exc)
                _nvml = None
        return _nvml


def device_count() -> int:
    nvml = _load()
    if nvml is None:
        return 0
    try:
        return int(nvml.nvmlDeviceGetCount())
    except Exception:
        return 0


def gpu_stats() -> list[GpuStats]:
    """One entry per visible GPU; ``[]`` when NVML or a GPU is absent."""
    nvml = _load()
    if nvml is None:
        return []
    out: list[GpuStats] = []
    try:
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            util = nvml.nvmlDeviceGetUtilizationRates(handle)
            mem = nvml.nvmlDeviceGetMemoryInfo(handle)
            try:
                power: float | None = nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0
            except Exception:
                power = None
            out.append(
                GpuStats(
                    index=index,
                    uuid=_text(nvml.nvmlDeviceGetUUID(handle)),
                    name=_text(nvml.nvmlDeviceGetName(handle)),
                    utilization=util.gpu / 100.0,
                    memory_used_bytes=int(mem.used),
                    memory_total_bytes=int(mem.total),
                    power_watts=power,
                )
            )
    except Exception as exc:
        logger.debug("NVML query failed: %s", exc)
        return []
    return out


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
