from __future__ import annotations

import math
import os
import struct
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from serving.datatypes import DATATYPES, by_name
from serving.errors import InvalidArgument

JSON_TYPES = [d for d in DATATYPES if d.json_ok]

# One sample per datatype, including each type's extremes.
SAMPLES: dict[str, list[Any]] = {
    "BOOL": [True, False, True, True, False, False],
    "UINT8": [0, 1, 2, 3, 254, 255],
    "UINT16": [0, 1, 2, 3, 65534, 65535],
    "UINT32": [0, 1, 2, 3, 2**32 - 2, 2**32 - 1],
    "UINT64": [0, 1, 2, 3, 2**63, 2**64 - 1],
    "INT8": [-128, -1, 0, 1, 2, 127],
    "INT16": [-(2**15), -1, 0, 1, 2, 2**15 - 1],
    "INT32": [-(2**31), -1, 0, 1, 2, 2**31 - 1],
    "INT64": [-(2**63), -1, 0, 1, 2, 2**63 - 1],
    "FP32": [0.5, -1.25, 3, 0.0, 1e30, -2.0],
    "FP64": [0.1, -1e300, 3, 0.0, 2.5e-310, 7.0],
    "BYTES": ["a", "", "héllo", "x y", "0", "z"],
}


def nest(flat: list[Any], rows: int) -> list[list[Any]]:
    width = len(flat) // rows
    return [flat[i * width : (i + 1) * width] for i in range(rows)]


def lp(*items: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(x)) + x for x in items)


# ---------------------------------------------------------------- json_to_array


@pytest.mark.parametrize("datatype", JSON_TYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("layout", ["flat", "nested"])
def test_json_to_array_every_datatype(twin, datatype, layout):
    flat = SAMPLES[datatype.name]
    data = flat if layout == "flat" else nest(flat, 2)
    arr = twin.json_to_array(data, datatype, (2, 3), name="x")
    assert arr.shape == (2, 3)
    assert arr.dtype == datatype.numpy
    if datatype.is_bytes:
        assert arr.reshape(-1).tolist() == [s.encode() for s in flat]
    else:
        assert arr.reshape(-1).tolist() == [datatype.numpy.type(v) for v in flat]


def test_json_to_array_deep_nesting_is_row_major(twin):
    data = [[[1, 2], [3, 4]], [[5, 6], [7, 8]]]
    arr = twin.json_to_array(data, by_name("INT32"), (4, 2), name="x")
    assert arr.tolist() == [[1, 2], [3, 4], [5, 6], [7, 8]]


def test_json_to_array_nesting_need_not_match_shape(twin):
    # Only the element count must match, as in Triton.
    arr = twin.json_to_array([[1, 2, 3], [4, 5, 6]], by_name("INT64"), (3, 2), name="x")
    assert arr.tolist() == [[1, 2], [3, 4], [5, 6]]


@pytest.mark.parametrize("data", [[], [[], []]])
def test_json_to_array_empty(twin, data):
    arr = twin.json_to_array(data, by_name("FP32"), (2, 0), name="x")
    assert arr.shape == (2, 0) and arr.dtype == np.float32


def test_json_to_array_scalar_shape(twin):
    arr = twin.json_to_array([4.5], by_name("FP64"), (), name="x")
    assert arr.shape == () and float(arr) == 4.5


def test_json_to_array_fp_accepts_ints_and_non_finite(twin):
    arr = twin.json_to_array([1, math.inf, -math.inf, math.nan], by_name("FP32"), (4,), name="x")
    assert arr[0] == 1.0 and arr[1] == np.inf and arr[2] == -np.inf and np.isnan(arr[3])


def test_json_to_array_bytes_accepts_msgpack_bin(twin):
    arr = twin.json_to_array(["a", b"\xff\x00"], by_name("BYTES"), (2,), name="x")
    assert arr.tolist() == [b"a", b"\xff\x00"]


ERRORS = [
    # (data, datatype, shape, message)
    (
        [1, 2, 3, 4, 5],
        "FP32",
        (2, 3),
        "input 'x': expected 6 elements for shape [2, 3], got 5",
    ),
    (
        [[1, 2, 3], [4, 5]],
        "FP32",
        (2, 3),
        "input 'x': nested 'data' is not rectangular at depth 1: lists of 3 and 2 elements",
    ),
    ([1, [2, 3]], "INT32", (3,), "input 'x': nested 'data' mixes lists and values at depth 0"),
    ([[1, 2], 3], "INT32", (3,), "input 'x': nested 'data' mixes lists and values at depth 0"),
    (
        [[[1], [2]], [3, 4]],
        "INT32",
        (4,),
        "input 'x': nested 'data' mixes lists and values at depth 1",
    ),
    (5, "INT32", (1,), "input 'x': 'data' must be a list, got 5"),
    ("abc", "BYTES", (1,), "input 'x': 'data' must be a list, got 'abc'"),
    ({"a": 1}, "FP32", (1,), "input 'x': 'data' must be a list, got an object"),
    ([True, 1], "BOOL", (2,), "input 'x': BOOL element 1 must be true or false, got 1"),
    ([True, "true"], "BOOL", (2,), "input 'x': BOOL element 1 must be true or false, got 'true'"),
    ([1, 1.5], "INT32", (2,), "input 'x': INT32 element 1 must be an integer, got 1.5"),
    ([1, 2.0], "INT64", (2,), "input 'x': INT64 element 1 must be an integer, got 2.0"),
    ([1, True], "INT8", (2,), "input 'x': INT8 element 1 must be an integer, got true"),
    ([None], "UINT8", (1,), "input 'x': UINT8 element 0 must be an integer, got null"),
    ([1, "2"], "FP32", (2,), "input 'x': FP32 element 1 must be a number, got '2'"),
    ([1, False], "FP64", (2,), "input 'x': FP64 element 1 must be a number, got false"),
    ([[1.0], [[2.0]]], "FP64", (2,), "input 'x': nested 'data' mixes lists and values at depth 1"),
    (["a", 3], "BYTES", (2,), "input 'x': BYTES element 1 must be a string, got 3"),
    (["a", ["b"]], "BYTES", (2,), "input 'x': nested 'data' mixes lists and values at depth 0"),
    (
        [1.0, 2.0],
        "FP16",
        (2,),
        "input 'x': FP16 data cannot travel as JSON numbers; send it in binary form "
        "(binary_data_size, or msgpack bin)",
    ),
    (
        [1],
        "BF16",
        (1,),
        "input 'x': BF16 data cannot travel as JSON numbers; send it in binary form "
        "(binary_data_size, or msgpack bin)",
    ),
    ([1, 1e39], "FP32", (2,), "input 'x': FP32 element 1 value 1e+39 is out of range for FP32"),
    (
        [1, 10**39],
        "FP32",
        (2,),
        "input 'x': FP32 element 1 value an integer of 130 bits is out of range for FP32",
    ),
    (
        [0.5, 10**400],
        "FP64",
        (2,),
        "input 'x': FP64 element 1 value an integer of 1329 bits is out of range for FP64",
    ),
    # The first bad element wins, whatever is wrong with it.
    ([1e39, "a"], "FP32", (2,), "input 'x': FP32 element 0 value 1e+39 is out of range for FP32"),
    (
        [10**400, "a"],
        "FP64",
        (2,),
        "input 'x': FP64 element 0 value an integer of 1329 bits is out of range for FP64",
    ),
    (["a", 1e39], "FP32", (2,), "input 'x': FP32 element 0 must be a number, got 'a'"),
    ([300, "a"], "UINT8", (2,), "input 'x': UINT8 element 0 value 300 is out of range [0, 255]"),
    (
        ["a" * 50],
        "INT8",
        (1,),
        "input 'x': INT8 element 0 must be an integer, got '" + "a" * 36 + "...",
    ),
]
RANGE_ERRORS = [
    (name, value)
    for name, (low, high) in {
        "UINT8": (0, 255),
        "UINT16": (0, 65535),
        "UINT32": (0, 2**32 - 1),
        "UINT64": (0, 2**64 - 1),
        "INT8": (-128, 127),
        "INT16": (-(2**15), 2**15 - 1),
        "INT32": (-(2**31), 2**31 - 1),
        "INT64": (-(2**63), 2**63 - 1),
    }.items()
    for value in (low - 1, high + 1)
]


@pytest.mark.parametrize(
    ("data", "datatype", "shape", "message"), ERRORS, ids=[e[3][11:60] for e in ERRORS]
)
def test_json_to_array_errors(twin, data, datatype, shape, message):
    with pytest.raises(InvalidArgument) as info:
        twin.json_to_array(data, by_name(datatype), shape, name="x")
    assert info.value.message == message


@pytest.mark.parametrize(("datatype", "value"), RANGE_ERRORS, ids=str)
def test_json_to_array_integer_range(twin, datatype, value):
    low_high = {"UINT8": "[0, 255]", "INT8": "[-128, 127]"}
    with pytest.raises(InvalidArgument, match=rf"INT\d+ element 1 value {value} is out of range"):
        twin.json_to_array([0, value], by_name(datatype), (2,), name="x")
    if datatype in low_high:
        with pytest.raises(InvalidArgument) as info:
            twin.json_to_array([value], by_name(datatype), (1,), name="x")
        assert info.value.message == (
            f"input 'x': {datatype} element 0 value {value} is out of range {low_high[datatype]}"
        )


def test_json_to_array_without_name_has_no_prefix(twin):
    with pytest.raises(InvalidArgument) as info:
        twin.json_to_array([1], by_name("FP32"), (2,))
    assert info.value.message == "expected 2 elements for shape [2], got 1"


# ---------------------------------------------------------------- BYTES wire form


def test_decode_bytes(twin):
    arr = twin.decode_bytes(lp(b"ab", b"", "é".encode(), b"\x00\xff"), 4)
    assert arr.dtype == object
    assert arr.tolist() == [b"ab", b"", "é".encode(), b"\x00\xff"]
    assert all(type(x) is bytes for x in arr)


def test_decode_bytes_accepts_memoryview_slices(twin):
    body = b"JUNK" + lp(b"hello", b"world") + b"TAIL"
    view = memoryview(body)[4:-4]
    assert twin.decode_bytes(view, 2).tolist() == [b"hello", b"world"]


def test_decode_bytes_empty(twin):
    assert twin.decode_bytes(b"", 0).shape == (0,)


DECODE_ERRORS = [
    (
        lp(b"ab") + b"\x01\x00",
        2,
        "input 'x': BYTES element 1 at offset 6: truncated length prefix (2 bytes left, need 4)",
    ),
    (
        lp(b"ab"),
        2,
        "input 'x': BYTES element 1 at offset 6: truncated length prefix (0 bytes left, need 4)",
    ),
    (
        lp(b"ab") + struct.pack("<I", 100) + b"xyz",
        2,
        "input 'x': BYTES element 1 at offset 6: length 100 overruns the buffer "
        "(3 bytes left after the prefix)",
    ),
    (
        struct.pack("<I", 2**32 - 1) + b"x",
        1,
        "input 'x': BYTES element 0 at offset 0: length 4294967295 overruns the buffer "
        "(1 bytes left after the prefix)",
    ),
    (
        lp(b"ab", b"c") + b"zz",
        2,
        "input 'x': 2 bytes left over after 2 BYTES elements (consumed 11 of 13 bytes)",
    ),
    (b"\x00\x00\x00\x00", 0, "input 'x': 4 bytes left over after 0 BYTES elements "
     "(consumed 0 of 4 bytes)"),
]  # fmt: skip


@pytest.mark.parametrize(("buf", "count", "message"), DECODE_ERRORS, ids=range(len(DECODE_ERRORS)))
def test_decode_bytes_errors(twin, buf, count, message):
    with pytest.raises(InvalidArgument) as info:
        twin.decode_bytes(buf, count, name="x")
    assert info.value.message == message


def test_encode_bytes_mixed_elements_row_major(twin):
    arr = np.array([[b"ab", "é"], [7, np.float32(1.5)]], dtype=object)
    assert twin.encode_bytes(arr) == lp(b"ab", "é".encode(), b"7", b"1.5")


def test_encode_bytes_numpy_string_arrays(twin):
    assert twin.encode_bytes(np.array([b"ab", b"c"])) == lp(b"ab", b"c")
    assert twin.encode_bytes(np.array(["ab", "ç"])) == lp(b"ab", "ç".encode())


def test_encode_bytes_empty(twin):
    assert twin.encode_bytes(np.empty((0, 3), dtype=object)) == b""


def test_bytes_round_trip(twin):
    items = [bytes([i % 256]) * i for i in range(300)]
    arr = np.array(items, dtype=object)
    assert twin.decode_bytes(twin.encode_bytes(arr), 300).tolist() == items


# ---------------------------------------------------------------- binary


@pytest.mark.parametrize("datatype", [d for d in DATATYPES if not d.is_bytes], ids=lambda d: d.name)
def test_binary_round_trip_fixed_types(twin, datatype):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 2, size=(2, 3)).astype(datatype.numpy)
    raw = bytes(twin.array_to_binary(arr, datatype))
    assert len(raw) == 6 * datatype.itemsize
    back = twin.binary_to_array(raw, datatype, (2, 3), "x")
    assert back.dtype == datatype.numpy and back.shape == (2, 3)
    np.testing.assert_array_equal(back, arr)


def test_binary_to_array_is_zero_copy(twin):
    body = bytearray(b"HEAD" + np.arange(6, dtype="<f4").tobytes())
    arr = twin.binary_to_array(memoryview(body)[4:], by_name("FP32"), (2, 3), "x")
    body[4:8] = np.float32(42).tobytes()
    assert arr[0, 0] == 42


def test_binary_to_array_wrong_size(twin):
    with pytest.raises(InvalidArgument) as info:
        twin.binary_to_array(b"\x00" * 20, by_name("FP32"), (2, 3), "x")
    assert (
        info.value.message == "input 'x': expected 24 bytes of FP32 data for shape [2, 3], got 20"
    )


def test_binary_to_array_bool_must_be_0_or_1(twin):
    with pytest.raises(InvalidArgument) as info:
        twin.binary_to_array(b"\x01\x00\x02", by_name("BOOL"), (3,), "x")
    assert info.value.message == "input 'x': BOOL element 2 has byte value 2; expected 0 or 1"


def test_binary_to_array_bytes(twin):
    arr = twin.binary_to_array(lp(b"a", b"bc", b"", b"d"), by_name("BYTES"), (2, 2), "x")
    assert arr.shape == (2, 2) and arr.tolist() == [[b"a", b"bc"], [b"", b"d"]]


def test_binary_to_array_bytes_count_from_shape(twin):
    with pytest.raises(InvalidArgument) as info:
        twin.binary_to_array(lp(b"a", b"bc", b"d"), by_name("BYTES"), (2,), "x")
    assert info.value.message == (
        "input 'x': 5 bytes left over after 2 BYTES elements (consumed 11 of 16 bytes)"
    )


def test_array_to_binary_is_little_endian_and_contiguous(twin):
    arr = np.arange(6, dtype=">i4").reshape(2, 3).T  # big-endian, not contiguous
    raw = bytes(twin.array_to_binary(arr, by_name("INT32")))
    assert raw == np.array([0, 3, 1, 4, 2, 5], dtype="<i4").tobytes()


def test_array_to_binary_empty(twin):
    assert bytes(twin.array_to_binary(np.empty((0, 2), np.float32), by_name("FP32"))) == b""


def test_array_to_binary_bytes(twin):
    arr = np.array(["a", b"bc"], dtype=object)
    assert bytes(twin.array_to_binary(arr, by_name("BYTES"))) == lp(b"a", b"bc")


# ---------------------------------------------------------------- array_to_json


@pytest.mark.parametrize("datatype", JSON_TYPES, ids=lambda d: d.name)
def test_array_to_json_round_trip(twin, datatype):
    flat = SAMPLES[datatype.name]
    arr = twin.json_to_array(nest(flat, 3), datatype, (3, 2), name="x")
    back = twin.array_to_json(arr, datatype)
    if datatype.name == "FP32":
        assert back == [float(np.float32(v)) for v in flat]
    else:
        assert back == flat
    assert all(type(v) in (bool, int, float, str) for v in back)


def test_array_to_json_bytes_not_utf8_is_escaped(twin):
    arr = np.array([b"ok", b"\xff\xfeA"], dtype=object)
    assert twin.array_to_json(arr, by_name("BYTES")) == ["ok", "\\xff\\xfeA"]


@pytest.mark.parametrize("name", ["FP16", "BF16"])
def test_array_to_json_refuses_binary_only_types(twin, name):
    with pytest.raises(InvalidArgument, match=f"{name} data cannot travel as JSON numbers"):
        twin.array_to_json(np.zeros(2, by_name(name).numpy), by_name(name))


# ---------------------------------------------------------------- parity and selector


PARITY_INPUTS = [(e[0], e[1], e[2]) for e in ERRORS] + [
    (nest(SAMPLES[d.name], 2), d.name, (2, 3)) for d in JSON_TYPES
]


def _outcome(fn, *args, **kwargs):
    try:
        result = fn(*args, **kwargs)
    except InvalidArgument as exc:
        return ("error", exc.message)
    if isinstance(result, np.ndarray):
        return ("ok", result.dtype.str, result.shape, result.tolist())
    return ("ok", bytes(result))


@pytest.mark.parametrize(("data", "datatype", "shape"), PARITY_INPUTS)
def test_parity_json_to_array(both, data, datatype, shape):
    py, native = both
    args = (data, by_name(datatype), shape)
    assert _outcome(py.json_to_array, *args, name="t") == _outcome(
        native.json_to_array, *args, name="t"
    )


@pytest.mark.parametrize(
    ("buf", "count"), [(e[0], e[1]) for e in DECODE_ERRORS] + [(lp(b"a", b"", b"xyz"), 3)]
)
def test_parity_decode_bytes(both, buf, count):
    py, native = both
    assert _outcome(py.decode_bytes, buf, count) == _outcome(native.decode_bytes, buf, count)


def test_parity_encode_bytes(both):
    py, native = both
    arr = np.array([b"a", "é", 3, None, 2.5, b""], dtype=object).reshape(2, 3)
    assert py.encode_bytes(arr) == native.encode_bytes(arr)


def _selected(env: dict[str, str]) -> str:
    code = "import serving.codecs as c; print(c.IMPLEMENTATION, c.decode_bytes.__module__)"
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def test_selector_honours_no_extensions():
    env = {**os.environ, "SLUICE_NO_EXTENSIONS": "1"}
    assert _selected(env) == "python serving.codecs._python"


def test_selector_prefers_native():
    if os.environ.get("SLUICE_NO_EXTENSIONS") == "1":
        pytest.skip("SLUICE_NO_EXTENSIONS=1: the native twin is not built")
    env = {k: v for k, v in os.environ.items() if k != "SLUICE_NO_EXTENSIONS"}
    assert _selected(env) == "native serving.codecs._native"


# ---------------------------------------------------------------- hostile shapes and counts

HOSTILE_SHAPES = [
    ((1,) * 65, "input 'x': shape has 65 dimensions; at most 64 are allowed"),
    (
        (0, 2**62, 2**62),
        "input 'x': shape [0, 4611686018427387904, 4611686018427387904] is too large: its "
        "non-zero dimensions multiply to more than 2**60 - 1 elements",
    ),
    (
        (2**31, 2**31, 0, 2**31),
        "input 'x': shape [2147483648, 2147483648, 0, 2147483648] is too large: its "
        "non-zero dimensions multiply to more than 2**60 - 1 elements",
    ),
    ((2, -3), "input 'x': shape [2, -3] has a negative dimension"),
]


@pytest.mark.parametrize(("shape", "message"), HOSTILE_SHAPES, ids=range(len(HOSTILE_SHAPES)))
@pytest.mark.parametrize("datatype", ["FP32", "INT8", "BYTES"])
def test_binary_to_array_refuses_impossible_shapes(twin, datatype, shape, message):
    with pytest.raises(InvalidArgument) as info:
        twin.binary_to_array(b"", by_name(datatype), shape, "x")
    assert info.value.message == message


@pytest.mark.parametrize(("shape", "message"), HOSTILE_SHAPES, ids=range(len(HOSTILE_SHAPES)))
def test_json_to_array_refuses_impossible_shapes(twin, shape, message):
    with pytest.raises(InvalidArgument) as info:
        twin.json_to_array([], by_name("FP32"), shape, name="x")
    assert info.value.message == message


def test_shape_limits_are_inclusive(twin):
    assert twin.binary_to_array(b"\x01", by_name("UINT8"), (1,) * 64, "x").shape == (1,) * 64
    empty = twin.binary_to_array(b"", by_name("FP64"), (0, 2**60 - 1), "x")
    assert empty.shape == (0, 2**60 - 1)


@pytest.mark.parametrize("count", [2**40, 2**63, 2**70])
def test_decode_bytes_huge_count_fails_where_the_data_ends(twin, count):
    """A count the buffer cannot hold is refused at the first missing prefix, unallocated."""
    with pytest.raises(InvalidArgument) as info:
        twin.decode_bytes(lp(b"ab"), count, name="x")
    assert info.value.message == (
        "input 'x': BYTES element 1 at offset 6: truncated length prefix (0 bytes left, need 4)"
    )


def test_binary_bytes_huge_shape_fails_where_the_data_ends(twin):
    with pytest.raises(InvalidArgument) as info:
        twin.binary_to_array(b"\0\0\0\0", by_name("BYTES"), (2**20, 2**20), "x")
    assert info.value.message == (
        "input 'x': BYTES element 1 at offset 4: truncated length prefix (0 bytes left, need 4)"
    )


@pytest.mark.parametrize("datatype", ["FP32", "FP64"])
def test_non_finite_floats_are_values(twin, datatype):
    """NaN and the infinities (JSON's NaN/Infinity/-Infinity, as Triton reads them) are kept;
    only finite values the datatype cannot hold are out of range."""
    arr = twin.json_to_array([math.inf, -math.inf, math.nan], by_name(datatype), (3,), name="x")
    assert arr[0] == math.inf and arr[1] == -math.inf and math.isnan(arr[2])


@pytest.mark.parametrize("datatype", ["FP32", "FP64"])
def test_too_large_integers_are_out_of_range_for_floats(twin, datatype):
    with pytest.raises(InvalidArgument) as info:
        twin.json_to_array([1, 10**400], by_name(datatype), (2,), name="x")
    assert info.value.message.startswith(f"input 'x': {datatype} element 1 value ")
    assert info.value.message.endswith(f"is out of range for {datatype}")
