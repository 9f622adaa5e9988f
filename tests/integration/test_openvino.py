"""OpenVINO for real: the server runs a model through OpenVINOExecutionProvider on this CPU.

Runs in the onnxruntime-openvino environment (scripts/ci_openvino.sh); skipped elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.http as httpclient

from serving.examples import mlp_reference, write_repository
from tests.integration.server_process import ServerProcess

ort = pytest.importorskip("onnxruntime")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.openvino,
    pytest.mark.skipif(
        "OpenVINOExecutionProvider" not in ort.get_available_providers(),
        reason="needs onnxruntime-openvino",
    ),
]

CONFIG = """
name: "mlp_openvino"
max_batch_size: 8
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 64 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 10 ] } ]
optimization { execution_accelerators { cpu_execution_accelerator [
  { name: "openvino" parameters { key: "device_type" value: "CPU" }
                     parameters { key: "precision" value: "ACCURACY" } }
] } }
"""


@pytest.fixture(scope="module")
def openvino_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = tmp_path_factory.mktemp("openvino-repo")
    write_repository(repo, ["mlp"])
    (repo / "mlp").rename(repo / "mlp_openvino")
    (repo / "mlp_openvino" / "config.pbtxt").write_text(CONFIG)
    proc = ServerProcess(repo, log_dir=tmp_path_factory.mktemp("openvino-logs"))
    yield proc
    proc.stop()


def test_model_runs_on_openvino(openvino_server: ServerProcess) -> None:
    client = httpclient.InferenceServerClient(openvino_server.url)
    meta = client.get_model_metadata("mlp_openvino")
    assert meta["parameters"]["execution_providers"].split(",")[0] == "OpenVINOExecutionProvider"
    x = np.random.default_rng(5).standard_normal((3, 64)).astype(np.float32)
    inp = httpclient.InferInput("INPUT0", [3, 64], "FP32")
    inp.set_data_from_numpy(x)
    got = client.infer("mlp_openvino", [inp]).as_numpy("OUTPUT0")
    np.testing.assert_allclose(got, mlp_reference(x), rtol=1e-3, atol=1e-4)
    assert "onnxruntime-openvino" in openvino_server.log()  # the startup line names the flavour
