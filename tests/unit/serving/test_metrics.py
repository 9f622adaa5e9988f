from __future__ import annotations

import pytest

from serving.metrics import Metrics
from serving.runtime import gpu
from serving.stats import RequestTimings


def test_success_and_failure_are_counted_per_model_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gpu, "gpu_stats", lambda: [])  # the same answer on a GPU machine
    m = Metrics()
    m.observe_success("mlp", "1", 4, 2_000_000, RequestTimings(100_000, 10_000, 1_500_000, 20_000))
    m.observe_execution("mlp", "1")
    m.observe_failure("mlp", "1", 50_000)
    text = m.render().decode()
    assert 'sluice_inference_requests_total{model="mlp",outcome="success",version="1"} 1.0' in text
    assert 'sluice_inference_requests_total{model="mlp",outcome="failure",version="1"} 1.0' in text
    assert 'sluice_inference_count_total{model="mlp",version="1"} 4.0' in text
    assert 'sluice_inference_exec_count_total{model="mlp",version="1"} 1.0' in text
    assert 'sluice_queue_duration_seconds_bucket{le="0.00025",model="mlp",version="1"} 1.0' in text
    assert (
        'sluice_compute_duration_seconds_sum{model="mlp",phase="infer",version="1"} 0.0015' in text
    )
    assert "sluice_gpu_" not in text  # no GPU reading: no GPU metric, not even an empty one


def test_gpu_readings_are_rendered_when_a_gpu_exists(monkeypatch: pytest.MonkeyPatch) -> None:
    reading = gpu.GpuStats(index=0, uuid="GPU-1", name="Fake", utilization=0.5,
                           memory_used_bytes=1024, memory_total_bytes=4096, power_watts=70.0)  # fmt: skip
    monkeypatch.setattr(gpu, "gpu_stats", lambda: [reading])
    text = Metrics().render().decode()
    assert 'sluice_gpu_utilization_ratio{gpu="0"} 0.5' in text
    assert 'sluice_gpu_memory_used_bytes{gpu="0"} 1024.0' in text
    assert 'sluice_gpu_memory_total_bytes{gpu="0"} 4096.0' in text
