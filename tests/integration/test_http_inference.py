"""The real server process driven by tritonclient's HTTP client."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from serving.examples import mlp_reference
from tests.integration.server_process import ServerProcess

pytestmark = pytest.mark.integration

NUMERIC = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
           "FP32", "FP64"]  # fmt: skip
BINARY_ONLY = ["FP16", "BF16"]


@pytest.fixture
def client(server: ServerProcess) -> httpclient.InferenceServerClient:
    c = httpclient.InferenceServerClient(server.url)
    yield c
    c.close()


def _sample(datatype: str) -> np.ndarray:
    rng = np.random.default_rng(7)
    if datatype == "BOOL":
        return rng.integers(0, 2, size=(2, 3)).astype(bool)
    if datatype == "BYTES":
        return np.array(
            [[b"alpha", b"", "\u00e9t\u00e9".encode()], [b"x" * 300, b"\x00\x01", b"z"]],
            dtype=object,
        )
    if datatype == "BF16":
        import ml_dtypes

        return rng.standard_normal((2, 3)).astype(ml_dtypes.bfloat16)
    dtype = {"FP16": np.float16, "FP32": np.float32, "FP64": np.float64}.get(datatype)
    if dtype is not None:
        return rng.standard_normal((2, 3)).astype(dtype)
    dtype = np.dtype(datatype.lower())
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=(2, 3), dtype=dtype, endpoint=True)


def test_server_live_ready_and_metadata(client: httpclient.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    meta = client.get_server_metadata()
    assert meta["name"] == "sluice"
    assert "binary_tensor_data" in meta["extensions"]
    assert "model_repository" in meta["extensions"]


def test_model_metadata_and_config(client: httpclient.InferenceServerClient) -> None:
    meta = client.get_model_metadata("simple")
    assert meta["name"] == "simple"
    assert meta["versions"] == ["1"]
    assert meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"] == [
        {"name": "INPUT0", "datatype": "INT32", "shape": [-1, 16]},
        {"name": "INPUT1", "datatype": "INT32", "shape": [-1, 16]},
    ]
    assert "CPUExecutionProvider" in meta["parameters"]["execution_providers"]
    config = client.get_model_config("simple")
    assert config["max_batch_size"] == 8
    assert config["input"][0]["data_type"] == "TYPE_INT32"
    assert config["input"][0]["dims"] == [16]
    assert config["instance_group"][0]["kind"] == "KIND_CPU"
    assert "decoupled" in config["model_transaction_policy"]
    assert "enable" in config["response_cache"]
    assert client.is_model_ready("simple")
    assert client.is_model_ready("simple", "1")
    assert not client.is_model_ready("simple", "7")


def test_derived_config_for_model_without_config(client: httpclient.InferenceServerClient) -> None:
    config = client.get_model_config("identity_fp32")
    assert config["name"] == "identity_fp32"
    assert config["platform"] == "onnxruntime_onnx"
    assert config["max_batch_size"] > 0  # every input's first dim is dynamic
    assert config["input"] == [
        {**config["input"][0], "name": "INPUT0", "data_type": "TYPE_FP32", "dims": [-1]}
    ]


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_simple_add_sub(client: httpclient.InferenceServerClient, binary: bool) -> None:
    a = np.arange(32, dtype=np.int32).reshape(2, 16)
    b = np.ones((2, 16), dtype=np.int32)
    inputs = [httpclient.InferInput("INPUT0", [2, 16], "INT32"),
              httpclient.InferInput("INPUT1", [2, 16], "INT32")]  # fmt: skip
    inputs[0].set_data_from_numpy(a, binary_data=binary)
    inputs[1].set_data_from_numpy(b, binary_data=binary)
    outputs = [httpclient.InferRequestedOutput("OUTPUT0", binary_data=binary),
               httpclient.InferRequestedOutput("OUTPUT1", binary_data=binary)]  # fmt: skip
    result = client.infer("simple", inputs, outputs=outputs, request_id="req-42")
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)
    response = result.get_response()
    assert response["id"] == "req-42"
    assert response["model_name"] == "simple"
    assert response["model_version"] == "1"


def test_mlp_matches_reference(client: httpclient.InferenceServerClient) -> None:
    x = np.random.default_rng(3).standard_normal((5, 64)).astype(np.float32)
    inp = httpclient.InferInput("INPUT0", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    result = client.infer("mlp", [inp])
    np.testing.assert_allclose(result.as_numpy("OUTPUT0"), mlp_reference(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("datatype", [*NUMERIC, "BYTES"])
@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_every_datatype_round_trips(
    client: httpclient.InferenceServerClient, datatype: str, binary: bool
) -> None:
    data = _sample(datatype)
    inp = httpclient.InferInput("INPUT0", list(data.shape), datatype)
    inp.set_data_from_numpy(data, binary_data=binary)
    out = httpclient.InferRequestedOutput("OUTPUT0", binary_data=binary)
    result = client.infer(f"identity_{datatype.lower()}", [inp], outputs=[out])
    got = result.as_numpy("OUTPUT0")
    assert got.shape == data.shape
    if datatype == "BYTES":
        # JSON answers carry strings, binary answers bytes; the content must match.
        got_bytes = [x.encode() if isinstance(x, str) else x for x in got.reshape(-1)]
        assert got_bytes == list(data.reshape(-1))
    else:
        np.testing.assert_array_equal(got, data)


@pytest.mark.parametrize("datatype", BINARY_ONLY)
def test_half_precision_binary_round_trip(
    client: httpclient.InferenceServerClient, datatype: str
) -> None:
    data = _sample(datatype)
    inp = httpclient.InferInput("INPUT0", list(data.shape), datatype)
    inp.set_data_from_numpy(data, binary_data=True)
    result = client.infer(f"identity_{datatype.lower()}", [inp])
    got = result.as_numpy("OUTPUT0")
    np.testing.assert_array_equal(got.astype(np.float32), data.astype(np.float32))


def test_half_precision_in_json_is_rejected(client: httpclient.InferenceServerClient) -> None:
    data = _sample("FP16")
    inp = httpclient.InferInput("INPUT0", list(data.shape), "FP16")
    inp.set_data_from_numpy(data, binary_data=False)
    with pytest.raises(InferenceServerException, match="binary"):
        client.infer("identity_fp16", [inp])


def test_compressed_request_and_response(client: httpclient.InferenceServerClient) -> None:
    a = np.arange(32, dtype=np.int32).reshape(2, 16)
    inputs = [httpclient.InferInput("INPUT0", [2, 16], "INT32"),
              httpclient.InferInput("INPUT1", [2, 16], "INT32")]  # fmt: skip
    for i in inputs:
        i.set_data_from_numpy(a)
    for algorithm in ("gzip", "deflate"):
        result = client.infer(
            "simple", inputs, request_compression_algorithm=algorithm,
            response_compression_algorithm=algorithm,
        )  # fmt: skip
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a * 2)


def test_statistics_count_requests(client: httpclient.InferenceServerClient) -> None:
    before = client.get_inference_statistics("simple")["model_stats"][0]
    a = np.zeros((3, 16), dtype=np.int32)
    inputs = [httpclient.InferInput("INPUT0", [3, 16], "INT32"),
              httpclient.InferInput("INPUT1", [3, 16], "INT32")]  # fmt: skip
    for i in inputs:
        i.set_data_from_numpy(a)
    client.infer("simple", inputs)
    client.infer("simple", inputs)
    after = client.get_inference_statistics("simple")["model_stats"][0]
    assert after["name"] == "simple" and after["version"] == "1"
    assert after["inference_count"] - before["inference_count"] == 6
    assert after["execution_count"] - before["execution_count"] == 2
    stats = after["inference_stats"]
    assert stats["success"]["count"] - before["inference_stats"]["success"]["count"] == 2
    assert stats["queue"]["count"] - before["inference_stats"]["queue"]["count"] == 2
    assert set(stats) == {"success", "fail", "queue", "compute_input", "compute_infer",
                          "compute_output", "cache_hit", "cache_miss"}  # fmt: skip
    assert any(b["batch_size"] == 3 for b in after["batch_stats"])
    assert after["last_inference"] > 0
    every = client.get_inference_statistics()["model_stats"]
    assert {"simple", "mlp", "identity_bytes"} <= {s["name"] for s in every}
