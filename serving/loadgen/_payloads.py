"""Pre-encoded requests: HTTP/1.1 requests (JSON or binary tensors) and gRPC messages.

Everything is encoded once before a run, so the load generators only write bytes.
The gRPC messages are written straight in protobuf wire format (the Open Inference
Protocol's ``ModelInferRequest`` / ``ModelInferResponse`` field numbers), so the suite
depends on no generated code, Sluice's or anyone's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = [
    "GRPC_INFER_METHOD",
    "binary_infer_body",
    "grpc_infer_request",
    "grpc_infer_response",
    "http_request",
    "json_infer_body",
    "wire_datatype",
]

GRPC_INFER_METHOD = "/inference.GRPCInferenceService/ModelInfer"

_WIRE = {
    np.dtype(np.float32): "FP32",
    np.dtype(np.float64): "FP64",
    np.dtype(np.float16): "FP16",
    np.dtype(np.int64): "INT64",
    np.dtype(np.int32): "INT32",
    np.dtype(np.int8): "INT8",
    np.dtype(np.uint8): "UINT8",
    np.dtype(np.bool_): "BOOL",
}


def wire_datatype(array: np.ndarray) -> str:
    try:
        return _WIRE[array.dtype]
    except KeyError:
        raise ValueError(f"no wire datatype for numpy {array.dtype}") from None


def http_request(
    host: str,
    port: int,
    path: str,
    body: bytes,
    headers: Mapping[str, str] | None = None,
) -> bytes:
    """A complete keep-alive HTTP/1.1 POST request."""
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def json_infer_body(inputs: Mapping[str, np.ndarray]) -> tuple[bytes, dict[str, str]]:
    """Open Inference Protocol JSON body with flat ``data``; outputs come back as JSON."""
    doc = {
        "inputs": [
            {
                "name": name,
                "shape": list(arr.shape),
                "datatype": wire_datatype(arr),
                "data": arr.reshape(-1).tolist(),
            }
            for name, arr in inputs.items()
        ]
    }
    body = json.dumps(doc, separators=(",", ":")).encode()
    return body, {"Content-Type": "application/json"}


def binary_infer_body(
    inputs: Mapping[str, np.ndarray], outputs: Sequence[str]
) -> tuple[bytes, dict[str, str]]:
    """Binary tensor extension body: JSON header, then raw input bytes; outputs binary."""
    header = {
        "inputs": [
            {
                "name": name,
                "shape": list(arr.shape),
                "datatype": wire_datatype(arr),
                "parameters": {"binary_data_size": arr.nbytes},
            }
            for name, arr in inputs.items()
        ],
        "outputs": [{"name": name, "parameters": {"binary_data": True}} for name in outputs],
    }
    head = json.dumps(header, separators=(",", ":")).encode()
    body = head + b"".join(np.ascontiguousarray(a).tobytes() for a in inputs.values())
    return body, {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(head)),
    }


# -- protobuf wire format ---------------------------------------------------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _shape(number: int, shape: Sequence[int]) -> bytes:
    """A packed ``repeated int64`` field."""
    return _field(number, b"".join(_varint(int(d)) for d in shape))


def _tensor(name: str, datatype: str, shape: Sequence[int]) -> bytes:
    # InferInputTensor and InferOutputTensor share: name = 1, datatype = 2, shape = 3
    return _field(1, name.encode()) + _field(2, datatype.encode()) + _shape(3, shape)


def grpc_infer_request(
    model: str, inputs: Mapping[str, np.ndarray], outputs: Sequence[str]
) -> bytes:
    """A serialized ``ModelInferRequest`` with ``raw_input_contents``."""
    msg = _field(1, model.encode())  # model_name = 1
    for name, arr in inputs.items():
        msg += _field(5, _tensor(name, wire_datatype(arr), arr.shape))  # inputs = 5
    for name in outputs:
        msg += _field(6, _field(1, name.encode()))  # outputs = 6 { name = 1 }
    for arr in inputs.values():
        msg += _field(7, np.ascontiguousarray(arr).tobytes())  # raw_input_contents = 7
    return msg


def grpc_infer_response(model: str, outputs: Mapping[str, np.ndarray]) -> bytes:
    """A serialized ``ModelInferResponse`` with ``raw_output_contents`` (fixed answers)."""
    msg = _field(1, model.encode()) + _field(2, b"1")  # model_name = 1, model_version = 2
    for name, arr in outputs.items():
        msg += _field(5, _tensor(name, wire_datatype(arr), arr.shape))  # outputs = 5
    for arr in outputs.values():
        msg += _field(6, np.ascontiguousarray(arr).tobytes())  # raw_output_contents = 6
    return msg
