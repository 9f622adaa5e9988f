"""Python models (backend "python") served by the real server, over real clients."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from serving.examples import write_repository
from tests.integration.server_process import ServerProcess

pytestmark = pytest.mark.integration

# Triton's add_sub example (python_backend/examples/add_sub), as Triton ships it.
ADD_SUB = """
import json

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.model_config = model_config = json.loads(args["model_config"])
        output0_config = pb_utils.get_output_config_by_name(model_config, "OUTPUT0")
        output1_config = pb_utils.get_output_config_by_name(model_config, "OUTPUT1")
        self.output0_dtype = pb_utils.triton_string_to_numpy(output0_config["data_type"])
        self.output1_dtype = pb_utils.triton_string_to_numpy(output1_config["data_type"])

    def execute(self, requests):
        output0_dtype = self.output0_dtype
        output1_dtype = self.output1_dtype
        responses = []
        for request in requests:
            in_0 = pb_utils.get_input_tensor_by_name(request, "INPUT0")
            in_1 = pb_utils.get_input_tensor_by_name(request, "INPUT1")
            out_0, out_1 = (
                in_0.as_numpy() + in_1.as_numpy(),
                in_0.as_numpy() - in_1.as_numpy(),
            )
            out_tensor_0 = pb_utils.Tensor("OUTPUT0", out_0.astype(output0_dtype))
            out_tensor_1 = pb_utils.Tensor("OUTPUT1", out_1.astype(output1_dtype))
            inference_response = pb_utils.InferenceResponse(
                output_tensors=[out_tensor_0, out_tensor_1]
            )
            responses.append(inference_response)
        return responses

    def finalize(self):
        print("Cleaning up...")
"""

ADD_SUB_CONFIG = """
name: "add_sub"
backend: "python"
input [
  { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] },
  { name: "INPUT1" data_type: TYPE_FP32 dims: [ 4 ] }
]
output [
  { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] },
  { name: "OUTPUT1" data_type: TYPE_FP32 dims: [ 4 ] }
]
instance_group [{ kind: KIND_CPU }]
"""

LABELS = """
import numpy as np
import triton_python_backend_utils as pb_utils

NAMES = np.array([b"cat", b"dog", b"bird"], dtype=object)


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            logits = pb_utils.get_input_tensor_by_name(request, "LOGITS").as_numpy()
            labels = NAMES[np.argmax(logits, axis=1)].reshape(-1, 1)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("LABEL", labels)]))
        return responses
"""

LABELS_CONFIG = """
name: "labels"
backend: "python"
max_batch_size: 8
input [{ name: "LOGITS" data_type: TYPE_FP32 dims: [ 3 ] }]
output [{ name: "LABEL" data_type: TYPE_STRING dims: [ 1 ] }]
"""

PLAIN = """
import numpy as np


class Scaler:
    def load(self):
        self.factor = np.float32(3)

    def preprocess(self, inputs):
        return {"x": inputs["X"] + 1}

    def predict(self, inputs):
        return {"y": inputs["x"] * self.factor}

    def postprocess(self, outputs):
        return {"Y": outputs["y"].astype(np.float32)}
"""

PLAIN_CONFIG = """
name: "plain"
backend: "python"
input [{ name: "X" data_type: TYPE_FP32 dims: [ 2 ] }]
output [{ name: "Y" data_type: TYPE_FP32 dims: [ 2 ] }]
"""

# Answers each request with how many requests its execute call received.
BATCH = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        count = np.array([[len(requests)]], dtype=np.int32)
        return [pb_utils.InferenceResponse([pb_utils.Tensor("COUNT", count)]) for _ in requests]
"""

BATCH_CONFIG = """
name: "batched"
backend: "python"
max_batch_size: 8
input [{ name: "X" data_type: TYPE_FP32 dims: [ 1 ] }]
output [{ name: "COUNT" data_type: TYPE_INT32 dims: [ 1 ] }]
dynamic_batching { preferred_batch_size: [ 4 ] max_queue_delay_microseconds: 30000000 }
parameters { key: "sluice.run_lone_at_once" value { string_value: "false" } }
"""

# X == 1: raise; X == 2: hang; X == 3: the process dies; else X back.
FAULTY = """
import os
import time

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            if x[0] == 1:
                raise ValueError("the model refuses 1")
            if x[0] == 2:
                time.sleep(3600)
            if x[0] == 3:
                os._exit(3)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("Y", x)]))
        return responses
"""

FAULTY_CONFIG = """
name: "faulty"
backend: "python"
input [{ name: "X" data_type: TYPE_FP32 dims: [ 1 ] }]
output [{ name: "Y" data_type: TYPE_FP32 dims: [ 1 ] }]
parameters { key: "sluice.python.execute_timeout_secs" value { string_value: "1" } }
"""

# BLS: asks the ONNX model "simple" for INPUT0 + INPUT1 and returns twice the sum.
BLS = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            call = pb_utils.InferenceRequest(
                model_name="simple",
                requested_output_names=["OUTPUT0"],
                inputs=[
                    pb_utils.get_input_tensor_by_name(request, "INPUT0"),
                    pb_utils.get_input_tensor_by_name(request, "INPUT1"),
                ],
            )
            answer = call.exec()
            if answer.has_error():
                raise RuntimeError(answer.error().message())
            total = pb_utils.get_output_tensor_by_name(answer, "OUTPUT0").as_numpy()
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("DOUBLED", total * 2)]))
        return responses
"""

BLS_CONFIG = """
name: "bls"
backend: "python"
max_batch_size: 8
input [
  { name: "INPUT0" data_type: TYPE_INT32 dims: [ 16 ] },
  { name: "INPUT1" data_type: TYPE_INT32 dims: [ 16 ] }
]
output [{ name: "DOUBLED" data_type: TYPE_INT32 dims: [ 16 ] }]
"""

ENV_MODEL = """
import numpy as np
import sluice_tiny


class Answer:
    def predict(self, inputs):
        return {"Y": inputs["X"] + np.float32(sluice_tiny.VALUE)}
"""


def _env_config(name: str) -> str:
    return f"""
name: "{name}"
backend: "python"
input [{{ name: "X" data_type: TYPE_FP32 dims: [ 1 ] }}]
output [{{ name: "Y" data_type: TYPE_FP32 dims: [ 1 ] }}]
"""


def _write_model(repo: Path, name: str, code: str, config: str) -> Path:
    model_dir = repo / name
    (model_dir / "1").mkdir(parents=True)
    (model_dir / "1" / "model.py").write_text(code)
    (model_dir / "config.pbtxt").write_text(config)
    return model_dir


def _tiny_wheel(directory: Path) -> Path:
    """A pure-Python wheel made here, so pip installs it without a network."""
    directory.mkdir(parents=True, exist_ok=True)
    wheel = directory / "sluice_tiny-1.0-py3-none-any.whl"
    info = "sluice_tiny-1.0.dist-info"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("sluice_tiny/__init__.py", "VALUE = 41\n")
        archive.writestr(
            f"{info}/METADATA", "Metadata-Version: 2.1\nName: sluice-tiny\nVersion: 1.0\n"
        )
        archive.writestr(
            f"{info}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        archive.writestr(f"{info}/RECORD", "")
    return wheel


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("python-models")
    write_repository(repo, ["simple"])
    _write_model(repo, "add_sub", ADD_SUB, ADD_SUB_CONFIG)
    _write_model(repo, "labels", LABELS, LABELS_CONFIG)
    _write_model(repo, "plain", PLAIN, PLAIN_CONFIG)
    _write_model(repo, "batched", BATCH, BATCH_CONFIG)
    _write_model(repo, "faulty", FAULTY, FAULTY_CONFIG)
    _write_model(repo, "bls", BLS, BLS_CONFIG)
    broken = _write_model(repo, "unresolvable", ENV_MODEL, _env_config("unresolvable"))
    (broken / "requirements.txt").write_text("--no-index\nsluice-no-such-package==9.9\n")
    return repo


@pytest.fixture(scope="module")
def server(repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    cache = tmp_path_factory.mktemp("cache")
    proc = ServerProcess(
        repository,
        "--allow-python-models",
        "--python-env",
        "auto",
        "--cache-dir",
        str(cache),
        log_dir=tmp_path_factory.mktemp("logs"),
    )
    yield proc
    proc.stop()


def _client(server: ServerProcess, protocol: str) -> httpclient.InferenceServerClient:
    if protocol == "http":
        return httpclient.InferenceServerClient(server.url)
    return grpcclient.InferenceServerClient(server.grpc_url)  # type: ignore[return-value]


def _module(protocol: str):  # type: ignore[no-untyped-def]
    return httpclient if protocol == "http" else grpcclient


def _infer(server: ServerProcess, protocol: str, model: str, **arrays: np.ndarray):  # type: ignore[no-untyped-def]
    client = _client(server, protocol)
    module = _module(protocol)
    inputs = []
    for name, array in arrays.items():
        datatype = (
            "BYTES"
            if array.dtype == object
            else {np.float32: "FP32", np.int32: "INT32"}[array.dtype.type]
        )
        item = module.InferInput(name, list(array.shape), datatype)
        item.set_data_from_numpy(array)
        inputs.append(item)
    return client.infer(model, inputs)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_triton_add_sub_model_served_unchanged(server: ServerProcess, protocol: str) -> None:
    a = np.array([1, 2, 3, 4], dtype=np.float32)
    b = np.array([0.5, 0.5, 1, 8], dtype=np.float32)
    result = _infer(server, protocol, "add_sub", INPUT0=a, INPUT1=b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_string_post_processor(server: ServerProcess, protocol: str) -> None:
    logits = np.array([[0.1, 0.9, 0.0], [3.0, 1.0, 2.0]], dtype=np.float32)
    result = _infer(server, protocol, "labels", LOGITS=logits)
    assert result.as_numpy("LABEL").tolist() == [[b"dog"], [b"cat"]]


def test_python_model_metadata_names_its_backend(server: ServerProcess) -> None:
    meta = httpx.get(f"{server.http_url}/v2/models/add_sub").json()
    assert meta["platform"] == "python"
    assert [i["name"] for i in meta["inputs"]] == ["INPUT0", "INPUT1"]


def test_plain_form_with_pre_and_post_processing(server: ServerProcess) -> None:
    x = np.array([1, 2], dtype=np.float32)
    result = _infer(server, "http", "plain", X=x)
    np.testing.assert_array_equal(result.as_numpy("Y"), (x + 1) * 3)


def test_a_dynamic_batch_arrives_in_one_execute(server: ServerProcess) -> None:
    counts: list[int] = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            result = _infer(server, "http", "batched", X=np.ones((1, 1), dtype=np.float32))
            counts.append(int(result.as_numpy("COUNT")[0, 0]))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert counts == [4, 4, 4, 4]  # the batcher waited for its preferred size of 4


def test_bls_calls_an_onnx_model_of_the_same_server(server: ServerProcess) -> None:
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    b = np.full((1, 16), 5, dtype=np.int32)
    result = _infer(server, "grpc", "bls", INPUT0=a, INPUT1=b)
    np.testing.assert_array_equal(result.as_numpy("DOUBLED"), (a + b) * 2)
    stats = httpx.get(f"{server.http_url}/v2/models/simple/stats").json()
    assert stats["model_stats"][0]["inference_count"] >= 1  # it ran through the ONNX model


def _faulty(server: ServerProcess, value: float):  # type: ignore[no-untyped-def]
    return _infer(server, "http", "faulty", X=np.array([value], dtype=np.float32))


def _eventually(check: Callable[[], object], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            check()
            return
        except InferenceServerException:
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} did not happen within {timeout} s") from None
        time.sleep(0.1)


def test_a_raising_model_fails_the_request_clearly_and_keeps_serving(
    server: ServerProcess,
) -> None:
    with pytest.raises(InferenceServerException, match="ValueError: the model refuses 1"):
        _faulty(server, 1)
    assert _faulty(server, 5).as_numpy("Y").tolist() == [5]


def test_a_hanging_model_times_out_and_is_restarted(server: ServerProcess) -> None:
    with pytest.raises(InferenceServerException, match="did not finish within its timeout of 1 s"):
        _faulty(server, 2)
    # the other models never noticed
    add = _infer(
        server, "http", "add_sub", INPUT0=np.ones(4, np.float32), INPUT1=np.ones(4, np.float32)
    )
    assert add.as_numpy("OUTPUT0").tolist() == [2, 2, 2, 2]
    _eventually(lambda: _faulty(server, 6), "the restarted instance answering")
    assert _faulty(server, 6).as_numpy("Y").tolist() == [6]


def test_a_crashing_model_is_restarted(server: ServerProcess) -> None:
    with pytest.raises(InferenceServerException, match="exited with code 3 during execute"):
        _faulty(server, 3)
    _eventually(lambda: _faulty(server, 7), "the restarted instance answering")
    assert "restarted" in server.log()


def test_failed_requirements_fail_only_that_model_with_pips_reason(
    server: ServerProcess,
) -> None:
    index = httpx.post(f"{server.http_url}/v2/repository/index").json()
    states = {entry["name"]: entry for entry in index}
    assert states["unresolvable"]["state"] == "UNAVAILABLE"
    assert "pip could not install" in states["unresolvable"]["reason"]
    assert "sluice-no-such-package" in states["unresolvable"]["reason"]
    assert states["add_sub"]["state"] == "READY"


def test_python_models_need_the_flag(repository: Path, tmp_path: Path) -> None:
    proc = ServerProcess(repository, log_dir=tmp_path, wait_ready=False)
    try:
        _eventually_ready = httpx.get(f"{proc.http_url}/v2/models/simple/ready")
        deadline = time.monotonic() + 60
        while _eventually_ready.status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
            _eventually_ready = httpx.get(f"{proc.http_url}/v2/models/simple/ready")
        answer = httpx.get(f"{proc.http_url}/v2/models/add_sub/ready")
        assert answer.status_code != 200
        index = {e["name"]: e for e in httpx.post(f"{proc.http_url}/v2/repository/index").json()}
        assert "--allow-python-models" in index["add_sub"]["reason"]
    finally:
        proc.stop()


def test_the_repository_api_cannot_load_python_from_an_override(
    repository: Path, tmp_path: Path
) -> None:
    proc = ServerProcess(
        repository,
        "--allow-python-models",
        "--model-control-mode",
        "explicit",
        log_dir=tmp_path,
    )
    try:
        url = f"{proc.http_url}/v2/repository/models/simple/load"
        override = (
            '{"name": "simple", "backend": "python", "input": [{"name": "INPUT0", '
            '"data_type": "TYPE_INT32", "dims": [16]}], "output": [{"name": "OUTPUT0", '
            '"data_type": "TYPE_INT32", "dims": [16]}]}'
        )
        answer = httpx.post(url, json={"parameters": {"config": override}})
        assert answer.status_code == 400
        assert "config override" in answer.json()["error"]
        answer = httpx.post(
            f"{proc.http_url}/v2/repository/models/add_sub/load",
            json={"parameters": {"config": '{"name": "add_sub"}'}},
        )
        assert answer.status_code == 400
        assert "config override" in answer.json()["error"]
        ok = httpx.post(f"{proc.http_url}/v2/repository/models/add_sub/load")
        assert ok.status_code == 200, ok.text
    finally:
        proc.stop()


def test_an_environment_is_built_once_and_reused(tmp_path: Path) -> None:
    wheels = _tiny_wheel(tmp_path / "wheels").parent
    repo = tmp_path / "repo"
    model_dir = _write_model(repo, "with_env", ENV_MODEL, _env_config("with_env"))
    (model_dir / "requirements.txt").write_text(
        f"--no-index\n--find-links {wheels}\nsluice-tiny==1.0\n"
    )
    cache = tmp_path / "cache"
    command = [
        sys.executable,
        "-m",
        "serving",
        "env",
        "build",
        str(model_dir),
        "--cache-dir",
        str(cache),
    ]
    first = subprocess.run(command, capture_output=True, text=True, check=False)
    assert first.returncode == 0, first.stderr
    assert "building environment" in first.stdout
    (lock,) = cache.glob("python-envs/*.lock")
    assert "sluice-tiny==1.0" in lock.read_text().splitlines()
    built_at = lock.stat().st_mtime_ns
    second = subprocess.run(command, capture_output=True, text=True, check=False)
    assert second.returncode == 0, second.stderr
    assert "already built" in second.stdout
    assert lock.stat().st_mtime_ns == built_at
    proc = ServerProcess(
        repo, "--allow-python-models", "--cache-dir", str(cache), log_dir=tmp_path
    )  # --python-env prebuilt: it must find the environment, not build one
    try:
        result = _infer(proc, "http", "with_env", X=np.array([1], dtype=np.float32))
        assert result.as_numpy("Y").tolist() == [42]
        meta = httpx.get(f"{proc.http_url}/v2/models/with_env").json()
        assert "sluice-tiny==1.0" in meta["parameters"]["python_env_lock"].split(",")
        assert "building environment" not in proc.log()
    finally:
        proc.stop()
