"""Python models inside ensembles, request ids and parameters in ``execute``, and an
instance that no longer starts, with the real server over tritonclient.

The pipeline ensemble is a Python tokenizer (Triton form: a text's first four bytes as
numbers) -> an ONNX scorer (times a weight per position) -> a Python post-processor
(plain form: the best position as a label, and the total), checked against the same
computed by hand.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from onnx import TensorProto, helper, numpy_helper
from tritonclient.utils import InferenceServerException

from serving.examples import IR_VERSION, OPSET
from tests.integration.server_process import ServerProcess

pytestmark = pytest.mark.integration

WEIGHTS = np.array([1.0, -1.0, 0.5, 2.0], dtype=np.float32)

TOKENIZER = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            texts = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy()
            ids = np.zeros((len(texts), 4), dtype=np.float32)
            for row, (text,) in enumerate(texts):
                first = list(text[:4])
                ids[row, : len(first)] = first
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("IDS", ids)]))
        return responses
"""

TOKENIZER_CONFIG = """
name: "tokenizer"
backend: "python"
max_batch_size: 8
input [{ name: "TEXT" data_type: TYPE_STRING dims: [ 1 ] }]
output [{ name: "IDS" data_type: TYPE_FP32 dims: [ 4 ] }]
"""

LABELER = """
import numpy as np


class Labeler:
    def predict(self, inputs):
        scores = inputs["SCORES"]
        best = np.argmax(scores, axis=1)
        labels = np.array([[b"slot%d" % i] for i in best], dtype=object)
        return {"LABEL": labels, "TOTAL": scores.sum(axis=1, keepdims=True)}
"""

LABELER_CONFIG = """
name: "labeler"
backend: "python"
max_batch_size: 8
input [{ name: "SCORES" data_type: TYPE_FP32 dims: [ 4 ] }]
output [
  { name: "LABEL" data_type: TYPE_STRING dims: [ 1 ] },
  { name: "TOTAL" data_type: TYPE_FP32 dims: [ 1 ] }
]
"""

PIPELINE_CONFIG = """
name: "pipeline"
platform: "ensemble"
max_batch_size: 8
input [{ name: "TEXT" data_type: TYPE_STRING dims: [ 1 ] }]
output [
  { name: "LABEL" data_type: TYPE_STRING dims: [ 1 ] },
  { name: "TOTAL" data_type: TYPE_FP32 dims: [ 1 ] }
]
ensemble_scheduling {
  step [
    { model_name: "tokenizer" model_version: -1
      input_map { key: "TEXT" value: "TEXT" } output_map { key: "IDS" value: "ids" } },
    { model_name: "scorer" model_version: -1
      input_map { key: "x" value: "ids" } output_map { key: "y" value: "scores" } },
    { model_name: "labeler" model_version: -1
      input_map { key: "SCORES" value: "scores" }
      output_map [ { key: "LABEL" value: "LABEL" }, { key: "TOTAL" value: "TOTAL" } ] }
  ]
}
"""

# Answers with what execute was told of the request: its id and its parameters.
ECHO = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            rid = np.array([[request.request_id().encode()]], dtype=object)
            params = np.array([[request.parameters().encode()]], dtype=object)
            responses.append(
                pb_utils.InferenceResponse(
                    [pb_utils.Tensor("ID", rid), pb_utils.Tensor("PARAMS", params)]
                )
            )
        return responses
"""

ECHO_CONFIG = """
name: "echo"
backend: "python"
max_batch_size: 8
input [{ name: "X" data_type: TYPE_FP32 dims: [ 1 ] }]
output [
  { name: "ID" data_type: TYPE_STRING dims: [ 1 ] },
  { name: "PARAMS" data_type: TYPE_STRING dims: [ 1 ] }
]
"""

ECHO_ENSEMBLE_CONFIG = """
name: "echo_ensemble"
platform: "ensemble"
max_batch_size: 8
input [{ name: "X" data_type: TYPE_FP32 dims: [ 1 ] }]
output [
  { name: "ID" data_type: TYPE_STRING dims: [ 1 ] },
  { name: "PARAMS" data_type: TYPE_STRING dims: [ 1 ] }
]
ensemble_scheduling {
  step [
    { model_name: "echo" model_version: -1 input_map { key: "X" value: "X" }
      output_map [ { key: "ID" value: "ID" }, { key: "PARAMS" value: "PARAMS" } ] }
  ]
}
"""

# Starts once; every later start (after execute kills the process) fails.
START_ONCE = """
import os

MARK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "started-once")


class TritonPythonModel:
    def initialize(self, args):
        if os.path.exists(MARK):
            raise RuntimeError("model.py cannot start a second time")
        open(MARK, "w").close()

    def execute(self, requests):
        os._exit(3)
"""

START_ONCE_CONFIG = """
name: "start_once"
backend: "python"
input [{ name: "X" data_type: TYPE_FP32 dims: [ 1 ] }]
output [{ name: "Y" data_type: TYPE_FP32 dims: [ 1 ] }]
parameters { key: "sluice.python.max_start_failures" value { string_value: "2" } }
"""


def _scorer() -> bytes:
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "w"], ["y"])],
        "scorer",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        initializer=[numpy_helper.from_array(WEIGHTS, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    return model.SerializeToString()


def _write(repo: Path, name: str, config: str, files: dict[str, str | bytes]) -> None:
    (repo / name / "1").mkdir(parents=True)
    (repo / name / "config.pbtxt").write_text(config)
    for filename, content in files.items():
        path = repo / name / "1" / filename
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = tmp_path_factory.mktemp("python-ensemble")
    _write(repo, "tokenizer", TOKENIZER_CONFIG, {"model.py": TOKENIZER})
    _write(repo, "scorer", "max_batch_size: 8\n", {"model.onnx": _scorer()})
    _write(repo, "labeler", LABELER_CONFIG, {"model.py": LABELER})
    _write(repo, "pipeline", PIPELINE_CONFIG, {})
    _write(repo, "echo", ECHO_CONFIG, {"model.py": ECHO})
    _write(repo, "echo_ensemble", ECHO_ENSEMBLE_CONFIG, {})
    _write(repo, "start_once", START_ONCE_CONFIG, {"model.py": START_ONCE})
    proc = ServerProcess(repo, "--allow-python-models", log_dir=tmp_path_factory.mktemp("logs"))
    yield proc
    proc.stop()


def _module(protocol: str) -> Any:
    return httpclient if protocol == "http" else grpcclient


def _client(server: ServerProcess, protocol: str) -> Any:
    if protocol == "http":
        return httpclient.InferenceServerClient(server.url)
    return grpcclient.InferenceServerClient(server.grpc_url)


def _by_hand(texts: list[bytes]) -> tuple[list[list[bytes]], np.ndarray]:
    ids = np.zeros((len(texts), 4), dtype=np.float32)
    for row, text in enumerate(texts):
        ids[row, : len(text[:4])] = list(text[:4])
    scores = ids * WEIGHTS
    labels = [[b"slot%d" % i] for i in np.argmax(scores, axis=1)]
    return labels, scores.sum(axis=1, keepdims=True)


def _inference_count(server: ServerProcess, model: str) -> int:
    stats = httpx.get(f"{server.http_url}/v2/models/{model}/stats", timeout=30).json()
    return int(stats["model_stats"][0]["inference_count"])


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_python_tokenizer_onnx_model_python_postprocessor_ensemble(
    server: ServerProcess, protocol: str
) -> None:
    texts = [b"sluice", b"ab", b"\xff\x01zz", b"onnx!"]
    steps = ("tokenizer", "scorer", "labeler")
    before = {m: _inference_count(server, m) for m in steps}
    module = _module(protocol)
    text = module.InferInput("TEXT", [len(texts), 1], "BYTES")
    text.set_data_from_numpy(np.array([[t] for t in texts], dtype=object))
    result = _client(server, protocol).infer("pipeline", [text])
    labels, totals = _by_hand(texts)
    assert result.as_numpy("LABEL").tolist() == labels
    np.testing.assert_allclose(result.as_numpy("TOTAL"), totals, rtol=1e-6)
    # each step ran as its own model, once per ensemble request, with all its rows
    assert {m: _inference_count(server, m) - before[m] for m in steps} == dict.fromkeys(
        steps, len(texts)
    )


def _echo(server: ServerProcess, protocol: str, model: str, **kwargs: Any) -> tuple[str, Any]:
    module = _module(protocol)
    x = module.InferInput("X", [1, 1], "FP32")
    x.set_data_from_numpy(np.ones((1, 1), dtype=np.float32))
    result = _client(server, protocol).infer(model, [x], **kwargs)
    request_id = result.as_numpy("ID")[0, 0].decode()
    return request_id, json.loads(result.as_numpy("PARAMS")[0, 0])


@pytest.mark.parametrize("model", ["echo", "echo_ensemble"])
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_execute_sees_the_request_id_and_parameters(
    server: ServerProcess, protocol: str, model: str
) -> None:
    request_id, parameters = _echo(
        server,
        protocol,
        model,
        request_id=f"req-{protocol}-7",
        parameters={"greeting": "hello", "count": 3, "exact": True},
    )
    assert request_id == f"req-{protocol}-7"
    # a JSON string, as Triton gives it; what Triton consumes itself is not in it
    assert parameters == {"greeting": "hello", "count": 3, "exact": True}


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_request_without_id_or_parameters(server: ServerProcess, protocol: str) -> None:
    assert _echo(server, protocol, "echo") == ("", {})


def test_an_instance_that_keeps_failing_to_start_fails_its_version(
    server: ServerProcess,
) -> None:
    x = httpclient.InferInput("X", [1], "FP32")
    x.set_data_from_numpy(np.ones(1, dtype=np.float32))
    client = httpclient.InferenceServerClient(server.url)
    with pytest.raises(InferenceServerException, match="exited with code 3 during execute"):
        client.infer("start_once", [x])
    deadline = time.monotonic() + 60
    while True:
        index = httpx.post(f"{server.http_url}/v2/repository/index", timeout=30).json()
        entry = next(e for e in index if e["name"] == "start_once")
        if entry["state"] == "UNAVAILABLE" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert entry["state"] == "UNAVAILABLE", entry
    assert "2 consecutive failed starts" in entry["reason"]
    assert "RuntimeError: model.py cannot start a second time" in entry["reason"]
    assert httpx.get(f"{server.http_url}/v2/models/start_once/ready").status_code != 200
    with pytest.raises(InferenceServerException, match="cannot start a second time"):
        client.infer("start_once", [x])
    # the rest of the server keeps serving
    assert _echo(server, "http", "echo", request_id="after") == ("after", {})
