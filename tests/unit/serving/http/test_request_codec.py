from __future__ import annotations

import asyncio
import concurrent.futures
import gzip
import json
import struct
import threading
import zlib
from typing import Any

import msgpack
import numpy as np
import pytest
import tritonclient.http as triton

from serving.errors import InvalidArgument, PayloadTooLarge, Unsupported
from serving.http.request_codec import (
    RawInputSpec,
    decode_body,
    decode_body_async,
    decode_infer_request,
    parse_header_length,
)
from serving.types import UNRESOLVED


def decode(body: bytes, content_type: str | None = None, header_length: int | None = None, **kw):
    return decode_infer_request(
        body,
        model_name="m",
        model_version="1",
        content_type=content_type,
        header_length=header_length,
        **kw,
    )


def triton_body(inputs, outputs=None, **kwargs) -> tuple[bytes, int | None]:
    """The exact body tritonclient would POST."""
    return triton.InferenceServerClient.generate_request_body(inputs, outputs, **kwargs)


def triton_input(name: str, arr: np.ndarray, datatype: str, binary: bool) -> triton.InferInput:
    tensor = triton.InferInput(name, list(arr.shape), datatype)
    tensor.set_data_from_numpy(arr, binary_data=binary)
    return tensor


def lp(*items: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(x)) + x for x in items)


ARRAYS = {
    "BOOL": np.array([[True, False], [False, True]]),
    "UINT8": np.array([[0, 255], [1, 2]], np.uint8),
    "UINT16": np.array([[0, 65535], [1, 2]], np.uint16),
    "UINT32": np.array([[0, 2**32 - 1], [1, 2]], np.uint32),
    "UINT64": np.array([[0, 2**64 - 1], [1, 2]], np.uint64),
    "INT8": np.array([[-128, 127], [1, 2]], np.int8),
    "INT16": np.array([[-(2**15), 2**15 - 1], [1, 2]], np.int16),
    "INT32": np.array([[-(2**31), 2**31 - 1], [1, 2]], np.int32),
    "INT64": np.array([[-(2**63), 2**63 - 1], [1, 2]], np.int64),
    "FP32": np.array([[0.5, -1.5], [1e30, 2]], np.float32),
    "FP64": np.array([[0.1, -1e300], [1, 2]], np.float64),
    "BYTES": np.array([[b"a", "é".encode()], [b"", b"\x00\xff"]], dtype=object),
}
FP16 = np.array([[0.5, -1.5], [65504, 2]], np.float16)


# ---------------------------------------------------------------- decode_body

PAYLOAD = b'{"inputs": []}' * 100


@pytest.mark.parametrize(
    ("encoding", "encoded"),
    [
        (None, PAYLOAD),
        ("identity", PAYLOAD),
        ("gzip", gzip.compress(PAYLOAD)),
        ("GZIP", gzip.compress(PAYLOAD)),
        ("x-gzip", gzip.compress(PAYLOAD)),
        ("deflate", zlib.compress(PAYLOAD)),
    ],
)
def test_decode_body(encoding, encoded):
    assert decode_body(encoded, encoding, 10_000) == PAYLOAD


def test_decode_body_raw_deflate():
    packer = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    encoded = packer.compress(PAYLOAD) + packer.flush()
    assert decode_body(encoded, "deflate", 10_000) == PAYLOAD


def test_decode_body_concatenated_gzip_members():
    encoded = gzip.compress(b"hello ") + gzip.compress(b"world")
    assert decode_body(encoded, "gzip", 100) == b"hello world"


def test_decode_body_exactly_at_limit():
    assert decode_body(gzip.compress(PAYLOAD), "gzip", len(PAYLOAD)) == PAYLOAD


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_decode_body_zip_bomb(encoding):
    bomb = b"\x00" * (64 << 20)
    encoded = gzip.compress(bomb) if encoding == "gzip" else zlib.compress(bomb)
    assert len(encoded) < 1 << 20
    with pytest.raises(PayloadTooLarge) as info:
        decode_body(encoded, encoding, 1 << 20)
    assert info.value.message == (
        "decompressed request body is larger than the limit of 1048576 bytes"
    )


def test_decode_body_identity_over_limit():
    with pytest.raises(PayloadTooLarge, match="larger than the limit of 10 bytes"):
        decode_body(b"x" * 11, None, 10)


@pytest.mark.parametrize(
    ("encoding", "encoded", "message"),
    [
        ("gzip", b"not gzip at all", "malformed gzip request body: Error -3"),
        ("gzip", gzip.compress(PAYLOAD)[:-12], "malformed gzip request body: the stream is "
         "truncated"),
        ("gzip", b"", "malformed gzip request body: the stream is truncated"),
        ("deflate", zlib.compress(PAYLOAD) + b"junk", "malformed deflate request body: 4 bytes "
         "after the end of the stream"),
    ],
)  # fmt: skip
def test_decode_body_malformed(encoding, encoded, message):
    with pytest.raises(InvalidArgument) as info:
        decode_body(encoded, encoding, 10_000)
    assert info.value.message.startswith(message)


def test_decode_body_unknown_encoding():
    with pytest.raises(Unsupported) as info:
        decode_body(b"x", "br", 100)
    assert info.value.message == (
        "unsupported Content-Encoding 'br'; expected gzip, deflate or identity"
    )


# ---------------------------------------------------------------- JSON


@pytest.mark.parametrize("datatype", list(ARRAYS))
def test_json_request_from_tritonclient(datatype):
    arr = ARRAYS[datatype]
    if datatype == "BYTES":  # JSON carries text only
        arr = np.array([[b"a", "é".encode()], [b"", b"z z"]], dtype=object)
    body, header_length = triton_body([triton_input("x", arr, datatype, binary=False)])
    assert header_length is None
    request = decode(body, "application/json", header_length)
    (tensor,) = request.inputs
    assert (tensor.name, tensor.datatype, tensor.shape) == ("x", datatype, (2, 2))
    np.testing.assert_array_equal(tensor.data, arr)
    assert tensor.data.dtype == (object if datatype == "BYTES" else arr.dtype)


def test_json_request_fields():
    body, _ = triton_body(
        [triton_input("a", ARRAYS["FP32"], "FP32", binary=False)],
        [triton.InferRequestedOutput("y", binary_data=False), triton.InferRequestedOutput("z")],
        request_id="req-1",
        priority=2,
        parameters={"custom": "v"},
    )
    request = decode(body)
    assert (request.model_name, request.model_version, request.id) == ("m", "1", "req-1")
    assert dict(request.parameters) == {"priority": 2, "custom": "v"}
    assert [(o.name, dict(o.parameters)) for o in request.outputs] == [
        ("y", {"binary_data": False}),
        ("z", {"binary_data": True}),
    ]


def test_json_nested_data_and_input_parameters():
    body = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": [2, 3],
                    "datatype": "INT32",
                    "parameters": {"note": 1},
                    "data": [[1, 2, 3], [4, 5, 6]],
                }
            ]
        }
    ).encode()
    (tensor,) = decode(body, "application/json; charset=utf-8").inputs
    assert tensor.data.tolist() == [[1, 2, 3], [4, 5, 6]]
    assert dict(tensor.parameters) == {"note": 1}


def test_form_content_type_is_read_as_json():
    # `curl -d` sends application/x-www-form-urlencoded; Triton reads the body as JSON anyway.
    body = b'{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1.5]}]}'
    (tensor,) = decode(body, "application/x-www-form-urlencoded").inputs
    assert tensor.data.tolist() == [1.5]


def test_json_element_error_names_the_input():
    body = b'{"inputs":[{"name":"x","shape":[2,3],"datatype":"FP32","data":[1,2,3,4,5]}]}'
    with pytest.raises(InvalidArgument) as info:
        decode(body)
    assert info.value.message == "input 'x': expected 6 elements for shape [2, 3], got 5"


# ---------------------------------------------------------------- binary extension


@pytest.mark.parametrize("datatype", [*ARRAYS, "FP16"])
def test_binary_request_from_tritonclient(datatype):
    arr = FP16 if datatype == "FP16" else ARRAYS[datatype]
    body, header_length = triton_body([triton_input("x", arr, datatype, binary=True)])
    request = decode(body, None, header_length)
    (tensor,) = request.inputs
    assert tensor.shape == (2, 2) and tensor.datatype == datatype
    np.testing.assert_array_equal(tensor.data, arr)
    assert dict(tensor.parameters) == {}


def test_binary_and_json_inputs_mixed_in_order():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.array([b"xy", b"z"], dtype=object)
    c = np.array([7, 8], dtype=np.int64)
    body, header_length = triton_body(
        [
            triton_input("a", a, "FP32", binary=True),
            triton_input("j", c, "INT64", binary=False),
            triton_input("b", b, "BYTES", binary=True),
        ]
    )
    request = decode(body, "application/octet-stream", header_length)
    got = {t.name: t.data for t in request.inputs}
    np.testing.assert_array_equal(got["a"], a)
    assert got["b"].tolist() == [b"xy", b"z"]
    assert got["j"].tolist() == [7, 8]


def test_binary_bf16_by_hand():
    words = np.array([0x3F80, 0xC000], dtype="<u2")  # 1.0, -2.0 in bfloat16
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": [2],
                    "datatype": "BF16",
                    "parameters": {"binary_data_size": 4},
                }
            ]
        }
    ).encode()
    (tensor,) = decode(header + words.tobytes(), None, len(header)).inputs
    assert tensor.datatype == "BF16" and tensor.data.tolist() == [0x3F80, 0xC000]


def _binary_request(inputs: list[dict[str, Any]], tail: bytes) -> tuple[bytes, int]:
    header = json.dumps({"inputs": inputs}).encode()
    return header + tail, len(header)


def _fp32(name: str, size: int, shape: list[int]) -> dict[str, Any]:
    return {
        "name": name,
        "shape": shape,
        "datatype": "FP32",
        "parameters": {"binary_data_size": size},
    }


BINARY_ERRORS = [
    (
        [_fp32("x", 8, [2])],
        b"\x00" * 4,
        "input 'x': binary_data_size 8 overruns the binary section (4 bytes left)",
    ),
    (
        [_fp32("x", 8, [2])],
        b"\x00" * 12,
        "4 bytes of binary data after the JSON header are not claimed by any input's "
        "binary_data_size",
    ),
    (
        [_fp32("x", 8, [2]), _fp32("y", 8, [2])],
        b"\x00" * 12,
        "input 'y': binary_data_size 8 overruns the binary section (4 bytes left)",
    ),
    (
        [_fp32("x", 8, [3])],
        b"\x00" * 8,
        "input 'x': expected 12 bytes of FP32 data for shape [3], got 8",
    ),
    (
        [_fp32("x", -8, [2])],
        b"\x00" * 8,
        "input 'x': binary_data_size must be a non-negative integer, got -8",
    ),
    (
        [_fp32("x", "8", [2])],
        b"\x00" * 8,
        "input 'x': binary_data_size must be a non-negative integer, got '8'",
    ),
    (
        [{**_fp32("x", 8, [2]), "data": [1.0, 2.0]}],
        b"\x00" * 8,
        "input 'x' has both 'data' and parameters.binary_data_size",
    ),
    (
        [{"name": "s", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": 9}}],
        lp(b"abc") + b"xx",
        "input 's': BYTES element 1 at offset 7: truncated length prefix (2 bytes left, need 4)",
    ),
    (
        [{"name": "b", "shape": [2], "datatype": "BOOL", "parameters": {"binary_data_size": 2}}],
        b"\x01\x07",
        "input 'b': BOOL element 1 has byte value 7; expected 0 or 1",
    ),
]


@pytest.mark.parametrize(("inputs", "tail", "message"), BINARY_ERRORS)
def test_binary_request_errors(inputs, tail, message):
    body, header_length = _binary_request(inputs, tail)
    with pytest.raises(InvalidArgument) as info:
        decode(body, None, header_length)
    assert info.value.message == message


@pytest.mark.parametrize("header_length", [-1, 1000])
def test_header_length_out_of_range(header_length):
    body, _ = _binary_request([_fp32("x", 4, [1])], b"\x00" * 4)
    with pytest.raises(InvalidArgument) as info:
        decode(body, None, header_length)
    assert info.value.message == (
        f"Inference-Header-Content-Length {header_length} is out of range for a "
        f"{len(body)}-byte body"
    )


def test_header_length_cutting_the_json():
    body, header_length = _binary_request([_fp32("x", 4, [1])], b"\x00" * 4)
    with pytest.raises(InvalidArgument, match=r"^malformed JSON request: "):
        decode(body, None, header_length - 3)


def test_binary_data_size_without_header_length():
    body, _ = _binary_request([_fp32("x", 4, [1])], b"")
    with pytest.raises(InvalidArgument) as info:
        decode(body)
    assert info.value.message == (
        "input 'x' has binary_data_size but the request has no binary section "
        "(Inference-Header-Content-Length header missing)"
    )


# ---------------------------------------------------------------- raw binary


def test_raw_body():
    arr = np.arange(6, dtype=np.float32)
    spec = RawInputSpec("x", "FP32", (1, 6))
    request = decode(arr.tobytes(), "application/octet-stream", 0, raw_input=spec)
    (tensor,) = request.inputs
    assert (tensor.name, tensor.datatype, tensor.shape) == ("x", "FP32", (1, 6))
    np.testing.assert_array_equal(tensor.data, arr.reshape(1, 6))
    assert dict(request.parameters) == {"binary_data_output": True}
    assert request.outputs == ()


def test_raw_body_fills_one_variable_dimension():
    spec = RawInputSpec("x", "INT16", (1, -1, 2))
    (tensor,) = decode(np.arange(8, dtype="<i2").tobytes(), None, 0, raw_input=spec).inputs
    assert tensor.shape == (1, 4, 2)
    assert tensor.data.reshape(-1).tolist() == list(range(8))


def test_raw_body_bytes_input():
    spec = RawInputSpec("s", "BYTES", (1, 1))
    (tensor,) = decode(lp(b"hello raw"), None, 0, raw_input=spec).inputs
    assert tensor.data.tolist() == [[b"hello raw"]]


@pytest.mark.parametrize(
    ("spec", "body", "message"),
    [
        (
            None,
            b"\x00" * 4,
            "Inference-Header-Content-Length: 0 sends the whole body as the raw bytes of a single "
            "input, but model 'm' does not have exactly one input",
        ),
        (
            RawInputSpec("x", "FP32", (1, 3)),
            b"\x00" * 8,
            "input 'x': expected 12 bytes of FP32 data for shape [1, 3], got 8",
        ),
        (
            RawInputSpec("x", "FP32", (1, -1, 3)),
            b"\x00" * 8,
            "input 'x': a raw body of 8 bytes does not fit shape [1, -1, 3] of FP32",
        ),
        (
            RawInputSpec("x", "FP32", (-1, -1)),
            b"\x00" * 8,
            "input 'x' has shape [-1, -1]: a raw body can fill at most one variable dimension, "
            "and only of a fixed-size datatype",
        ),
    ],
)
def test_raw_body_errors(spec, body, message):
    with pytest.raises(InvalidArgument) as info:
        decode(body, None, 0, raw_input=spec)
    assert info.value.message == message


# ---------------------------------------------------------------- msgpack


def test_msgpack_request_bin_and_array_data():
    half = FP16.reshape(-1)
    body = msgpack.packb(
        {
            "id": "mp",
            "parameters": {"binary_data_output": True},
            "inputs": [
                {"name": "h", "shape": [4], "datatype": "FP16", "data": half.tobytes()},
                {"name": "n", "shape": [2, 2], "datatype": "INT32", "data": [[1, 2], [3, 4]]},
                {"name": "s", "shape": [2], "datatype": "BYTES", "data": lp(b"ab", b"\xff")},
                {"name": "t", "shape": [2], "datatype": "BYTES", "data": ["é", b"\x00"]},
            ],
            "outputs": [{"name": "y", "parameters": {"binary_data": False}}],
        },
        use_bin_type=True,
    )
    request = decode(body, "application/msgpack")
    got = {t.name: t for t in request.inputs}
    np.testing.assert_array_equal(got["h"].data, half)
    assert got["n"].data.tolist() == [[1, 2], [3, 4]]
    assert got["s"].data.tolist() == [b"ab", b"\xff"]
    assert got["t"].data.tolist() == ["é".encode(), b"\x00"]
    assert request.id == "mp" and dict(request.parameters) == {"binary_data_output": True}
    assert [o.name for o in request.outputs] == ["y"]


def test_msgpack_x_content_type():
    body = msgpack.packb({"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [2]}]})
    (tensor,) = decode(body, "application/x-msgpack; charset=binary").inputs
    assert tensor.data.tolist() == [2.0]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (
            {"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": b"\x00" * 4}]},
            "input 'x': expected 8 bytes of FP32 data for shape [2], got 4",
        ),
        (
            {"inputs": [{"name": "x", "shape": [2], "datatype": "FP16", "data": [1.0, 2.0]}]},
            "input 'x': FP16 data cannot travel as JSON numbers; send it in binary form "
            "(binary_data_size, or msgpack bin)",
        ),
        (
            {"inputs": [_fp32("x", 8, [2])]},
            "input 'x': msgpack requests carry tensor bytes in 'data' as bin, not with "
            "binary_data_size",
        ),
        ([1, 2], "the request must be an object, got a list"),
    ],
)
def test_msgpack_errors(payload, message):
    with pytest.raises(InvalidArgument) as info:
        decode(msgpack.packb(payload, use_bin_type=True), "application/msgpack")
    assert info.value.message == message


@pytest.mark.parametrize("body", [b"\xc1", msgpack.packb({"inputs": []}) + b"\x01", b"\x82\xa2id"])
def test_msgpack_malformed(body):
    with pytest.raises(InvalidArgument, match=r"^malformed msgpack request: "):
        decode(body, "application/msgpack")


# ---------------------------------------------------------------- malformed structure


def _input(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"name": "x", "shape": [1], "datatype": "FP32", "data": [1.0]}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}


STRUCTURE_ERRORS = [
    (["inputs"], "the request must be an object, got a list"),
    ({}, "the request has no 'inputs'"),
    ({"inputs": {"x": 1}}, "'inputs' must be a list, got an object"),
    ({"inputs": [5]}, "inputs[0] must be an object, got a number"),
    ({"inputs": [_input(name=...)]}, "inputs[0] needs a non-empty string 'name'"),
    ({"inputs": [_input(name="")]}, "inputs[0] needs a non-empty string 'name'"),
    ({"inputs": [_input(name=3)]}, "inputs[0] needs a non-empty string 'name'"),
    ({"inputs": [_input(datatype=...)]}, "input 'x' has no 'datatype'"),
    (
        {"inputs": [_input(datatype="FLOAT")]},
        "input 'x': unknown datatype 'FLOAT'; expected one of BOOL, UINT8, UINT16, UINT32, "
        "UINT64, INT8, INT16, INT32, INT64, FP16, FP32, FP64, BF16, BYTES",
    ),
    ({"inputs": [_input(shape=...)]}, "input 'x' has no 'shape'"),
    ({"inputs": [_input(shape=1)]}, "input 'x': 'shape' must be a list of integers, got a number"),
    (
        {"inputs": [_input(shape=[1, -1])]},
        "input 'x': 'shape' entries must be non-negative integers, got [1, -1]",
    ),
    (
        {"inputs": [_input(shape=[1.0])]},
        "input 'x': 'shape' entries must be non-negative integers, got [1.0]",
    ),
    (
        {"inputs": [_input(shape=[True])]},
        "input 'x': 'shape' entries must be non-negative integers, got [true]",
    ),
    (
        {"inputs": [_input(data=...)]},
        "input 'x' has neither 'data' nor parameters.binary_data_size",
    ),
    ({"inputs": [_input(), _input()]}, "input 'x' appears more than once"),
    (
        {"inputs": [_input(parameters=[1])]},
        "input 'x': 'parameters' must be an object, got a list",
    ),
    ({"id": 5, "inputs": [_input()]}, "'id' must be a string, got a number"),
    ({"id": None, "inputs": [_input()]}, "'id' must be a string, got null"),
    (
        {"parameters": "x", "inputs": [_input()]},
        "the request: 'parameters' must be an object, got a string",
    ),
    ({"outputs": {"name": "y"}, "inputs": [_input()]}, "'outputs' must be a list, got an object"),
    ({"outputs": ["y"], "inputs": [_input()]}, "outputs[0] must be an object, got a string"),
    ({"outputs": [{}], "inputs": [_input()]}, "outputs[0] needs a non-empty string 'name'"),
    (
        {"outputs": [{"name": "y"}, {"name": "y"}], "inputs": [_input()]},
        "output 'y' is requested more than once",
    ),
    (
        {"outputs": [{"name": "y", "parameters": 1}], "inputs": [_input()]},
        "output 'y': 'parameters' must be an object, got a number",
    ),
]


@pytest.mark.parametrize(
    ("payload", "message"), STRUCTURE_ERRORS, ids=[m for _, m in STRUCTURE_ERRORS]
)
@pytest.mark.parametrize("form", ["json", "msgpack"])
def test_malformed_structure(payload, message, form):
    if form == "json":
        body, content_type = json.dumps(payload).encode(), "application/json"
    else:
        body, content_type = msgpack.packb(payload), "application/msgpack"
    with pytest.raises(InvalidArgument) as info:
        decode(body, content_type)
    assert info.value.message == message


def test_shared_memory_input_without_byte_size():
    payload = {"inputs": [_input(data=..., parameters={"shared_memory_region": "r"})]}
    with pytest.raises(InvalidArgument, match="no shared_memory_byte_size"):
        decode(json.dumps(payload).encode())


def test_shared_memory_input_is_left_to_the_core():
    params = {"shared_memory_region": "r", "shared_memory_offset": 8, "shared_memory_byte_size": 8}
    payload = {"inputs": [_input(data=..., shape=[2], parameters=params)]}
    request = decode(json.dumps(payload).encode())
    assert request.shared_memory_inputs
    assert request.inputs[0].data is UNRESOLVED  # InferenceCore.infer reads it
    assert request.inputs[0].parameters == params
    assert not decode(json.dumps({"inputs": [_input()]}).encode()).shared_memory_inputs


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "malformed JSON request: Expecting value: line 1 column 1 (char 0)"),
        (b'{"inputs": [', "malformed JSON request: Expecting value: line 1 column 13 (char 12)"),
        (b'{"inputs": []}x', "malformed JSON request: Extra data: line 1 column 15 (char 14)"),
        (b'{"id": "\xff"}', "malformed JSON request: the body is not valid UTF-8"),
    ],
)
def test_malformed_json(body, message):
    with pytest.raises(InvalidArgument) as info:
        decode(body)
    assert info.value.message == message


# ---------------------------------------------------------------- hostile bodies (issue 8)


def test_decode_body_two_legal_members_fill_the_limit():
    """Two gzip members that inflate to exactly the limit pass (263 KB was a false 413)."""
    first, second = b"a" * 131_072, bytes(range(256)) * 520
    encoded = gzip.compress(first) + gzip.compress(second)
    assert decode_body(encoded, "gzip", len(first) + len(second)) == first + second


def test_decode_body_concatenated_bombs_stop_at_the_limit():
    member = gzip.compress(b"\x00" * (1 << 20))
    assert len(member) * 3 < 4096
    assert decode_body(member * 3, "gzip", 3 << 20) == b"\x00" * (3 << 20)
    with pytest.raises(PayloadTooLarge) as info:
        decode_body(member * 3, "gzip", (3 << 20) - 1)
    assert info.value.message == (
        "decompressed request body is larger than the limit of 3145727 bytes"
    )


def test_decode_body_many_members_in_one_chunk():
    parts = [bytes([i]) * i for i in range(40)]
    assert decode_body(b"".join(gzip.compress(p) for p in parts), "gzip", 1000) == b"".join(parts)


def test_decode_body_member_count_is_bounded():
    """Every member costs a new inflater, so empty members cannot be repeated for free."""
    empty = gzip.compress(b"")
    assert decode_body(empty * 64, "gzip", 1000) == b""
    with pytest.raises(InvalidArgument) as info:
        decode_body(empty * 65, "gzip", 1000)
    assert info.value.message == (
        "gzip request body has more than 64 members (one per 16 KiB of the 1000-byte limit, "
        "at least 64 are allowed)"
    )
    assert decode_body(empty * 128, "gzip", 128 << 14) == b""


def test_decode_body_large_input_in_chunks():
    """Incompressible input larger than several steps comes back exactly."""
    data = np.random.default_rng(8).bytes(1 << 20)
    encoded = gzip.compress(data, compresslevel=1) + gzip.compress(b"tail")
    assert decode_body(encoded, "gzip", len(data) + 4) == data + b"tail"


class _HeldExecutor(concurrent.futures.ThreadPoolExecutor):
    """The loop's default executor, holding each job until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self.release = threading.Event()
        self.jobs = 0

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.jobs += 1

        def held():  # type: ignore[no-untyped-def]
            assert self.release.wait(30)
            return fn(*args, **kwargs)

        return super().submit(held)


def test_decode_body_async_inflates_large_bodies_off_the_loop():
    """While a large body inflates, the loop keeps serving: other work finishes first."""
    data = np.random.default_rng(9).bytes(4 << 20)
    encoded = gzip.compress(data, compresslevel=1)

    async def scenario() -> tuple[bool, bytes, int]:
        executor = _HeldExecutor()
        asyncio.get_running_loop().set_default_executor(executor)
        inflating = asyncio.create_task(decode_body_async(encoded, "gzip", len(data)))
        health = asyncio.create_task(asyncio.sleep(0, result="ready"))
        assert await health == "ready"
        pending = not inflating.done()
        executor.release.set()
        return pending, await inflating, executor.jobs

    pending, body, jobs = asyncio.run(scenario())
    assert pending and jobs == 1
    assert body == data


def test_decode_body_async_small_body_stays_on_the_loop():
    async def scenario() -> tuple[bytes, int]:
        executor = _HeldExecutor()
        asyncio.get_running_loop().set_default_executor(executor)
        body = await decode_body_async(gzip.compress(PAYLOAD), "gzip", len(PAYLOAD))
        return body, executor.jobs

    assert asyncio.run(scenario()) == (PAYLOAD, 0)


def test_decode_body_async_identity_and_errors():
    assert asyncio.run(decode_body_async(b"abc", None, 3)) == b"abc"
    with pytest.raises(PayloadTooLarge):
        asyncio.run(decode_body_async(b"abcd", "identity", 3))
    with pytest.raises(InvalidArgument, match=r"^malformed gzip request body: "):
        asyncio.run(decode_body_async(b"not gzip", "gzip", 100))


@pytest.mark.parametrize(("raw", "value"), [("117", 117), ("0", 0), (" 42\t", 42), ("007", 7)])
def test_parse_header_length(raw, value):
    assert parse_header_length(raw) == value


@pytest.mark.parametrize(
    "raw", [" +1_1_7 ", "+117", "1_17", "-1", "\u0661\u0661\u0667", "1 17", "", "0x10", "1e2"]
)
def test_parse_header_length_refuses_what_int_would_take(raw):
    with pytest.raises(InvalidArgument) as info:
        parse_header_length(raw)
    assert info.value.message == (
        f"Inference-Header-Content-Length {raw!r} is not a non-negative integer"
    )


def test_parse_header_length_out_of_range():
    with pytest.raises(InvalidArgument) as info:
        parse_header_length("9" * 5000)
    assert info.value.message.endswith("is out of range")


def _json_input(datatype: str, literal: str, count: int = 1) -> bytes:
    return (
        f'{{"inputs":[{{"name":"x","datatype":"{datatype}","shape":[{count}],'
        f'"data":[{literal}]}}]}}'
    ).encode()


@pytest.mark.parametrize("datatype", ["FP32", "FP64"])
@pytest.mark.parametrize("literal", ["1e309", "-1e309", "1" * 400 + ".5", "2E+0400"])
def test_json_number_too_large_for_a_double_is_refused(datatype, literal):
    """1e309 is out of range for every float datatype, as 1e39 is for FP32."""
    with pytest.raises(InvalidArgument) as info:
        decode(_json_input(datatype, literal))
    assert info.value.message.startswith("malformed JSON request: the number ")
    assert info.value.message.endswith(
        "is out of range of a 64-bit float (write NaN, Infinity or -Infinity for non-finite values)"
    )


def test_json_fp32_out_of_range_names_the_element():
    with pytest.raises(InvalidArgument) as info:
        decode(_json_input("FP32", "1, 1e39", 2))
    assert info.value.message == "input 'x': FP32 element 1 value 1e+39 is out of range for FP32"


@pytest.mark.parametrize("datatype", ["FP32", "FP64"])
def test_json_non_finite_tokens_are_values(datatype):
    """Triton reads NaN, Infinity and -Infinity (rapidjson's kParseNanAndInfFlag); so does Sluice."""
    request = decode(_json_input(datatype, "NaN, Infinity, -Infinity, 3e38, 2e-400", 5))
    data = request.inputs[0].data
    assert np.isnan(data[0]) and data[1] == np.inf and data[2] == -np.inf
    assert np.isfinite(data[3]) and data[4] == 0.0


def test_json_exponent_in_a_string_keeps_the_fast_path_answer():
    request = decode(
        b'{"id":"e999","inputs":[{"name":"x","datatype":"FP64","shape":[1],"data":[1.5e300]}]}'
    )
    assert request.id == "e999" and request.inputs[0].data[0] == 1.5e300


def test_json_integer_of_too_many_digits():
    with pytest.raises(InvalidArgument) as info:
        decode(_json_input("INT64", "9" * 5000))
    assert info.value.message == (
        "malformed JSON request: Exceeds the limit (4300 digits) for integer string "
        "conversion: value has 5000 digits"
    )


@pytest.mark.parametrize("where", ["data", "parameters"])
def test_json_nested_too_deeply(where):
    deep = "[" * 100_000 + "]" * 100_000
    body = (
        '{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":' + deep + "}]}"
        if where == "data"
        else '{"parameters":{"p":' + deep + '},"inputs":[]}'
    )
    with pytest.raises(InvalidArgument) as info:
        decode(body.encode())
    assert info.value.message == "malformed JSON request: nested too deeply to parse"


@pytest.mark.parametrize("form", ["json", "msgpack"])
def test_shape_with_too_many_dims(form):
    payload = {"inputs": [_input(shape=[1] * 65, data=[1.0])]}
    body = json.dumps(payload).encode() if form == "json" else msgpack.packb(payload)
    with pytest.raises(InvalidArgument) as info:
        decode(body, "application/msgpack" if form == "msgpack" else None)
    assert info.value.message == "input 'x': shape has 65 dimensions; at most 64 are allowed"


@pytest.mark.parametrize(
    ("shape", "datatype"), [([0, 2**62, 2**62], "FP32"), ([0, 10**30], "BYTES"), ([2**64], "INT8")]
)
def test_shape_too_large_in_the_binary_extension(shape, datatype):
    header = json.dumps(
        {"inputs": [{"name": "x", "datatype": datatype, "shape": shape,
                     "parameters": {"binary_data_size": 0}}]}
    ).encode()  # fmt: skip
    with pytest.raises(InvalidArgument) as info:
        decode(header, "application/octet-stream", len(header))
    assert info.value.message == (
        f"input 'x': shape [{', '.join(map(str, shape))}] is too large: its non-zero dimensions "
        "multiply to more than 2**60 - 1 elements"
    )


def test_bytes_count_larger_than_the_data():
    header = json.dumps(
        {"inputs": [{"name": "x", "datatype": "BYTES", "shape": [2**40],
                     "parameters": {"binary_data_size": 4}}]}
    ).encode()  # fmt: skip
    with pytest.raises(InvalidArgument) as info:
        decode(header + b"\0\0\0\0", "application/octet-stream", len(header))
    assert info.value.message == (
        "input 'x': BYTES element 1 at offset 4: truncated length prefix (0 bytes left, need 4)"
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\xc1", "malformed msgpack request: a reserved or unknown type byte"),
        (b"\x81\xc1\x01", "malformed msgpack request: a reserved or unknown type byte"),
        (b"\x91" * 2000 + b"\x90", "malformed msgpack request: nested too deeply (more than "
         "1024 levels)"),
    ],
)  # fmt: skip
def test_msgpack_errors_always_say_why(body, message):
    with pytest.raises(InvalidArgument) as info:
        decode(body, "application/msgpack")
    assert info.value.message == message
