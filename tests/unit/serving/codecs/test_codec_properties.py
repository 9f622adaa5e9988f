"""Property-based tests of both codec twins.

Valid tensors round-trip exactly through every wire form; arbitrary bytes,
shapes and JSON values give a ``SluiceError`` with a message or a tensor of the
asked shape, never another exception; and both twins answer alike.
"""

from __future__ import annotations

import json
import math
from types import ModuleType
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from serving.datatypes import DATATYPES, DataType
from serving.errors import SluiceError

# Deterministic and bounded, so CI runs the same examples every time, quickly.
BOUNDED = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

JSON_TYPES = [d for d in DATATYPES if d.json_ok]

# Dimensions a client may declare. Huge ones start at 2**40 so that an array
# allocated before the size check fails at once (MemoryError) instead of
# exhausting the test machine.
HUGE_DIMS = [2**40, 2**62, 2**63 - 1, 2**63, 2**64]
small_shapes = st.lists(st.integers(0, 4), max_size=4).map(tuple)
hostile_shapes = st.one_of(
    small_shapes,
    st.lists(st.sampled_from([0, 1, *HUGE_DIMS]), min_size=1, max_size=4).map(tuple),
    st.lists(st.sampled_from([0, 1]), min_size=60, max_size=70).map(tuple),
    st.tuples(small_shapes, st.sampled_from(HUGE_DIMS)).map(lambda t: (*t[0], 0, t[1])),
)


def elements(datatype: DataType, *, for_json: bool) -> st.SearchStrategy[Any]:
    if datatype.is_bytes:
        # JSON carries text; the binary forms carry any bytes.
        return st.text(max_size=8).map(str.encode) if for_json else st.binary(max_size=8)
    if datatype.numpy.kind == "f":
        width = datatype.numpy.itemsize * 8
        return st.floats(width=width, allow_nan=not for_json, allow_infinity=not for_json)
    return hnp.from_dtype(datatype.numpy)


@st.composite
def tensors(draw: st.DrawFn, types: list[DataType], *, for_json: bool) -> tuple[DataType, Any]:
    datatype = draw(st.sampled_from(types))
    shape = draw(small_shapes)
    dtype = datatype.numpy
    arr = draw(hnp.arrays(dtype, shape, elements=elements(datatype, for_json=for_json)))
    return datatype, arr


def nest(flat: list[Any], shape: tuple[int, ...]) -> list[Any]:
    """``flat`` as nested lists of ``shape`` (a scalar stays a one-element list)."""
    if len(shape) <= 1:
        return flat
    rows, width = shape[0], math.prod(shape[1:])
    return [nest(flat[i * width : (i + 1) * width], shape[1:]) for i in range(rows)]


def assert_same_tensor(got: np.ndarray, want: np.ndarray, datatype: DataType) -> None:
    assert got.shape == want.shape
    assert got.dtype == datatype.numpy
    if datatype.is_bytes:
        assert got.reshape(-1).tolist() == want.reshape(-1).tolist()
    else:
        # Bitwise, so NaN payloads and -0.0 count too.
        assert got.tobytes() == np.ascontiguousarray(want, dtype=datatype.numpy).tobytes()


def outcome(call: Any) -> tuple[str, Any]:
    """What a codec call did: ("ok", result) or ("error", SluiceError); anything else fails."""
    try:
        return "ok", call()
    except SluiceError as exc:
        assert exc.message, f"{type(exc).__name__} without a message"
        return "error", exc


def assert_same_outcome(a: tuple[str, Any], b: tuple[str, Any]) -> None:
    assert a[0] == b[0], (a, b)
    if a[0] == "error":
        assert type(a[1]) is type(b[1]) and a[1].message == b[1].message
    elif isinstance(a[1], np.ndarray):
        assert a[1].shape == b[1].shape and a[1].dtype == b[1].dtype
        if a[1].dtype == object:
            assert a[1].reshape(-1).tolist() == b[1].reshape(-1).tolist()
        else:
            assert a[1].tobytes() == b[1].tobytes()
    else:
        assert bytes(a[1]) == bytes(b[1])


# ---------------------------------------------------------------- valid in, exact out


@BOUNDED
@given(tensor=tensors(list(DATATYPES), for_json=False))
def test_binary_round_trip_every_datatype(twin: ModuleType, tensor: tuple[DataType, Any]) -> None:
    datatype, arr = tensor
    wire = twin.array_to_binary(arr, datatype)
    got = twin.binary_to_array(bytes(wire), datatype, arr.shape, "x")
    assert_same_tensor(got, arr, datatype)


@BOUNDED
@given(tensor=tensors(JSON_TYPES, for_json=True), nested=st.booleans())
def test_json_round_trip_every_json_datatype(
    twin: ModuleType, tensor: tuple[DataType, Any], nested: bool
) -> None:
    datatype, arr = tensor
    flat = json.loads(json.dumps(twin.array_to_json(arr, datatype)))
    data = nest(flat, arr.shape) if nested else flat
    got = twin.json_to_array(data, datatype, arr.shape, name="x")
    assert_same_tensor(got, arr, datatype)


@BOUNDED
@given(items=st.lists(st.binary(max_size=64), max_size=16))
def test_bytes_round_trip(twin: ModuleType, items: list[bytes]) -> None:
    arr = np.empty(len(items), dtype=object)
    arr[:] = items
    wire = twin.encode_bytes(arr)
    assert len(wire) == sum(4 + len(x) for x in items)
    assert twin.decode_bytes(wire, len(items), name="x").tolist() == items


# ---------------------------------------------------------------- invalid in, SluiceError out

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([2**64, -(2**63) - 1, 10**400, -(10**4000)])
    | st.floats()
    | st.text(max_size=4)
    | st.binary(max_size=4),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=2), inner),
    max_leaves=12,
)


@BOUNDED
@given(
    buf=st.binary(max_size=64),
    datatype=st.sampled_from(DATATYPES),
    shape=hostile_shapes,
)
def test_binary_to_array_arbitrary_bytes(
    twin: ModuleType, buf: bytes, datatype: DataType, shape: tuple[int, ...]
) -> None:
    kind, result = outcome(lambda: twin.binary_to_array(buf, datatype, shape, "x"))
    if kind == "ok":
        assert result.shape == shape and result.dtype == datatype.numpy


@BOUNDED
@given(buf=st.binary(max_size=64), count=st.one_of(st.integers(0, 8), st.sampled_from(HUGE_DIMS)))
def test_decode_bytes_arbitrary_bytes(twin: ModuleType, buf: bytes, count: int) -> None:
    kind, result = outcome(lambda: twin.decode_bytes(buf, count, name="x"))
    if kind == "ok":
        assert len(result) == count and all(isinstance(x, bytes) for x in result)


@BOUNDED
@given(data=json_values, datatype=st.sampled_from(DATATYPES), shape=hostile_shapes)
def test_json_to_array_arbitrary_values(
    twin: ModuleType, data: Any, datatype: DataType, shape: tuple[int, ...]
) -> None:
    kind, result = outcome(lambda: twin.json_to_array(data, datatype, shape, name="x"))
    if kind == "ok":
        assert result.shape == shape and result.dtype == datatype.numpy


# ---------------------------------------------------------------- parity of the twins


@BOUNDED
@given(buf=st.binary(max_size=64), datatype=st.sampled_from(DATATYPES), shape=hostile_shapes)
def test_twins_agree_on_binary(
    both: tuple[ModuleType, ModuleType], buf: bytes, datatype: DataType, shape: tuple[int, ...]
) -> None:
    py, native = both
    assert_same_outcome(
        outcome(lambda: py.binary_to_array(buf, datatype, shape, "x")),
        outcome(lambda: native.binary_to_array(buf, datatype, shape, "x")),
    )


@BOUNDED
@given(data=json_values, datatype=st.sampled_from(DATATYPES), shape=hostile_shapes)
def test_twins_agree_on_json(
    both: tuple[ModuleType, ModuleType], data: Any, datatype: DataType, shape: tuple[int, ...]
) -> None:
    py, native = both
    assert_same_outcome(
        outcome(lambda: py.json_to_array(data, datatype, shape, name="x")),
        outcome(lambda: native.json_to_array(data, datatype, shape, name="x")),
    )


@BOUNDED
@given(tensor=tensors(list(DATATYPES), for_json=False))
def test_twins_agree_on_encoding(
    both: tuple[ModuleType, ModuleType], tensor: tuple[DataType, Any]
) -> None:
    py, native = both
    datatype, arr = tensor
    assert_same_outcome(
        outcome(lambda: py.array_to_binary(arr, datatype)),
        outcome(lambda: native.array_to_binary(arr, datatype)),
    )
    if datatype.json_ok:
        assert py.array_to_json(arr, datatype) == native.array_to_json(arr, datatype) or (
            json.dumps(py.array_to_json(arr, datatype))
            == json.dumps(native.array_to_json(arr, datatype))
        )
