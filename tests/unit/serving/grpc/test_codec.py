from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pytest

from serving.datatypes import by_name
from serving.errors import InvalidArgument
from serving.grpc import codec
from serving.grpc import grpc_service_pb2 as pb
from serving.types import UNRESOLVED, InferOutput, InferRequest, InferResponse, RequestedOutput

TYPED = {
    "BOOL": ("bool_contents", [True, False, True]),
    "INT8": ("int_contents", [-128, 0, 127]),
    "INT16": ("int_contents", [-32768, 1, 32767]),
    "INT32": ("int_contents", [-(2**31), 2, 2**31 - 1]),
    "INT64": ("int64_contents", [-(2**63), 3, 2**63 - 1]),
    "UINT8": ("uint_contents", [0, 1, 255]),
    "UINT16": ("uint_contents", [0, 1, 65535]),
    "UINT32": ("uint_contents", [0, 1, 2**32 - 1]),
    "UINT64": ("uint64_contents", [0, 1, 2**64 - 1]),
    "FP32": ("fp32_contents", [0.5, -1.25, 3.0]),
    "FP64": ("fp64_contents", [0.1, -2.5, 1e300]),
    "BYTES": ("bytes_contents", [b"a", b"", b"\xff\x00"]),
}


def _request(*inputs: pb.ModelInferRequest.InferInputTensor, raw=()) -> pb.ModelInferRequest:
    msg = pb.ModelInferRequest(model_name="m", model_version="2", id="req")
    msg.inputs.extend(inputs)
    msg.raw_input_contents.extend(raw)
    return msg


def _tensor(name="x", datatype="FP32", shape=(3,), **contents) -> Any:
    t = pb.ModelInferRequest.InferInputTensor(name=name, datatype=datatype, shape=shape)
    for field, values in contents.items():
        getattr(t.contents, field).extend(values)
    return t


@pytest.mark.parametrize("datatype", list(TYPED))
def test_typed_contents_of_every_datatype(datatype: str) -> None:
    field, values = TYPED[datatype]
    request = codec.decode_infer_request(_request(_tensor(datatype=datatype, **{field: values})))
    got = request.inputs[0].data
    assert got.shape == (3,)
    if datatype == "BYTES":
        assert list(got) == values
    else:
        assert got.dtype == by_name(datatype).numpy
        np.testing.assert_array_equal(got, np.array(values, dtype=got.dtype))


def test_raw_contents_are_a_view_not_a_copy() -> None:
    raw = np.arange(6, dtype=np.float32).tobytes()
    request = codec.decode_infer_request(_request(_tensor(shape=(2, 3)), raw=[raw]))
    data = request.inputs[0].data
    np.testing.assert_array_equal(data, np.arange(6).reshape(2, 3))
    assert not data.flags.owndata  # np.frombuffer over the message's bytes
    assert request.model_name == "m" and request.model_version == "2" and request.id == "req"


def test_raw_bytes_tensor() -> None:
    raw = b"".join(struct.pack("<I", len(x)) + x for x in (b"ab", b"", b"xyz"))
    request = codec.decode_infer_request(_request(_tensor(datatype="BYTES"), raw=[raw]))
    assert list(request.inputs[0].data) == [b"ab", b"", b"xyz"]


def test_parameters_become_a_plain_dict() -> None:
    msg = _request(_tensor(fp32_contents=[1, 2, 3]))
    msg.parameters["priority"].int64_param = 2
    msg.parameters["timeout"].uint64_param = 1000
    msg.parameters["flag"].bool_param = True
    msg.parameters["label"].string_param = "s"
    msg.parameters["ratio"].double_param = 0.5
    msg.outputs.add(name="y").parameters["binary_data"].bool_param = True
    request = codec.decode_infer_request(msg)
    assert dict(request.parameters) == {
        "priority": 2, "timeout": 1000, "flag": True, "label": "s", "ratio": 0.5,
    }  # fmt: skip
    assert request.outputs == (RequestedOutput("y", {"binary_data": True}),)


@pytest.mark.parametrize(
    ("msg", "message"),
    [
        (_request(_tensor(), raw=[b"\x00" * 8]), "expected 12 bytes of FP32 data for shape [3], got 8"),
        (_request(_tensor(), _tensor("z"), raw=[b"\x00" * 12]), "fewer than the inputs"),
        (_request(_tensor(), raw=[b"\x00" * 12, b""]), "has 2 entries but 1 inputs take one"),
        (_request(_tensor(datatype="BYTES", shape=(1,)), raw=[b"\x05\x00\x00\x00ab"]), "overruns"),
        (_request(_tensor(fp32_contents=[1.0])), "needs 3 elements, contents.fp32_contents has 1"),
        (_request(_tensor()), "has no data"),
        (_request(_tensor(int_contents=[1, 2, 3])), "travels in contents.fp32_contents, not int_contents"),
        (_request(_tensor(datatype="INT8", int_contents=[1, 200, 3])), "element 1 (200) is out of range for INT8"),
        (_request(_tensor(datatype="FP16")), "FP16 has no typed contents"),
        (_request(_tensor(datatype="FP17")), "unknown datatype 'FP17'"),
        (_request(_tensor(shape=(-1,))), "negative dimension"),
        (_request(_tensor(fp32_contents=[1, 2, 3]), _tensor(fp32_contents=[1, 2, 3])), "more than once"),
        (_request(_tensor(name="")), "inputs[0] needs a non-empty name"),
        (_request(_tensor(fp32_contents=[1, 2, 3]), raw=[b"\x00" * 12]), "typed contents while"),
    ],
)  # fmt: skip
def test_malformed_requests(msg: pb.ModelInferRequest, message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        codec.decode_infer_request(msg)
    assert message in info.value.message


def test_shared_memory_input_is_left_to_the_core() -> None:
    tensor = _tensor()
    tensor.parameters["shared_memory_region"].string_param = "r"
    tensor.parameters["shared_memory_offset"].int64_param = 4
    tensor.parameters["shared_memory_byte_size"].int64_param = 12
    # raw_input_contents cover only the inputs that are not in shared memory
    other = _tensor("z", datatype="INT32", shape=(1,))
    msg = _request(tensor, other, raw=[struct.pack("<i", 9)])
    request = codec.decode_infer_request(msg)
    assert request.shared_memory_inputs
    assert request.inputs[0].data is UNRESOLVED  # InferenceCore.infer reads it
    assert request.inputs[0].parameters["shared_memory_offset"] == 4
    assert request.inputs[1].data.tolist() == [9]
    assert not codec.decode_infer_request(_request(other, raw=[b"\0" * 4])).shared_memory_inputs


def test_response_is_raw_in_output_order() -> None:
    request = InferRequest("m", (), id="req")
    response = InferResponse(
        "m", "1",
        (InferOutput("b", "BYTES", (2,), np.array([b"x", b"yz"], dtype=object)),
         InferOutput("a", "FP16", (2,), np.array([1.5, 2], dtype=np.float16))),
        parameters={"sequence_end": True},
    )  # fmt: skip
    msg = codec.encode_infer_response(response, request)
    assert [o.name for o in msg.outputs] == ["b", "a"]
    assert msg.id == "req" and msg.model_version == "1"
    assert msg.raw_output_contents[0] == b"\x01\x00\x00\x00x\x02\x00\x00\x00yz"
    assert np.frombuffer(msg.raw_output_contents[1], np.float16).tolist() == [1.5, 2.0]
    assert msg.parameters["sequence_end"].bool_param is True
    assert list(msg.outputs[1].shape) == [2] and not msg.outputs[1].HasField("contents")


def test_response_output_in_shared_memory() -> None:
    params = {"shared_memory_region": "r", "shared_memory_byte_size": 64}
    request = InferRequest("m", (), outputs=(RequestedOutput("a", params), RequestedOutput("b")))
    out = (InferOutput("a", "FP32", (2,), np.zeros(2, np.float32)),
           InferOutput("b", "FP32", (1,), np.ones(1, np.float32)))  # fmt: skip
    where = {"shared_memory_region": "r", "shared_memory_offset": 0, "shared_memory_byte_size": 8}
    response = InferResponse("m", "1", out, placed={"a": where})  # as the core answers
    msg = codec.encode_infer_response(response, request)
    placed = codec.parameters_to_dict(msg.outputs[0].parameters)
    assert placed == {"shared_memory_region": "r", "shared_memory_offset": 0,
                      "shared_memory_byte_size": 8}  # fmt: skip
    assert list(msg.raw_output_contents) == [b"", np.ones(1, np.float32).tobytes()]
    only = InferRequest("m", (), outputs=(RequestedOutput("a", params),))
    msg = codec.encode_infer_response(InferResponse("m", "1", out[:1], placed={"a": where}), only)
    assert len(msg.raw_output_contents) == 0


def test_statistics_message() -> None:
    stats = {"model_stats": [{"name": "m", "version": "1", "last_inference": 5,
             "inference_count": 3, "execution_count": 2,
             "inference_stats": {"success": {"count": 2, "ns": 10}},
             "batch_stats": [{"batch_size": 2, "compute_infer": {"count": 1, "ns": 4}}]}]}  # fmt: skip
    msg = codec.encode_statistics(stats)
    entry = msg.model_stats[0]
    assert entry.inference_count == 3 and entry.inference_stats.success.ns == 10
    assert entry.batch_stats[0].compute_infer.count == 1


def test_load_request_parameters_become_plain_values() -> None:
    msg = pb.RepositoryModelLoadRequest(model_name="m")
    assert codec.parameters_to_dict(msg.parameters) == {}
    msg.parameters["config"].string_param = '{"max_batch_size": 2}'
    msg.parameters["file:1/model.onnx"].bytes_param = b"x"
    assert codec.parameters_to_dict(msg.parameters) == {
        "config": '{"max_batch_size": 2}',
        "file:1/model.onnx": b"x",
    }


# The shapes numpy cannot hold answered INTERNAL before; each is INVALID_ARGUMENT now.
IMPOSSIBLE_SHAPES = [
    ((1,) * 65, "input 'x': shape has 65 dimensions; at most 64 are allowed"),
    (
        (0, 2**62, 2**62),
        "input 'x': shape [0, 4611686018427387904, 4611686018427387904] is too large: its "
        "non-zero dimensions multiply to more than 2**60 - 1 elements",
    ),
]


@pytest.mark.parametrize(("shape", "message"), IMPOSSIBLE_SHAPES)
@pytest.mark.parametrize("form", ["raw", "typed"])
def test_impossible_shapes_are_invalid_arguments(form: str, shape, message: str) -> None:
    if form == "raw":
        msg = _request(_tensor(shape=shape), raw=[b""])
    else:
        msg = _request(_tensor(shape=shape, fp32_contents=[]))
    with pytest.raises(InvalidArgument) as info:
        codec.decode_infer_request(msg)
    assert info.value.message == message


def test_bytes_count_larger_than_the_raw_data() -> None:
    msg = _request(_tensor(datatype="BYTES", shape=(2**40,)), raw=[struct.pack("<I", 1) + b"a"])
    with pytest.raises(InvalidArgument) as info:
        codec.decode_infer_request(msg)
    assert info.value.message == (
        "input 'x': BYTES element 1 at offset 5: truncated length prefix (0 bytes left, need 4)"
    )


def test_bytes_count_larger_than_the_typed_data() -> None:
    msg = _request(_tensor(datatype="BYTES", shape=(2**40,), bytes_contents=[b"a"]))
    with pytest.raises(InvalidArgument) as info:
        codec.decode_infer_request(msg)
    assert info.value.message == (
        "input 'x': shape [1099511627776] needs 1099511627776 elements, contents.bytes_contents "
        "has 1"
    )
