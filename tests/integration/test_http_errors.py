"""Bad input gets a precise error and the right status, and the server keeps serving."""

from __future__ import annotations

import gzip
import json
import struct
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgpack
import numpy as np
import pytest

from tests.integration.server_process import ServerProcess

pytestmark = pytest.mark.integration


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.http_url, timeout=30) as c:
        yield c
    # Whatever a test sent, the server is still up and still answers correctly.
    assert server.alive()
    ok = httpx.post(
        f"{server.http_url}/v2/models/identity_int32/infer",
        json={"inputs": [{"name": "INPUT0", "datatype": "INT32", "shape": [1, 2], "data": [1, 2]}]},
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["outputs"][0]["data"] == [1, 2]


def _error(response: httpx.Response, status: int, *fragments: str) -> str:
    assert response.status_code == status, response.text
    message = response.json()["error"]
    for fragment in fragments:
        assert fragment in message, message
    return message


def _simple_input(
    name: str = "INPUT0", shape: list[int] | None = None, datatype: str = "INT32"
) -> dict:
    shape = shape or [1, 16]
    return {"name": name, "datatype": datatype, "shape": shape, "data": [0] * int(np.prod(shape))}


def test_malformed_json(http: httpx.Client) -> None:
    r = http.post(
        "/v2/models/simple/infer",
        content=b'{"inputs": [',
        headers={"Content-Type": "application/json"},
    )
    _error(r, 400, "JSON")


def test_malformed_msgpack(http: httpx.Client) -> None:
    r = http.post(
        "/v2/models/simple/infer",
        content=b"\xc1\xc1\xc1",
        headers={"Content-Type": "application/msgpack"},
    )
    _error(r, 400, "msgpack")


def test_wrong_input_name(http: httpx.Client) -> None:
    body = {"inputs": [_simple_input("INPUT0"), _simple_input("NOPE")]}
    _error(http.post("/v2/models/simple/infer", json=body), 400, "NOPE")


def test_wrong_shape(http: httpx.Client) -> None:
    body = {"inputs": [_simple_input("INPUT0", [1, 15]), _simple_input("INPUT1", [1, 15])]}
    _error(http.post("/v2/models/simple/infer", json=body), 400, "INPUT0", "[1, 15]")


def test_batch_over_max_batch_size(http: httpx.Client) -> None:
    body = {"inputs": [_simple_input("INPUT0", [9, 16]), _simple_input("INPUT1", [9, 16])]}
    _error(http.post("/v2/models/simple/infer", json=body), 400, "batch size 9")


def test_wrong_datatype(http: httpx.Client) -> None:
    body = {"inputs": [_simple_input("INPUT0", datatype="INT64"), _simple_input("INPUT1")]}
    _error(http.post("/v2/models/simple/infer", json=body), 400, "INT64", "INT32")


def test_unknown_datatype(http: httpx.Client) -> None:
    body = {"inputs": [_simple_input("INPUT0", datatype="FLOAT99"), _simple_input("INPUT1")]}
    _error(http.post("/v2/models/simple/infer", json=body), 400, "FLOAT99")


def test_missing_input(http: httpx.Client) -> None:
    body = {"inputs": [_simple_input("INPUT0")]}
    _error(http.post("/v2/models/simple/infer", json=body), 400, "INPUT1")


def test_data_count_disagrees_with_shape(http: httpx.Client) -> None:
    bad = _simple_input("INPUT0")
    bad["data"] = bad["data"][:-1]
    body = {"inputs": [bad, _simple_input("INPUT1")]}
    _error(http.post("/v2/models/simple/infer", json=body), 400, "INPUT0")


def test_wrong_element_type(http: httpx.Client) -> None:
    bad = _simple_input("INPUT0")
    bad["data"][3] = "seven"
    _error(
        http.post("/v2/models/simple/infer", json={"inputs": [bad, _simple_input("INPUT1")]}),
        400,
        "INPUT0",
    )


def test_unknown_output(http: httpx.Client) -> None:
    body = {
        "inputs": [_simple_input("INPUT0"), _simple_input("INPUT1")],
        "outputs": [{"name": "OUTPUT9"}],
    }
    _error(http.post("/v2/models/simple/infer", json=body), 400, "OUTPUT9")


def test_unknown_model_and_version(http: httpx.Client) -> None:
    body = {"inputs": [_simple_input("INPUT0"), _simple_input("INPUT1")]}
    _error(http.post("/v2/models/no_such_model/infer", json=body), 404, "no_such_model")
    _error(http.post("/v2/models/simple/versions/9/infer", json=body), 404, "version 9")
    _error(http.get("/v2/models/no_such_model"), 404, "no_such_model")
    _error(http.get("/v2/models/simple/versions/abc"), 400, "abc")
    _error(http.get("/v2/nothing/here"), 404)


def _binary_request(
    header: dict, chunks: list[bytes], header_length: int | None = None
) -> tuple[bytes, dict]:
    head = json.dumps(header).encode()
    length = len(head) if header_length is None else header_length
    return head + b"".join(chunks), {"Inference-Header-Content-Length": str(length),
                                     "Content-Type": "application/octet-stream"}  # fmt: skip


def test_header_length_out_of_range(http: httpx.Client) -> None:
    body, headers = _binary_request({"inputs": []}, [], header_length=10_000)
    _error(
        http.post("/v2/models/simple/infer", content=body, headers=headers),
        400,
        "Inference-Header-Content-Length",
    )
    headers["Inference-Header-Content-Length"] = "-3"
    _error(http.post("/v2/models/simple/infer", content=body, headers=headers), 400)
    headers["Inference-Header-Content-Length"] = "many"
    _error(http.post("/v2/models/simple/infer", content=body, headers=headers), 400, "many")


def test_binary_size_disagrees_with_shape(http: httpx.Client) -> None:
    a = np.zeros((1, 16), dtype=np.int32).tobytes()
    header = {"inputs": [
        {"name": "INPUT0", "datatype": "INT32", "shape": [1, 16], "parameters": {"binary_data_size": 60}},
        {"name": "INPUT1", "datatype": "INT32", "shape": [1, 16], "parameters": {"binary_data_size": 64}},
    ]}  # fmt: skip
    body, headers = _binary_request(header, [a[:60], a])
    _error(http.post("/v2/models/simple/infer", content=body, headers=headers), 400, "INPUT0")


def test_binary_chunks_shorter_than_declared(http: httpx.Client) -> None:
    a = np.zeros((1, 16), dtype=np.int32).tobytes()
    header = {"inputs": [
        {"name": "INPUT0", "datatype": "INT32", "shape": [1, 16], "parameters": {"binary_data_size": 64}},
        {"name": "INPUT1", "datatype": "INT32", "shape": [1, 16], "parameters": {"binary_data_size": 64}},
    ]}  # fmt: skip
    body, headers = _binary_request(header, [a, a[:10]])
    _error(http.post("/v2/models/simple/infer", content=body, headers=headers), 400)


def test_bytes_length_prefix_overruns(http: httpx.Client) -> None:
    chunk = struct.pack("<I", 1000) + b"short"
    header = {"inputs": [{"name": "INPUT0", "datatype": "BYTES", "shape": [1, 1],
                          "parameters": {"binary_data_size": len(chunk)}}]}  # fmt: skip
    body, headers = _binary_request(header, [chunk])
    _error(
        http.post("/v2/models/identity_bytes/infer", content=body, headers=headers), 400, "INPUT0"
    )


def test_raw_binary_request(http: httpx.Client) -> None:
    x = np.arange(64, dtype=np.float32).reshape(1, 64)
    r = http.post(
        "/v2/models/mlp/infer",
        content=x.tobytes(),
        headers={"Inference-Header-Content-Length": "0"},
    )
    assert r.status_code == 200, r.text
    length = int(r.headers["inference-header-content-length"])
    header = json.loads(r.content[:length])
    assert header["outputs"][0]["parameters"]["binary_data_size"] == 40
    assert len(r.content) == length + 40
    # the same request with a wrongly sized body is refused
    r = http.post(
        "/v2/models/mlp/infer",
        content=x.tobytes()[:-4],
        headers={"Inference-Header-Content-Length": "0"},
    )
    _error(r, 400)


def test_raw_binary_needs_a_single_input_model(http: httpx.Client) -> None:
    r = http.post(
        "/v2/models/simple/infer",
        content=b"\x00" * 64,
        headers={"Inference-Header-Content-Length": "0"},
    )
    _error(r, 400, "one input")


def test_msgpack_request_and_response(http: httpx.Client) -> None:
    x = np.arange(6, dtype=np.int32).reshape(2, 3)
    body = msgpack.packb(
        {
            "id": "m1",
            "inputs": [
                {"name": "INPUT0", "datatype": "INT32", "shape": [2, 3], "data": x.tobytes()}
            ],
        }
    )
    r = http.post("/v2/models/identity_int32/infer", content=body,
                  headers={"Content-Type": "application/msgpack", "Accept": "application/msgpack"})  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/msgpack")
    answer = msgpack.unpackb(r.content)
    assert answer["id"] == "m1"
    out = answer["outputs"][0]
    assert out["shape"] == [2, 3]
    np.testing.assert_array_equal(np.frombuffer(out["data"], dtype="<i4").reshape(2, 3), x)


def test_gzip_bomb_is_refused(http: httpx.Client) -> None:
    bomb = gzip.compress(b"{" + b" " * (80 * 1024 * 1024) + b"}")
    r = http.post("/v2/models/simple/infer", content=bomb,
                  headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})  # fmt: skip
    _error(r, 413)


def test_broken_model_fails_alone(http: httpx.Client) -> None:
    index = http.post("/v2/repository/index", json={}).json()
    broken = [e for e in index if e["name"] == "broken"]
    assert broken and broken[0]["state"] == "UNAVAILABLE" and broken[0]["reason"]
    r = http.get("/v2/models/broken/ready")
    assert r.status_code == 503
    missing = [e for e in index if e["name"] == "missing_file"]
    assert missing and missing[0]["state"] == "UNAVAILABLE"
    assert "model.onnx" in missing[0]["reason"], missing
    assert http.get("/v2/models/missing_file/ready").status_code == 503
    assert any(e["name"] == "simple" and e["state"] == "READY" for e in index)


@pytest.fixture(scope="module")
def small_limit_server(
    example_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        example_repository, "--max-request-size", "4096", log_dir=tmp_path_factory.mktemp("small")
    )
    yield proc
    proc.stop()


def test_body_over_the_limit(small_limit_server: ServerProcess) -> None:
    url = f"{small_limit_server.http_url}/v2/models/identity_int32/infer"
    data = list(range(2000))
    body = {"inputs": [{"name": "INPUT0", "datatype": "INT32", "shape": [1, 2000], "data": data}]}
    r = httpx.post(url, json=body)
    _error(r, 413, "4096")
    # chunked upload without Content-Length is cut off too
    r = httpx.post(
        url, content=iter([json.dumps(body).encode()]), headers={"Content-Type": "application/json"}
    )
    _error(r, 413)
    small = {"inputs": [{"name": "INPUT0", "datatype": "INT32", "shape": [1, 2], "data": [5, 6]}]}
    assert httpx.post(url, json=small).json()["outputs"][0]["data"] == [5, 6]
