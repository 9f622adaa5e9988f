import sys
import types

import pytest

from serving.runtime import gpu


@pytest.fixture
def fresh_nvml(monkeypatch):
    monkeypatch.setattr(gpu, "_tried", False)
    monkeypatch.setattr(gpu, "_nvml", None)
    return monkeypatch


def test_no_nvml_means_no_gpus(fresh_nvml):
    fresh_nvml.setitem(sys.modules, "pynvml", None)  # import fails
    assert gpu.gpu_stats() == []
    assert gpu.device_count() == 0


def test_driver_missing_means_no_gpus(fresh_nvml):
    fake = types.ModuleType("pynvml")

    def init():
        raise RuntimeError("NVML Shared Library Not Found")

    fake.nvmlInit = init
    fresh_nvml.setitem(sys.modules, "pynvml", fake)
    assert gpu.gpu_stats() == []


def test_stats_from_nvml(fresh_nvml):
    fake = types.ModuleType("pynvml")
    fake.nvmlInit = lambda: None
    fake.nvmlDeviceGetCount = lambda: 1
    fake.nvmlDeviceGetHandleByIndex = lambda i: f"h{i}"
    fake.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=37)
    fake.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(used=1 << 30, total=80 << 30)
    fake.nvmlDeviceGetPowerUsage = lambda h: 123_000
    fake.nvmlDeviceGetUUID = lambda h: b"GPU-1234"
    fake.nvmlDeviceGetName = lambda h: "NVIDIA H100"
    fresh_nvml.setitem(sys.modules, "pynvml", fake)
    (stats,) = gpu.gpu_stats()
    assert stats == gpu.GpuStats(0, "GPU-1234", "NVIDIA H100", 0.37, 1 << 30, 80 << 30, 123.0)
    assert gpu.device_count() == 1
