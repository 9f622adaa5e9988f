"""Property-based tests of the gRPC request decoder (``serving.grpc.codec``).

Hypothesis builds ``ModelInferRequest`` messages from random fields, with tensors
in ``raw_input_contents`` or in typed ``contents``, and checks they decode to
exactly the tensors built; random fields, raw bytes and mutated serialized
messages must give a ``SluiceError`` with a message, never another exception.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from serving.datatypes import DATATYPES, DataType, by_name
from serving.errors import SluiceError
from serving.grpc import codec
from serving.grpc import grpc_service_pb2 as pb
from serving.types import InferRequest

BOUNDED = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# The typed contents field of each datatype that has one (FP16 and BF16 travel raw only).
TYPED_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
CONTENTS_FIELDS = sorted(set(TYPED_FIELD.values()))
TYPED = [by_name(n) for n in TYPED_FIELD]

names = st.text(min_size=1, max_size=6)
small_shapes = st.lists(st.integers(0, 3), max_size=3).map(tuple)
parameters = st.dictionaries(
    st.sampled_from(["x_tag", "x_count", "x_flag", "x_ratio"]),
    st.one_of(
        st.booleans(),
        st.integers(-(2**63), 2**63 - 1),
        st.text(max_size=6),
        st.floats(allow_nan=False),
    ),
    max_size=3,
)


def elements(datatype: DataType) -> st.SearchStrategy[Any]:
    if datatype.is_bytes:
        return st.binary(max_size=6)
    if datatype.numpy.kind == "f":
        return st.floats(width=datatype.numpy.itemsize * 8)
    return hnp.from_dtype(datatype.numpy)


@dataclass(frozen=True)
class Tensor:
    name: str
    datatype: DataType
    array: np.ndarray
    parameters: dict[str, Any]


@st.composite
def tensor_lists(draw: st.DrawFn, raw: bool) -> tuple[Tensor, ...]:
    tensors = []
    for name in draw(st.lists(names, min_size=1, max_size=3, unique=True)):
        datatype = draw(st.sampled_from(list(DATATYPES) if raw else TYPED))
        shape = draw(small_shapes)
        arr = draw(hnp.arrays(datatype.numpy, shape, elements=elements(datatype)))
        tensors.append(Tensor(name, datatype, arr, draw(parameters)))
    return tuple(tensors)


def set_parameters(target: Any, values: dict[str, Any]) -> None:
    codec.encode_parameters(values, target)


def raw_bytes(t: Tensor) -> bytes:
    if t.datatype.is_bytes:
        return b"".join(len(x).to_bytes(4, "little") + x for x in t.array.reshape(-1).tolist())
    return np.ascontiguousarray(t.array, dtype=t.datatype.numpy).tobytes()


@st.composite
def messages(draw: st.DrawFn) -> tuple[pb.ModelInferRequest, tuple[Tensor, ...], bool, Any]:
    raw = draw(st.booleans())
    tensors = draw(tensor_lists(raw))
    msg = pb.ModelInferRequest(
        model_name=draw(st.text(max_size=8)),
        model_version=draw(st.sampled_from(["", "1", "2"])),
        id=draw(st.text(max_size=8)),
    )
    set_parameters(msg.parameters, draw(parameters))
    for t in tensors:
        item = msg.inputs.add(name=t.name, datatype=t.datatype.name, shape=t.array.shape)
        set_parameters(item.parameters, t.parameters)
        if raw:
            msg.raw_input_contents.append(raw_bytes(t))
        else:
            getattr(item.contents, TYPED_FIELD[t.datatype.name]).extend(
                t.array.reshape(-1).tolist()
            )
    outputs = draw(st.lists(names, max_size=2, unique=True))
    for name in outputs:
        msg.outputs.add(name=name)
    return msg, tensors, raw, outputs


def assert_decodes_to(got: InferRequest, msg: pb.ModelInferRequest, tensors: tuple[Tensor, ...]):
    assert (got.model_name, got.model_version, got.id) == (
        msg.model_name,
        msg.model_version,
        msg.id,
    )
    assert dict(got.parameters) == codec.parameters_to_dict(msg.parameters)
    assert [o.name for o in got.outputs] == [o.name for o in msg.outputs]
    assert len(got.inputs) == len(tensors)
    for tensor, want in zip(got.inputs, tensors, strict=True):
        assert (tensor.name, tensor.datatype, tensor.shape) == (
            want.name,
            want.datatype.name,
            want.array.shape,
        )
        assert dict(tensor.parameters) == want.parameters
        assert tensor.data.shape == want.array.shape
        assert tensor.data.dtype == want.datatype.numpy
        if want.datatype.is_bytes:
            assert tensor.data.reshape(-1).tolist() == want.array.reshape(-1).tolist()
        else:
            assert tensor.data.tobytes() == want.array.tobytes()


def outcome(msg: pb.ModelInferRequest) -> InferRequest | None:
    """The decoded request, or None after a SluiceError with a message; anything else fails."""
    try:
        return codec.decode_infer_request(msg)
    except SluiceError as exc:
        assert exc.message, f"{type(exc).__name__} without a message"
        return None


# ---------------------------------------------------------------- valid in, exact out


@BOUNDED
@given(built=messages())
def test_valid_messages_decode_exactly(built: Any) -> None:
    msg, tensors, _raw, _outputs = built
    assert_decodes_to(codec.decode_infer_request(msg), msg, tensors)


@BOUNDED
@given(built=messages())
def test_valid_messages_survive_the_wire(built: Any) -> None:
    msg, tensors, _raw, _outputs = built
    parsed = pb.ModelInferRequest.FromString(msg.SerializeToString())
    assert_decodes_to(codec.decode_infer_request(parsed), parsed, tensors)


# ---------------------------------------------------------------- invalid in, SluiceError out

# int64 dims a client may send: negative, zero, small, and huge ones (from 2**40,
# so an allocation made before the size check fails at once instead of filling memory).
dims = st.one_of(
    st.integers(0, 4),
    st.sampled_from([-1, -(2**63), 2**40, 2**62, 2**63 - 1]),
)
hostile_shapes = st.one_of(
    st.lists(dims, max_size=5),
    st.lists(st.sampled_from([0, 1]), min_size=60, max_size=70),
)


@st.composite
def random_messages(draw: st.DrawFn) -> pb.ModelInferRequest:
    """Messages from random fields: any datatype text, shape, raw entries and contents."""
    msg = pb.ModelInferRequest(model_name=draw(st.text(max_size=4)))
    for _ in range(draw(st.integers(0, 3))):
        item = msg.inputs.add(
            name=draw(st.sampled_from(["", "x", "y"]) | st.text(max_size=3)),
            datatype=draw(st.sampled_from([d.name for d in DATATYPES]) | st.text(max_size=5)),
            shape=draw(hostile_shapes),
        )
        for field in draw(st.lists(st.sampled_from(CONTENTS_FIELDS), max_size=2)):
            getattr(item.contents, field).extend(draw(contents_values(field)))
        if draw(st.booleans()):
            item.parameters["shared_memory_region"].string_param = draw(st.text(max_size=3))
    msg.raw_input_contents.extend(draw(st.lists(st.binary(max_size=32), max_size=3)))
    for name in draw(st.lists(st.sampled_from(["", "a", "a", "b"]), max_size=3)):
        msg.outputs.add(name=name)
    return msg


def contents_values(field: str) -> st.SearchStrategy[list[Any]]:
    values: st.SearchStrategy[Any] = {
        "bool_contents": st.booleans(),
        "int_contents": st.integers(-(2**31), 2**31 - 1),
        "int64_contents": st.integers(-(2**63), 2**63 - 1),
        "uint_contents": st.integers(0, 2**32 - 1),
        "uint64_contents": st.integers(0, 2**64 - 1),
        "fp32_contents": st.floats(width=32),
        "fp64_contents": st.floats(),
        "bytes_contents": st.binary(max_size=4),
    }[field]
    return st.lists(values, max_size=6)


@BOUNDED
@given(msg=random_messages())
def test_random_fields_give_sluice_errors(msg: pb.ModelInferRequest) -> None:
    result = outcome(msg)
    if result is not None:
        for tensor in result.inputs:
            assert tensor.data.shape == tensor.shape


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, max(0, len(out) - 1)))
        op = draw(st.sampled_from(["flip", "truncate", "insert", "delete"]))
        if op == "flip" and out:
            out[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del out[at:]
        elif op == "insert":
            out[at:at] = draw(st.binary(min_size=1, max_size=8))
        else:
            del out[at : at + draw(st.integers(1, 8))]
    return bytes(out)


@BOUNDED
@given(built=messages(), data=st.data())
def test_mutated_serialized_messages_give_sluice_errors(built: Any, data: st.DataObject) -> None:
    wire = data.draw(mutated(built[0].SerializeToString()))
    try:
        msg = pb.ModelInferRequest.FromString(wire)
    except DecodeError:
        return  # grpc answers bytes that are no message before the decoder runs
    result = outcome(msg)
    if result is not None:
        for tensor in result.inputs:
            assert tensor.data.shape == tensor.shape


@BOUNDED
@given(
    count=st.sampled_from([2**40, 2**62, 2**63 - 1]) | st.integers(0, 64),
    raw=st.binary(max_size=64),
)
def test_bytes_counts_are_checked_against_the_data(count: int, raw: bytes) -> None:
    msg = pb.ModelInferRequest(model_name="m")
    msg.inputs.add(name="x", datatype="BYTES", shape=[count])
    msg.raw_input_contents.append(raw)
    result = outcome(msg)
    if result is not None:
        assert 4 * count <= len(raw)
