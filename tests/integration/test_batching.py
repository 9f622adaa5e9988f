"""Concurrent HTTP clients against the real server get batched, each with its own outputs."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from serving.examples import mlp_reference, write_repository
from tests.integration.server_process import ServerProcess

pytestmark = pytest.mark.integration

CLIENTS = 16
ROUNDS = 4

_CONFIG = """\
name: "mlp"
platform: "onnxruntime_onnx"
max_batch_size: 32
input [ { name: "INPUT0", data_type: TYPE_FP32, dims: [ 64 ] } ]
output [ { name: "OUTPUT0", data_type: TYPE_FP32, dims: [ 10 ] } ]
dynamic_batching { max_queue_delay_microseconds: 20000 }
instance_group [ { kind: KIND_CPU, count: 1 } ]
"""


@pytest.fixture(scope="module")
def batching_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = tmp_path_factory.mktemp("batching-repository")
    write_repository(repo, ["mlp"])
    (repo / "mlp" / "config.pbtxt").write_text(_CONFIG)
    proc = ServerProcess(repo, log_dir=tmp_path_factory.mktemp("logs"))
    yield proc
    proc.stop()


def _infer(url: str, x: np.ndarray) -> np.ndarray:
    body = {
        "inputs": [
            {
                "name": "INPUT0",
                "datatype": "FP32",
                "shape": list(x.shape),
                "data": x.ravel().tolist(),
            }
        ]
    }
    response = httpx.post(f"{url}/v2/models/mlp/infer", json=body, timeout=60)
    assert response.status_code == 200, response.text
    out = response.json()["outputs"][0]
    return np.array(out["data"], dtype=np.float32).reshape(out["shape"])


def test_concurrent_clients_are_batched_and_get_their_own_outputs(
    batching_server: ServerProcess,
) -> None:
    rng = np.random.default_rng(3)
    inputs = [
        rng.standard_normal((1 + i % 3, 64)).astype(np.float32) for i in range(CLIENTS * ROUNDS)
    ]
    with ThreadPoolExecutor(CLIENTS) as pool:
        outputs = list(pool.map(lambda x: _infer(batching_server.http_url, x), inputs))
    for x, y in zip(inputs, outputs, strict=True):
        np.testing.assert_allclose(y, mlp_reference(x), rtol=1e-4, atol=1e-5)
    stats = httpx.get(f"{batching_server.http_url}/v2/models/mlp/stats").json()["model_stats"][0]
    rows = sum(x.shape[0] for x in inputs)
    assert stats["inference_count"] == rows  # warmup runs bypass the statistics
    assert stats["execution_count"] < len(inputs) < stats["inference_count"]
    assert stats["inference_stats"]["success"]["count"] == len(inputs)
    assert (
        sum(b["compute_infer"]["count"] for b in stats["batch_stats"]) == stats["execution_count"]
    )
    metrics = httpx.get(batching_server.metrics_url).text
    assert 'sluice_batch_size_count{model="mlp",version="1"}' in metrics
    assert 'sluice_queue_depth{model="mlp",version="1"} 0.0' in metrics
