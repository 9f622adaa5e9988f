"""CUDA for real: the server runs models through CUDAExecutionProvider on a GPU.

Runs where onnxruntime-gpu finds a GPU (``pip install '.[gpu]'``); skipped elsewhere, as on
CI's CPU machine.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from serving.examples import mlp_reference, write_repository
from tests.integration.server_process import ServerProcess

ort = pytest.importorskip("onnxruntime")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.gpu,
    pytest.mark.skipif(
        "CUDAExecutionProvider" not in ort.get_available_providers(), reason="needs CUDA"
    ),
]

_IO = """
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 64 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 10 ] } ]
"""
CONFIGS = {
    # two sessions on GPU 0, fed by the dynamic batcher
    "mlp_cuda": 'name: "mlp_cuda" max_batch_size: 16' + _IO + """
instance_group [ { kind: KIND_GPU count: 2 gpus: [ 0 ] } ]
dynamic_batching { max_queue_delay_microseconds: 500 }
""",
    # TensorRT first, falling back to CUDA when the TensorRT libraries are absent
    "mlp_trt": 'name: "mlp_trt" max_batch_size: 16' + _IO + """
instance_group [ { kind: KIND_GPU gpus: [ 0 ] } ]
optimization { execution_accelerators { gpu_execution_accelerator [ { name: "tensorrt" } ] } }
""",
}  # fmt: skip


@pytest.fixture(scope="module")
def gpu_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = tmp_path_factory.mktemp("gpu-repo")
    write_repository(repo, ["mlp"])
    for name, config in CONFIGS.items():
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "1" / "model.onnx").write_bytes((repo / "mlp/1/model.onnx").read_bytes())
        (repo / name / "config.pbtxt").write_text(config)
    proc = ServerProcess(repo, log_dir=tmp_path_factory.mktemp("gpu-logs"))
    yield proc
    assert proc.stop() == 0


def _x(rows: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, 64)).astype(np.float32)


def test_the_model_runs_on_cuda_over_both_protocols(gpu_server: ServerProcess) -> None:
    http = httpclient.InferenceServerClient(gpu_server.url)
    meta = http.get_model_metadata("mlp_cuda")
    assert meta["parameters"]["execution_providers"].split(",")[0] == "CUDAExecutionProvider"
    x = _x(5, 1)
    inp = httpclient.InferInput("INPUT0", [5, 64], "FP32")
    inp.set_data_from_numpy(x, binary_data=True)
    got = http.infer("mlp_cuda", [inp]).as_numpy("OUTPUT0")
    np.testing.assert_allclose(got, mlp_reference(x), rtol=1e-3, atol=1e-4)
    with grpcclient.InferenceServerClient(gpu_server.grpc_url) as grpc:
        ginp = grpcclient.InferInput("INPUT0", [5, 64], "FP32")
        ginp.set_data_from_numpy(x)
        got = grpc.infer("mlp_cuda", [ginp]).as_numpy("OUTPUT0")
    np.testing.assert_allclose(got, mlp_reference(x), rtol=1e-3, atol=1e-4)
    assert "onnxruntime-gpu" in gpu_server.log()  # the startup line names the flavour


def test_concurrent_requests_batch_on_the_gpu_and_each_gets_its_own_rows(
    gpu_server: ServerProcess,
) -> None:
    def call(seed: int) -> None:
        client = httpclient.InferenceServerClient(gpu_server.url)
        x = _x(1 + seed % 3, seed)
        inp = httpclient.InferInput("INPUT0", list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=True)
        got = client.infer("mlp_cuda", [inp]).as_numpy("OUTPUT0")
        np.testing.assert_allclose(got, mlp_reference(x), rtol=1e-3, atol=1e-4)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(call, range(200)))
    stats = httpclient.InferenceServerClient(gpu_server.url).get_inference_statistics("mlp_cuda")
    model = stats["model_stats"][0]
    assert model["inference_count"] >= 200


def test_gpu_metrics_read_the_device(gpu_server: ServerProcess) -> None:
    text = httpx.get(gpu_server.metrics_url, timeout=30).text
    total = re.search(r'^sluice_gpu_memory_total_bytes\{gpu="0"\} (\S+)$', text, re.M)
    used = re.search(r'^sluice_gpu_memory_used_bytes\{gpu="0"\} (\S+)$', text, re.M)
    util = re.search(r'^sluice_gpu_utilization_ratio\{gpu="0"\} (\S+)$', text, re.M)
    assert total and used and util, text[-3000:]
    assert float(total.group(1)) > 1 << 30  # a real card has more than a GiB
    assert 0 < float(used.group(1)) <= float(total.group(1))  # our sessions hold some
    assert 0.0 <= float(util.group(1)) <= 1.0


def test_tensorrt_runs_or_falls_back_to_cuda_with_one_warning(gpu_server: ServerProcess) -> None:
    http = httpclient.InferenceServerClient(gpu_server.url)
    providers = http.get_model_metadata("mlp_trt")["parameters"]["execution_providers"]
    first = providers.split(",")[0]
    assert first in ("TensorrtExecutionProvider", "CUDAExecutionProvider"), providers
    if first == "CUDAExecutionProvider":  # no TensorRT libraries here: said once, by name
        warnings = [line for line in gpu_server.log().splitlines()
                    if "WARNING" in line and "mlp_trt" in line and "Tensorrt" in line]  # fmt: skip
        assert len(warnings) == 1, gpu_server.log()[-4000:]
    x = _x(3, 7)
    inp = httpclient.InferInput("INPUT0", [3, 64], "FP32")
    inp.set_data_from_numpy(x)
    got = http.infer("mlp_trt", [inp]).as_numpy("OUTPUT0")
    np.testing.assert_allclose(got, mlp_reference(x), rtol=1e-3, atol=1e-4)
