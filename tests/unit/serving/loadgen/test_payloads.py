from __future__ import annotations

import json

import numpy as np
import pytest

from serving.loadgen import (
    binary_infer_body,
    grpc_infer_request,
    grpc_infer_response,
    http_request,
    json_infer_body,
)


def test_http_request_frames_the_body() -> None:
    raw = http_request("127.0.0.1", 8000, "/v2/models/m/infer", b"abc", {"X-A": "1"})
    head, body = raw.split(b"\r\n\r\n", 1)
    assert head.startswith(b"POST /v2/models/m/infer HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n")
    assert b"\r\nX-A: 1\r\n" in head + b"\r\n"
    assert head.endswith(b"Content-Length: 3")
    assert body == b"abc"


def test_json_body() -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    body, headers = json_infer_body({"INPUT0": x})
    doc = json.loads(body)
    assert doc == {
        "inputs": [
            {"name": "INPUT0", "shape": [2, 3], "datatype": "FP32", "data": [0, 1, 2, 3, 4, 5]}
        ]
    }
    assert headers["Content-Type"] == "application/json"


def test_binary_body_header_and_chunk() -> None:
    x = np.arange(4, dtype=np.float32).reshape(1, 4)
    body, headers = binary_infer_body({"INPUT0": x}, ["OUTPUT0"])
    n = int(headers["Inference-Header-Content-Length"])
    header = json.loads(body[:n])
    assert header["inputs"][0]["parameters"] == {"binary_data_size": 16}
    assert header["outputs"] == [{"name": "OUTPUT0", "parameters": {"binary_data": True}}]
    assert body[n:] == x.tobytes()


def test_grpc_messages_decode_as_the_protocol_defines_them() -> None:
    pb = pytest.importorskip("tritonclient.grpc.service_pb2")
    x = np.arange(64 * 3, dtype=np.float32).reshape(3, 64)
    request = pb.ModelInferRequest.FromString(
        grpc_infer_request("tiny", {"INPUT0": x}, ["OUTPUT0"])
    )
    assert request.model_name == "tiny"
    assert [(t.name, t.datatype, list(t.shape)) for t in request.inputs] == [
        ("INPUT0", "FP32", [3, 64])
    ]
    assert [o.name for o in request.outputs] == ["OUTPUT0"]
    assert np.frombuffer(request.raw_input_contents[0], np.float32).tolist() == x.ravel().tolist()

    y = np.ones((1, 300), dtype=np.float32)  # > 127 bytes: multi-byte varint lengths
    response = pb.ModelInferResponse.FromString(grpc_infer_response("tiny", {"OUTPUT0": y}))
    assert (response.model_name, response.model_version) == ("tiny", "1")
    assert [(t.name, t.datatype, list(t.shape)) for t in response.outputs] == [
        ("OUTPUT0", "FP32", [1, 300])
    ]
    assert response.raw_output_contents[0] == y.tobytes()
