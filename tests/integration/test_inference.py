"""The real server process driven by tritonclient, the same cases over HTTP and gRPC."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from serving.examples import mlp_reference
from tests.integration.protocol_client import PROTOCOLS, ProtocolClient
from tests.integration.server_process import ServerProcess

pytestmark = pytest.mark.integration

NUMERIC = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
           "FP32", "FP64"]  # fmt: skip
BINARY_ONLY = ["FP16", "BF16"]
# gRPC has no JSON form: tritonclient.grpc always sends raw_input_contents.
WIRE_FORMS = [("http", False), ("http", True), ("grpc", True)]
WIRE_IDS = ["http-json", "http-binary", "grpc"]


@pytest.fixture(params=PROTOCOLS)
def protocol(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def client(server: ServerProcess, protocol: str) -> Iterator[ProtocolClient]:
    c = ProtocolClient(protocol, server.url, server.grpc_url)
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


def _simple_inputs(client: ProtocolClient, a: np.ndarray, b: np.ndarray, binary: bool = True):
    return [client.input("INPUT0", a, "INT32", binary), client.input("INPUT1", b, "INT32", binary)]


def test_server_live_ready_and_metadata(client: ProtocolClient) -> None:
    assert client.raw.is_server_live()
    assert client.raw.is_server_ready()
    meta = client.server_metadata()
    assert meta["name"] == "sluice"
    assert "binary_tensor_data" in meta["extensions"]
    assert "model_repository" in meta["extensions"]
    # Off by default, and then not advertised.
    assert "system_shared_memory" not in meta["extensions"]


def test_model_metadata_and_config(client: ProtocolClient) -> None:
    meta = client.model_metadata("simple")
    assert meta["name"] == "simple"
    assert meta["versions"] == ["1"]
    assert meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"] == [
        {"name": "INPUT0", "datatype": "INT32", "shape": [-1, 16]},
        {"name": "INPUT1", "datatype": "INT32", "shape": [-1, 16]},
    ]
    if client.protocol == "http":  # the gRPC message has no parameters field
        assert "CPUExecutionProvider" in meta["parameters"]["execution_providers"]
    config = client.model_config("simple")
    assert config["max_batch_size"] == 8
    assert config["input"][0]["data_type"] == "TYPE_INT32"
    assert config["input"][0]["dims"] == [16]
    assert config["instance_group"][0]["kind"] == "KIND_CPU"
    assert "decoupled" in config["model_transaction_policy"]
    assert "enable" in config["response_cache"]
    assert client.raw.is_model_ready("simple")
    assert client.raw.is_model_ready("simple", "1")
    assert not client.raw.is_model_ready("simple", "7")


def test_derived_config_for_model_without_config(client: ProtocolClient) -> None:
    config = client.model_config("identity_fp32")
    assert config["name"] == "identity_fp32"
    assert config["platform"] == "onnxruntime_onnx"
    assert config["max_batch_size"] > 0  # every input's first dim is dynamic
    assert config["input"] == [
        {**config["input"][0], "name": "INPUT0", "data_type": "TYPE_FP32", "dims": [-1]}
    ]


@pytest.mark.parametrize(("protocol", "binary"), WIRE_FORMS, ids=WIRE_IDS)
def test_simple_add_sub(client: ProtocolClient, binary: bool) -> None:
    a = np.arange(32, dtype=np.int32).reshape(2, 16)
    b = np.ones((2, 16), dtype=np.int32)
    outputs = [client.output("OUTPUT0", binary), client.output("OUTPUT1", binary)]
    result = client.infer(
        "simple", _simple_inputs(client, a, b, binary), outputs=outputs, request_id="req-42"
    )
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)
    response = client.response(result)
    assert response["id"] == "req-42"
    assert response["model_name"] == "simple"
    assert response["model_version"] == "1"


def test_mlp_matches_reference(client: ProtocolClient) -> None:
    x = np.random.default_rng(3).standard_normal((5, 64)).astype(np.float32)
    result = client.infer("mlp", [client.input("INPUT0", x, "FP32")])
    np.testing.assert_allclose(result.as_numpy("OUTPUT0"), mlp_reference(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("datatype", [*NUMERIC, "BYTES"])
@pytest.mark.parametrize(("protocol", "binary"), WIRE_FORMS, ids=WIRE_IDS)
def test_every_datatype_round_trips(client: ProtocolClient, datatype: str, binary: bool) -> None:
    data = _sample(datatype)
    inp = client.input("INPUT0", data, datatype, binary)
    out = client.output("OUTPUT0", binary)
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
def test_half_precision_binary_round_trip(client: ProtocolClient, datatype: str) -> None:
    data = _sample(datatype)
    result = client.infer(f"identity_{datatype.lower()}", [client.input("INPUT0", data, datatype)])
    got = result.as_numpy("OUTPUT0")
    np.testing.assert_array_equal(got.astype(np.float32), data.astype(np.float32))


@pytest.mark.parametrize("protocol", ["http"])
def test_half_precision_in_json_is_rejected(client: ProtocolClient) -> None:
    data = _sample("FP16")
    inp = client.input("INPUT0", data, "FP16", binary=False)
    with pytest.raises(InferenceServerException, match="binary"):
        client.infer("identity_fp16", [inp])


@pytest.mark.parametrize("protocol", ["http"])
def test_compressed_request_and_response(client: ProtocolClient) -> None:
    a = np.arange(32, dtype=np.int32).reshape(2, 16)
    inputs = _simple_inputs(client, a, a)
    for algorithm in ("gzip", "deflate"):
        result = client.infer(
            "simple", inputs, request_compression_algorithm=algorithm,
            response_compression_algorithm=algorithm,
        )  # fmt: skip
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a * 2)


def test_statistics_count_requests(client: ProtocolClient) -> None:
    before = client.statistics("simple")["model_stats"][0]
    a = np.zeros((3, 16), dtype=np.int32)
    inputs = _simple_inputs(client, a, a)
    client.infer("simple", inputs)
    client.infer("simple", inputs)
    after = client.statistics("simple")["model_stats"][0]
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
    every = client.statistics()["model_stats"]
    assert {"simple", "mlp", "identity_bytes"} <= {s["name"] for s in every}


def test_repository_index(client: ProtocolClient) -> None:
    index = {entry["name"]: entry for entry in client.index()}
    assert index["simple"]["state"] == "READY" and index["simple"]["version"] == "1"
    assert index["broken"]["state"] != "READY" and index["broken"]["reason"]


# -- errors: the same precise message and the matching status on both protocols --


def _fails(client: ProtocolClient, http_status: int, fragment: str, model: str, inputs, **kw):
    with pytest.raises(InferenceServerException) as info:
        client.infer(model, inputs, **kw)
    client.expect_status(info.value, http_status)
    assert fragment in info.value.message(), info.value.message()


def test_unknown_model_and_version(client: ProtocolClient) -> None:
    a = np.zeros((1, 16), dtype=np.int32)
    _fails(client, 404, "nope", "nope", _simple_inputs(client, a, a))
    _fails(client, 404, "7", "simple", _simple_inputs(client, a, a), model_version="7")
    with pytest.raises(InferenceServerException) as info:
        client.model_metadata("nope")
    client.expect_status(info.value, 404)


def test_wrong_input_name(client: ProtocolClient) -> None:
    a = np.zeros((1, 16), dtype=np.int32)
    inputs = [client.input("INPUT0", a, "INT32"), client.input("NOPE", a, "INT32")]
    _fails(client, 400, "NOPE", "simple", inputs)


def test_wrong_shape(client: ProtocolClient) -> None:
    a = np.zeros((1, 15), dtype=np.int32)
    _fails(client, 400, "[1, 15]", "simple", _simple_inputs(client, a, a))


def test_wrong_datatype(client: ProtocolClient) -> None:
    a = np.zeros((1, 16), dtype=np.float32)
    inputs = [client.input("INPUT0", a, "FP32"), client.input("INPUT1", a, "FP32")]
    _fails(client, 400, "datatype FP32 does not match the model's INT32", "simple", inputs)


def test_unknown_output(client: ProtocolClient) -> None:
    a = np.zeros((1, 16), dtype=np.int32)
    inputs = _simple_inputs(client, a, a)
    _fails(client, 400, "NOPE", "simple", inputs, outputs=[client.output("NOPE")])


def test_shared_memory_is_off_by_default(client: ProtocolClient) -> None:
    with pytest.raises(InferenceServerException) as info:
        client.raw.register_system_shared_memory("r", "/sluice-nothing", 16)
    client.expect_status(info.value, 501)
    assert "--allow-shared-memory" in info.value.message()
    with pytest.raises(InferenceServerException) as info:
        client.raw.get_cuda_shared_memory_status()
    client.expect_status(info.value, 501)
    assert "CUDA shared memory is not supported" in info.value.message()
