from __future__ import annotations

import gzip
import json
import struct
import zlib
from typing import Any

import msgpack
import numpy as np
import pytest
import tritonclient.http as triton

from serving.http.request_codec import decode_body
from serving.http.response_codec import (
    COMPRESS_THRESHOLD,
    encode_body,
    encode_error,
    encode_infer_response,
)
from serving.types import InferOutput, InferRequest, InferResponse, RequestedOutput

FP32 = np.arange(6, dtype=np.float32).reshape(2, 3)
TEXT = np.array([b"ab", "é".encode()], dtype=object)


def response(*outputs: InferOutput, id: str = "", **kw: Any) -> InferResponse:
    return InferResponse("m", "1", outputs, id=id, **kw)


def request(outputs: dict[str, bool | None] | None = None, **parameters: Any) -> InferRequest:
    requested = tuple(
        RequestedOutput(name, {} if binary is None else {"binary_data": binary})
        for name, binary in (outputs or {}).items()
    )
    return InferRequest("m", (), outputs=requested, parameters=parameters)


def triton_result(body: bytes, headers: dict[str, str]) -> triton.InferResult:
    """Parse the body the way tritonclient does."""
    header_length = headers.get("Inference-Header-Content-Length")
    return triton.InferenceServerClient.parse_response_body(
        body, header_length=None if header_length is None else int(header_length)
    )


Y = InferOutput("y", "FP32", (2, 3), FP32)
S = InferOutput("s", "BYTES", (2,), TEXT)


def test_json_response():
    body, headers = encode_infer_response(response(Y, S), request(), accept=None)
    assert headers == {"Content-Type": "application/json"}
    assert json.loads(body) == {
        "model_name": "m",
        "model_version": "1",
        "outputs": [
            {"name": "y", "datatype": "FP32", "shape": [2, 3], "data": [0, 1, 2, 3, 4, 5]},
            {"name": "s", "datatype": "BYTES", "shape": [2], "data": ["ab", "é"]},
        ],
    }
    result = triton_result(body, headers)
    np.testing.assert_array_equal(result.as_numpy("y"), FP32)
    assert result.as_numpy("s").tolist() == ["ab", "é"]  # tritonclient keeps JSON text as str


def test_binary_outputs_when_requested_per_output():
    body, headers = encode_infer_response(
        response(Y, S), request({"y": True, "s": False}), accept=None
    )
    assert headers["Content-Type"] == "application/octet-stream"
    header_length = int(headers["Inference-Header-Content-Length"])
    header = json.loads(body[:header_length])
    assert header["outputs"][0] == {
        "name": "y",
        "datatype": "FP32",
        "shape": [2, 3],
        "parameters": {"binary_data_size": 24},
    }
    assert "parameters" not in header["outputs"][1]
    assert body[header_length:] == FP32.tobytes()
    result = triton_result(body, headers)
    np.testing.assert_array_equal(result.as_numpy("y"), FP32)
    assert result.as_numpy("s").tolist() == ["ab", "é"]


def test_request_level_binary_data_output_with_per_output_override():
    body, headers = encode_infer_response(
        response(Y, S), request({"y": False, "s": None}, binary_data_output=True), accept=None
    )
    header_length = int(headers["Inference-Header-Content-Length"])
    header = json.loads(body[:header_length])
    assert "data" in header["outputs"][0]
    size = header["outputs"][1]["parameters"]["binary_data_size"]
    tail = body[header_length:]
    assert size == len(tail) == 4 + 2 + 4 + 2
    assert tail == struct.pack("<I", 2) + b"ab" + struct.pack("<I", 2) + "é".encode()
    assert triton_result(body, headers).as_numpy("s").tolist() == [b"ab", "é".encode()]


def test_binary_outputs_in_output_order():
    z = InferOutput("z", "INT64", (2,), np.array([7, -1], dtype=np.int64))
    body, headers = encode_infer_response(
        response(z, Y), request(binary_data_output=True), accept=None
    )
    result = triton_result(body, headers)
    assert result.as_numpy("z").tolist() == [7, -1]
    np.testing.assert_array_equal(result.as_numpy("y"), FP32)


@pytest.mark.parametrize("datatype", ["FP16", "BF16"])
def test_binary_only_datatypes_go_binary_even_when_json_asked(datatype):
    data = np.array([1, 2], dtype=np.float16 if datatype == "FP16" else "<u2")
    out = InferOutput("h", datatype, (2,), data)
    body, headers = encode_infer_response(response(out), request({"h": False}), accept=None)
    header_length = int(headers["Inference-Header-Content-Length"])
    assert json.loads(body[:header_length])["outputs"][0]["parameters"] == {"binary_data_size": 4}
    assert body[header_length:] == data.tobytes()


def test_every_datatype_round_trips_through_tritonclient():
    outputs = [
        InferOutput("b", "BOOL", (2,), np.array([True, False])),
        InferOutput("u8", "UINT8", (2,), np.array([0, 255], np.uint8)),
        InferOutput("u64", "UINT64", (1,), np.array([2**64 - 1], np.uint64)),
        InferOutput("i8", "INT8", (2,), np.array([-128, 127], np.int8)),
        InferOutput("i32", "INT32", (1,), np.array([-7], np.int32)),
        InferOutput("f64", "FP64", (1,), np.array([0.1])),
    ]
    for binary in (False, True):
        body, headers = encode_infer_response(
            response(*outputs), request(binary_data_output=binary), accept=None
        )
        result = triton_result(body, headers)
        for out in outputs:
            got = result.as_numpy(out.name)
            assert got.dtype == out.data.dtype, (out.name, binary)
            np.testing.assert_array_equal(got, out.data)


def test_id_echoed_only_when_given():
    body, _ = encode_infer_response(response(Y, id="abc"), request(), accept=None)
    assert json.loads(body)["id"] == "abc"
    body, _ = encode_infer_response(response(Y), request(), accept=None)
    assert "id" not in json.loads(body)


def test_response_parameters_included_when_present():
    body, _ = encode_infer_response(
        response(Y, parameters={"sequence_end": True}), request(), accept=None
    )
    assert json.loads(body)["parameters"] == {"sequence_end": True}


@pytest.mark.parametrize("accept", ["application/msgpack", "text/html, application/x-msgpack"])
def test_msgpack_response(accept):
    body, headers = encode_infer_response(response(Y, S, id="q"), request(), accept=accept)
    assert headers == {"Content-Type": "application/msgpack"}
    decoded = msgpack.unpackb(body)
    assert decoded["id"] == "q" and decoded["model_name"] == "m"
    y, s = decoded["outputs"]
    assert (y["name"], y["datatype"], y["shape"]) == ("y", "FP32", [2, 3])
    np.testing.assert_array_equal(np.frombuffer(y["data"], "<f4").reshape(y["shape"]), FP32)
    assert s["data"] == struct.pack("<I", 2) + b"ab" + struct.pack("<I", 2) + "é".encode()


@pytest.mark.parametrize("accept", [None, "*/*", "application/json", "application/msgpack;q=0"])
def test_non_msgpack_accept_gets_json(accept):
    _, headers = encode_infer_response(response(Y), request(), accept=accept)
    assert headers["Content-Type"] == "application/json"


def test_encode_error():
    assert json.loads(encode_error('bad "input"')) == {"error": 'bad "input"'}


# ---------------------------------------------------------------- Content-Encoding

BIG = json.dumps({"data": list(range(2000))}).encode()


@pytest.mark.parametrize(
    ("accept_encoding", "expected"),
    [
        ("gzip", "gzip"),
        ("deflate", "deflate"),
        ("deflate, gzip;q=0.5", "gzip"),
        ("gzip;q=0, deflate", "deflate"),
        ("*", "gzip"),
        ("gzip;q=0, *", "deflate"),
        ("identity", None),
        ("br", None),
        (None, None),
    ],
)
def test_encode_body(accept_encoding, expected):
    body, encoding = encode_body(BIG, accept_encoding)
    assert encoding == expected
    if expected is None:
        assert body == BIG
    else:
        assert len(body) < len(BIG)
        assert decode_body(body, encoding, len(BIG)) == BIG


def test_encode_body_leaves_small_bodies_alone():
    small = b"x" * (COMPRESS_THRESHOLD - 1)
    assert encode_body(small, "gzip") == (small, None)


def test_compressed_binary_response_parses_in_tritonclient():
    big = InferOutput("y", "FP32", (1000,), np.zeros(1000, np.float32))
    body, headers = encode_infer_response(
        response(big), request(binary_data_output=True), accept=None
    )
    compressed, encoding = encode_body(body, "gzip")
    assert encoding == "gzip" and gzip.decompress(compressed) == body
    result = triton.InferenceServerClient.parse_response_body(
        compressed,
        header_length=int(headers["Inference-Header-Content-Length"]),
        content_encoding="gzip",
    )
    np.testing.assert_array_equal(result.as_numpy("y"), big.data)


def test_deflate_body_is_zlib_format():
    body, _ = encode_body(BIG, "deflate")
    assert zlib.decompress(body) == BIG


@pytest.mark.parametrize("datatype", ["FP32", "FP64"])
def test_non_finite_outputs_are_written_as_triton_writes_them(datatype):
    """JSON has no NaN or infinity: like Triton (rapidjson's kWriteNanAndInfFlag), Sluice writes
    the tokens NaN, Infinity and -Infinity, which tritonclient and Sluice's own decoder read
    back; clients with a strict JSON parser ask for the output in binary form."""
    values = np.array([np.nan, np.inf, -np.inf, 1.5], dtype=datatype.replace("FP", "float"))
    out = InferOutput("y", datatype, (4,), values)
    body, headers = encode_infer_response(response(out), request(), accept=None)
    assert b'"data":[NaN,Infinity,-Infinity,1.5]' in body
    got = triton_result(body, headers).as_numpy("y")
    assert np.isnan(got[0]) and got[1] == np.inf and got[2] == -np.inf and got[3] == 1.5
    binary, binary_headers = encode_infer_response(response(out), request({"y": True}), accept=None)
    assert triton_result(binary, binary_headers).as_numpy("y").tobytes() == values.tobytes()
