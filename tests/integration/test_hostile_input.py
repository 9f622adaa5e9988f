"""What a hostile client sends (issue 8: defects 1, 6 and 8) gets a 400 / INVALID_ARGUMENT with a
precise message, never a 500, a hang or a crash, and the server keeps serving afterwards.

The server runs under an address-space cap, so a regression of the gzip bomb fails this test
instead of eating the machine.
"""

from __future__ import annotations

import gzip
import json
import struct
from collections.abc import Iterator
from urllib.parse import quote

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from serving.examples import write_repository
from serving.grpc import grpc_service_pb2 as pb
from serving.grpc import grpc_service_pb2_grpc as pb_grpc
from tests.integration.server_process import ServerProcess

pytestmark = pytest.mark.integration

LIMIT = 8 << 20  # --max-request-size
MEMORY = 4 << 30  # the server's address space; an idle server takes about 1.1 GiB


@pytest.fixture(scope="module")
def hostile_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = tmp_path_factory.mktemp("hostile-repo")
    write_repository(repo, ["identity_uint8", "identity_fp32", "identity_fp64", "identity_bytes"])
    proc = ServerProcess(
        repo, "--max-request-size", str(LIMIT),
        log_dir=tmp_path_factory.mktemp("hostile-logs"), memory_limit=MEMORY,
    )  # fmt: skip
    yield proc
    proc.stop()


@pytest.fixture
def http(hostile_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=hostile_server.http_url, timeout=60) as client:
        yield client
    _still_serving(hostile_server)


def _still_serving(server: ServerProcess) -> None:
    assert server.alive(), server.log()[-3000:]
    ok = httpx.post(
        f"{server.http_url}/v2/models/identity_fp32/infer",
        json={"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]},
        timeout=30,
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["outputs"][0]["data"] == [1.0, 2.0]


def _error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    return response.json()["error"]


def _uint8_header(size: int) -> bytes:
    return json.dumps(
        {"inputs": [{"name": "INPUT0", "datatype": "UINT8", "shape": [1, size],
                     "parameters": {"binary_data_size": size}}],
         "parameters": {"binary_data_output": True}}
    ).encode()  # fmt: skip


def _post_binary(http: httpx.Client, header: bytes, body: bytes, **headers: str) -> httpx.Response:
    return http.post(
        "/v2/models/identity_uint8/infer",
        content=body,
        headers={"Inference-Header-Content-Length": str(len(header)), **headers},
    )


# ---------------------------------------------------------------- defect 1: gzip members


def test_concatenated_gzip_members_inflate_once_each(http: httpx.Client) -> None:
    """Three 1 MiB members in 3 KB: answered with exactly 3 MiB, not 22 GB and a kill."""
    zeros = gzip.compress(b"\x00" * (1 << 20))
    header = _uint8_header(3 << 20)
    body = gzip.compress(header) + zeros * 3
    assert len(body) < 4096
    response = _post_binary(http, header, body, **{"Content-Encoding": "gzip"})
    assert response.status_code == 200, response.text
    length = int(response.headers["inference-header-content-length"])
    assert response.content[length:] == b"\x00" * (3 << 20)


def test_legal_two_member_body_is_not_413(http: httpx.Client) -> None:
    data = np.random.default_rng(1).integers(0, 255, 263_000, dtype=np.uint8).tobytes()
    header = _uint8_header(len(data))
    body = gzip.compress(header + data[:131_000]) + gzip.compress(data[131_000:])
    response = _post_binary(http, header, body, **{"Content-Encoding": "gzip"})
    assert response.status_code == 200, response.text
    length = int(response.headers["inference-header-content-length"])
    assert response.content[length:] == data


def test_gzip_bomb_past_the_limit_is_413(http: httpx.Client) -> None:
    zeros = gzip.compress(b"\x00" * (1 << 20))
    response = http.post(
        "/v2/models/identity_uint8/infer",
        content=zeros * 9,
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert _error(response, 413) == (
        f"decompressed request body is larger than the limit of {LIMIT} bytes"
    )


def test_empty_gzip_members_are_bounded(http: httpx.Client) -> None:
    response = http.post(
        "/v2/models/identity_uint8/infer",
        content=gzip.compress(b"") * 100_000,
        headers={"Content-Encoding": "gzip"},
    )
    assert _error(response, 400) == (
        f"gzip request body has more than {LIMIT >> 14} members (one per 16 KiB of the "
        f"{LIMIT}-byte limit, at least 64 are allowed)"
    )


# ---------------------------------------------------------------- defect 6: 500s that are 400s


def _json_infer(
    http: httpx.Client, body: bytes | str, model: str = "identity_fp32"
) -> httpx.Response:
    content = body.encode() if isinstance(body, str) else body
    return http.post(f"/v2/models/{model}/infer", content=content)


def _fp32(shape: list[int], data: str = "[]", datatype: str = "FP32") -> str:
    return (
        f'{{"inputs":[{{"name":"INPUT0","datatype":"{datatype}","shape":{json.dumps(shape)},'
        f'"data":{data}}}]}}'
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (_fp32([1, 1], "[" * 50_000 + "]" * 50_000),
         "malformed JSON request: nested too deeply to parse"),
        (_fp32([1, 1], "[" + "7" * 5000 + "]"),
         "malformed JSON request: Exceeds the limit (4300 digits) for integer string "
         "conversion: value has 5000 digits"),
        (_fp32([1] * 65, "[1]"), "input 'INPUT0': shape has 65 dimensions; at most 64 are allowed"),
        (_fp32([0, 2**62, 2**62]),
         "input 'INPUT0': shape [0, 4611686018427387904, 4611686018427387904] is too large: its "
         "non-zero dimensions multiply to more than 2**60 - 1 elements"),
    ],
    ids=["deep", "digits", "dims", "zero-times-huge"],
)  # fmt: skip
def test_json_that_crashed_the_decoder(http: httpx.Client, body: str, message: str) -> None:
    assert _error(_json_infer(http, body), 400) == message


def test_bytes_count_beyond_the_data(http: httpx.Client) -> None:
    header = json.dumps(
        {"inputs": [{"name": "INPUT0", "datatype": "BYTES", "shape": [1, 2**40],
                     "parameters": {"binary_data_size": 7}}]}
    ).encode()  # fmt: skip
    response = http.post(
        "/v2/models/identity_bytes/infer",
        content=header + struct.pack("<I", 3) + b"abc",
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert _error(response, 400) == (
        "input 'INPUT0': BYTES element 1 at offset 7: truncated length prefix "
        "(0 bytes left, need 4)"
    )


# ---------------------------------------------------------------- defect 8: loose parsing


@pytest.mark.parametrize("model", ["identity_fp32", "identity_fp64"])
def test_number_past_a_double_is_refused_like_1e39(http: httpx.Client, model: str) -> None:
    datatype = "FP32" if model == "identity_fp32" else "FP64"
    message = _error(_json_infer(http, _fp32([1, 1], "[1e309]", datatype), model), 400)
    assert message == (
        "malformed JSON request: the number 1e309 is out of range of a 64-bit float "
        "(write NaN, Infinity or -Infinity for non-finite values)"
    )


def test_non_finite_values_travel_as_triton_writes_them(http: httpx.Client) -> None:
    response = _json_infer(http, _fp32([1, 3], "[NaN, Infinity, -Infinity]"))
    assert response.status_code == 200, response.text
    assert b'"data":[NaN,Infinity,-Infinity]' in response.content


@pytest.mark.parametrize("version", ["\u0661", "1_0", "+1", " 1", "-1", "1.0"])
def test_version_strings_are_ascii_digits(http: httpx.Client, version: str) -> None:
    response = http.post(
        f"/v2/models/identity_fp32/versions/{quote(version)}/infer",
        content=_fp32([1, 1], "[1]"),
    )
    assert _error(response, 400) == f"model version {version!r} is not a number"


def test_version_with_a_leading_zero_is_still_a_number(http: httpx.Client) -> None:
    response = http.post("/v2/models/identity_fp32/versions/01/infer", content=_fp32([1, 1], "[1]"))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("value", ["+117", "1_1_7", "\u0661\u0661\u0667", "1 17"])
def test_header_length_is_ascii_digits(http: httpx.Client, value: str) -> None:
    response = http.post(
        "/v2/models/identity_fp32/infer",
        content=_fp32([1, 1], "[1]").encode(),
        headers={"Inference-Header-Content-Length": value.encode()},  # type: ignore[dict-item]
    )
    message = _error(response, 400)
    assert message.startswith("Inference-Header-Content-Length ")
    assert message.endswith(" is not a non-negative integer")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\xc1", "malformed msgpack request: a reserved or unknown type byte"),
        (b"\x91" * 2000 + b"\x90",
         "malformed msgpack request: nested too deeply (more than 1024 levels)"),
    ],
)  # fmt: skip
def test_msgpack_errors_say_why(http: httpx.Client, body: bytes, message: str) -> None:
    response = http.post(
        "/v2/models/identity_fp32/infer",
        content=body,
        headers={"Content-Type": "application/msgpack"},
    )
    assert _error(response, 400) == message


# ---------------------------------------------------------------- gRPC: INVALID_ARGUMENT


@pytest.fixture
def stub(hostile_server: ServerProcess) -> Iterator[pb_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(hostile_server.grpc_url) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)
    client = grpcclient.InferenceServerClient(hostile_server.grpc_url)
    try:
        data = np.array([[1.5, 2.5]], dtype=np.float32)
        inp = grpcclient.InferInput("INPUT0", [1, 2], "FP32")
        inp.set_data_from_numpy(data)
        np.testing.assert_array_equal(
            client.infer("identity_fp32", [inp]).as_numpy("OUTPUT0"), data
        )
    finally:
        client.close()


def _grpc_request(
    datatype: str, shape: list[int], raw: bytes | None, version: str = ""
) -> pb.ModelInferRequest:
    model = {"BYTES": "identity_bytes", "UINT8": "identity_uint8"}.get(datatype, "identity_fp32")
    msg = pb.ModelInferRequest(model_name=model, model_version=version)
    tensor = msg.inputs.add(name="INPUT0", datatype=datatype, shape=shape)
    if raw is None:
        tensor.contents.fp32_contents.extend([])
    else:
        msg.raw_input_contents.append(raw)
    return msg


@pytest.mark.parametrize(
    ("msg", "message"),
    [
        (_grpc_request("FP32", [1] * 65, b"\0\0\0\0"),
         "input 'INPUT0': shape has 65 dimensions; at most 64 are allowed"),
        (_grpc_request("FP32", [0, 2**62, 2**62], None),
         "input 'INPUT0': shape [0, 4611686018427387904, 4611686018427387904] is too large: its "
         "non-zero dimensions multiply to more than 2**60 - 1 elements"),
        (_grpc_request("FP32", [0, 2**62, 2**62], b""),
         "input 'INPUT0': shape [0, 4611686018427387904, 4611686018427387904] is too large: its "
         "non-zero dimensions multiply to more than 2**60 - 1 elements"),
        (_grpc_request("BYTES", [1, 2**40], struct.pack("<I", 1) + b"a"),
         "input 'INPUT0': BYTES element 1 at offset 5: truncated length prefix "
         "(0 bytes left, need 4)"),
        (_grpc_request("FP32", [1, 1], b"\0\0\0\0", version="\u0661"),
         "model version '\u0661' is not a number"),
        (_grpc_request("FP32", [1, 1], b"\0\0\0\0", version="1_0"),
         "model version '1_0' is not a number"),
    ],
    ids=["dims", "zero-times-huge-typed", "zero-times-huge-raw", "bytes-count", "arabic-version",
         "underscore-version"],
)  # fmt: skip
def test_grpc_invalid_argument_not_internal(
    stub: pb_grpc.GRPCInferenceServiceStub, msg: pb.ModelInferRequest, message: str
) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(msg)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    assert info.value.details() == message


@pytest.mark.parametrize(
    "method", ["ModelInfer", "ModelMetadata", "ModelConfig", "RepositoryIndex"]
)
def test_grpc_undecodable_unary_request_is_invalid_argument(
    stub: pb_grpc.GRPCInferenceServiceStub, hostile_server: ServerProcess, method: str
) -> None:
    """Bytes that are no protobuf message (a field header promising more bytes than follow)
    are answered INVALID_ARGUMENT with the reason, not grpcio's UNKNOWN."""
    with grpc.insecure_channel(hostile_server.grpc_url) as channel:
        call = channel.unary_unary(
            f"/inference.GRPCInferenceService/{method}",
            request_serializer=None,
            response_deserializer=None,
        )
        with pytest.raises(grpc.RpcError) as info:
            call(b"\x0a\xff\xff\xff\x0f" + b"x" * 8)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    assert info.value.details().startswith("cannot decode the ")


@pytest.mark.parametrize(
    "path", ["/v2/repository/index", "/v2/systemsharedmemory/region/r/register"]
)
def test_deep_json_on_other_routes_is_400(http: httpx.Client, path: str) -> None:
    """Every route reads JSON through the infer route's parser: deep nesting is a 400 there too."""
    body = '{"a":' + "[" * 50_000 + "]" * 50_000 + "}"
    response = http.post(path, content=body)
    assert _error(response, 400) == "malformed JSON request: nested too deeply to parse"


def test_grpc_request_over_the_size_limit_is_resource_exhausted(
    hostile_server: ServerProcess,
) -> None:
    """--max-request-size holds on gRPC as on HTTP: one message cannot take unbounded memory,
    while a message under it (larger than gRPC's 4 MB default) is served."""
    unlimited = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    with grpc.insecure_channel(hostile_server.grpc_url, options=unlimited) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        under = _grpc_request("UINT8", [1, LIMIT // 2], bytes(LIMIT // 2))
        answer = stub.ModelInfer(under)
        assert answer.raw_output_contents[0] == bytes(LIMIT // 2)
        over = _grpc_request("UINT8", [1, LIMIT + 1], bytes(LIMIT + 1))
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(over)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, info.value.details()
    assert str(LIMIT) in info.value.details()
