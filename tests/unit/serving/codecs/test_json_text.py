"""JSON text <-> arrays in both codec twins: ``json_text_to_array``, ``array_to_json_text``
and ``split_json_data``.

The native twin scans a request's "data" arrays from their bytes straight into the array's
buffer and writes a response's "data" text from the output array; the pure-Python twin does
it through ``json`` and lists. Both must give the same array, bit for bit, for every text
``json.loads`` plus ``json_to_array`` accepts, and None for every text they refuse (the
request decoder then decodes the whole document the pure-Python way, which names the error);
and both must write the text ``json.dumps`` writes.
"""

from __future__ import annotations

import json
import math
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from serving.datatypes import DATATYPES, DataType, by_name
from tests.unit.serving.twins import load_twin

BOUNDED = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

JSON_TYPES = [d for d in DATATYPES if d.json_ok]
small_shapes = st.lists(st.integers(0, 4), max_size=4).map(tuple)

# Tokens a client may write, valid and not, at the edges of every datatype's range.
TOKENS = [
    "0", "-0", "1", "-1", "7", "1.5", "-0.0", "0.1", "1e3", "1E-3", "2.5e+2", "-2.5E-2",
    "NaN", "Infinity", "-Infinity", "1e309", "-1e309", "1e308", "5e-324", "1e-400",
    "01", "1.", ".5", "-", "+1", "nan", "inf", "-NaN", "1e", "1e+", "0x10", "1_0",
    "true", "false", "null", "True", '"a"', '""', '"\\u00e9"', '"\\ud800"', '"\\ud83d\\ude00"',
    '"\\n\\t\\"\\\\\\/"', '"é"', '"\\x41"', '"a', '"\x01"',
    "127", "128", "-128", "-129", "255", "256", "32767", "32768", "-32769", "65535", "65536",
    "2147483647", "2147483648", "-2147483649", "4294967295", "4294967296",
    "9223372036854775807", "9223372036854775808", "-9223372036854775808",
    "-9223372036854775809", "18446744073709551615", "18446744073709551616",
    "3.4028235e38", "3.4028234663852886e38", "3.4028235677973366e38", "1e39", "-1e39",
    "9007199254740993", "123456789012345678", "0.30000000000000004", "1" * 40, "1" * 400,
    "1" * 4301, "0." + "0" * 300 + "1", "1" + "0" * 22 + ".0", "4.9406564584124654e-324",
    "2.2250738585072011e-308", "1.7976931348623158e308", "[]", "{}", "[1]", "[[]]",
]  # fmt: skip
SEPARATORS = [",", ", ", " ,\n", "\t,\r", ",,", " "]


@pytest.fixture
def both() -> tuple[ModuleType, ModuleType]:
    return load_twin("serving.codecs", "py"), load_twin("serving.codecs", "native")


@st.composite
def data_texts(draw: st.DrawFn, depth: int = 3) -> str:
    """A list of tokens and lists, valid or not, mostly rectangular."""
    sep = draw(st.sampled_from(SEPARATORS))
    if depth == 0 or draw(st.integers(0, 2)) == 0:
        items = draw(st.lists(st.sampled_from(TOKENS), max_size=5))
    else:
        width = draw(st.integers(0, 3))
        items = [draw(data_texts(depth - 1)) for _ in range(width)]
        if items and draw(st.integers(0, 5)) == 0:
            items.append(draw(st.sampled_from(TOKENS)))  # mixed nesting
    pad = draw(st.sampled_from(["", " ", "\n  "]))
    return "[" + pad + sep.join(items) + pad + "]"


def shapes_for(text: str) -> st.SearchStrategy[tuple[int, ...]]:
    """The flat count of the text's leaves as a shape (often right), or any small shape."""
    try:
        leaves = len(_flat(json.loads(text)))
    except (ValueError, RecursionError, TypeError):
        leaves = 1
    return st.one_of(st.just((leaves,)), st.just((1, leaves)), small_shapes, st.just((2**40, 0)))


def _flat(value: Any) -> list[Any]:
    if not isinstance(value, list):
        return [value]
    return [x for item in value for x in _flat(item)]


def same(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype == object:
        return bool(a.reshape(-1).tolist() == b.reshape(-1).tolist())
    return a.tobytes() == b.tobytes()


def scan(twin: ModuleType, text: str | bytes, datatype: str, shape: tuple[int, ...]) -> Any:
    doc = text.encode() if isinstance(text, str) else text
    # Inside a larger document, as the request decoder hands it over.
    doc = b'{"data": ' + doc + b"}"
    return twin.json_text_to_array(doc, 9, len(doc) - 1, by_name(datatype), shape, name="x")


# ---------------------------------------------------------------- parity, text -> array


@BOUNDED
@given(data=st.data(), datatype=st.sampled_from(DATATYPES))
def test_twins_agree_on_any_text(
    both: tuple[ModuleType, ModuleType], data: st.DataObject, datatype: DataType
) -> None:
    py, native = both
    text = data.draw(data_texts())
    shape = data.draw(shapes_for(text))
    got = scan(native, text, datatype.name, shape)
    want = scan(py, text, datatype.name, shape)
    if got is None and want is not None:
        # The native twin may hand a text back only for a reason it documents.
        assert beyond_the_scanner(text, shape), (text, shape, want)
    else:
        assert same(got, want), (text, shape, got, want)


def beyond_the_scanner(text: str, shape: tuple[int, ...]) -> bool:
    """Texts the native scanner leaves to the pure-Python way: nested past 64 levels or a
    number of more than 256 characters."""
    depth = deepest = 0
    for ch in text:
        depth += (ch == "[") - (ch == "]")
        deepest = max(deepest, depth)
    longest = max(
        len(t) for t in text.replace("[", " ").replace("]", " ").replace(",", " ").split() or [""]
    )
    return deepest > 65 or longest > 256


@BOUNDED
@given(
    arr_type=st.sampled_from(JSON_TYPES).flatmap(
        lambda d: st.tuples(
            st.just(d),
            hnp.arrays(
                d.numpy,
                small_shapes,
                elements=st.text(max_size=6).map(str.encode)
                if d.is_bytes
                else (
                    st.floats(width=d.numpy.itemsize * 8)
                    if d.numpy.kind == "f"
                    else hnp.from_dtype(d.numpy)
                ),
            ),
        )
    ),
    nested=st.booleans(),
    sep=st.sampled_from([",", ", ", " , "]),
)
def test_valid_text_scans_to_the_array(
    both: tuple[ModuleType, ModuleType],
    arr_type: tuple[DataType, np.ndarray],
    nested: bool,
    sep: str,
) -> None:
    """Every array a client can send as JSON comes back bit for bit from both twins, and the
    native twin does not give up on it (the fast path really is the path)."""
    datatype, arr = arr_type
    py, native = both
    flat = py.array_to_json(arr, datatype)
    data = _nest(flat, arr.shape) if nested else flat
    text = json.dumps(data, separators=(sep, ":"))
    got = scan(native, text, datatype.name, arr.shape)
    assert got is not None, text
    assert same(got, scan(py, text, datatype.name, arr.shape))
    if datatype.is_bytes:
        assert got.reshape(-1).tolist() == arr.reshape(-1).tolist()
    else:
        assert got.tobytes() == arr.tobytes()


def _nest(flat: list[Any], shape: tuple[int, ...]) -> list[Any]:
    if len(shape) <= 1:
        return flat
    rows, width = shape[0], math.prod(shape[1:])
    return [_nest(flat[i * width : (i + 1) * width], shape[1:]) for i in range(rows)]


# The rules README's JSON notes state, each in both twins.
RULES = [
    ("FP32", (3,), "[NaN, Infinity, -Infinity]", [math.nan, math.inf, -math.inf]),
    ("FP64", (3,), "[NaN, Infinity, -Infinity]", [math.nan, math.inf, -math.inf]),
    ("FP64", (1,), "[1e309]", None),
    ("FP32", (1,), "[1e309]", None),
    ("FP32", (1,), "[1e39]", None),
    ("FP64", (1,), "[1e39]", [1e39]),
    ("INT64", (1,), "[" + "1" * 4301 + "]", None),
    ("FP64", (1,), "[" + "1" * 4301 + "]", None),
    ("INT8", (2,), "[-128, 127]", [-128, 127]),
    ("INT8", (1,), "[128]", None),
    ("UINT64", (1,), "[18446744073709551615]", [2**64 - 1]),
    ("UINT64", (1,), "[18446744073709551616]", None),
    ("UINT8", (1,), "[-0]", [0]),
    ("UINT8", (1,), "[-1]", None),
    ("INT32", (1,), "[1.0]", None),
    ("INT32", (1,), "[true]", None),
    ("BOOL", (2,), "[true, false]", [True, False]),
    ("BOOL", (1,), "[1]", None),
    ("FP32", (2, 2), "[[1, 2], [3, 4]]", [1.0, 2.0, 3.0, 4.0]),
    ("FP32", (4,), "[[1, 2], [3]]", None),
    ("FP32", (2,), "[[1], 2]", None),
    ("FP32", (2,), "[1, [2]]", None),
    ("FP32", (0,), "[[], []]", []),
    ("FP32", (3,), "[1, 2]", None),
    ("FP32", (2**40,), "[1, 2]", None),
    ("FP32", (2,), "[1, 2,]", None),
    ("FP32", (1,), "[01]", None),
    ("FP64", (1,), "[-0]", [0.0]),
    ("FP64", (1,), "[-0.0]", [-0.0]),
    ("BYTES", (2,), '["\\u00e9\\n", "é"]', ["é\n".encode(), "é".encode()]),
    ("BYTES", (1,), '["\\ud800"]', None),
    ("BYTES", (1,), "[1]", None),
    ("FP16", (1,), "[1]", None),
]


@pytest.mark.parametrize(("datatype", "shape", "text", "want"), RULES)
def test_readme_rules(
    both: tuple[ModuleType, ModuleType],
    datatype: str,
    shape: tuple[int, ...],
    text: str,
    want: list[Any] | None,
) -> None:
    py, native = both
    got = scan(native, text, datatype, shape)
    assert same(got, scan(py, text, datatype, shape))
    if want is None:
        assert got is None
        return
    assert got is not None and got.shape == shape
    if datatype == "BYTES":
        assert got.reshape(-1).tolist() == want
    else:
        expected = np.array(want, dtype=by_name(datatype).numpy)
        assert got.reshape(-1).tobytes() == expected.tobytes()


def test_native_scanner_leaves_too_deep_nesting_to_python(
    both: tuple[ModuleType, ModuleType],
) -> None:
    """Nesting past 64 levels is valid JSON; the native twin hands it back (None) and the
    request decoder's whole-document way accepts it."""
    py, native = both
    text = "[" * 70 + "1" + "]" * 70
    assert scan(native, text, "FP32", (1,)) is None
    assert scan(py, text, "FP32", (1,)).tolist() == [1.0]
    assert scan(native, "[" * 64 + "1" + "]" * 64, "FP32", (1,)).tolist() == [1.0]


# ---------------------------------------------------------------- array -> text


@BOUNDED
@given(
    arr_type=st.sampled_from(JSON_TYPES).flatmap(
        lambda d: st.tuples(
            st.just(d),
            hnp.arrays(
                d.numpy,
                small_shapes,
                elements=st.binary(max_size=6) | st.text(max_size=4)
                if d.is_bytes
                else hnp.from_dtype(d.numpy),
            ),
        )
    )
)
def test_twins_write_the_text_json_writes(
    both: tuple[ModuleType, ModuleType], arr_type: tuple[DataType, np.ndarray]
) -> None:
    datatype, arr = arr_type
    py, native = both
    want = json.dumps(py.array_to_json(arr, datatype), separators=(",", ":")).encode()
    assert native.array_to_json_text(arr, datatype) == want
    assert py.array_to_json_text(arr, datatype) == want


def test_text_of_non_finite_and_extreme_values(both: tuple[ModuleType, ModuleType]) -> None:
    py, native = both
    fp32 = np.array([np.nan, -np.inf, np.inf, -0.0, 0.1, 3.4028235e38, 1e-45], np.float32)
    fp64 = np.array([5e-324, 1.7976931348623157e308, 1e16, 1e-5, 123.0])
    ints = np.array([-(2**63), 2**63 - 1, 0], np.int64)
    for arr, name in ((fp32, "FP32"), (fp64, "FP64"), (ints, "INT64")):
        datatype = by_name(name)
        want = json.dumps(arr.tolist(), separators=(",", ":")).encode()
        assert native.array_to_json_text(arr, datatype) == want
        assert py.array_to_json_text(arr, datatype) == want
    assert native.array_to_json_text(fp32[:3], by_name("FP32")) == b"[NaN,-Infinity,Infinity]"


# ---------------------------------------------------------------- splitting the document


def test_native_split_replaces_each_inputs_data_array(
    both: tuple[ModuleType, ModuleType],
) -> None:
    py, native = both
    doc = json.dumps(
        {
            "id": "a",
            "parameters": {"data": [9]},
            "inputs": [
                {"name": "x", "datatype": "FP32", "shape": [2], "data": [1, 2]},
                5,
                {"name": "s", "data": "text"},
                {"name": "y", "data": [['q\\"]']]},
            ],
            "outputs": [{"name": "z", "data": [1]}],
        }
    ).encode()
    assert py.split_json_data(doc) is None
    rest, spans = native.split_json_data(doc)
    assert [json.loads(doc[s:e]) for _, s, e in spans] == [[1, 2], [['q\\"]']]]
    assert [position for position, _, _ in spans] == [0, 3]
    expected = json.loads(doc)
    expected["inputs"][0]["data"] = None
    expected["inputs"][3]["data"] = None
    assert json.loads(rest) == expected


@pytest.mark.parametrize(
    "doc",
    [
        b'{"inputs": [{"name": "x"}]}',  # no data array
        b'{"inputs": [{"data": [1], "data": [2]}]}',  # duplicate key: json keeps the last
        b'{"inputs": [{"data": [1]}], "inputs": []}',
        b'{"inputs": [{"d\\u0061ta": [1]}]}',  # an escaped key
        b'{"\\u0069nputs": [{"data": [1]}]}',
        b'\xef\xbb\xbf{"inputs": [{"data": [1]}]}',  # a UTF-8 byte order mark
        '{"inputs": [{"data": [1]}]}'.encode("utf-16-le"),
        b'[{"inputs": [{"data": [1]}]}]',
        b'{"inputs": [{"data": [1]}]} x',
        b'{"inputs": [{"data": [1]}]',
        b"",
    ],
)
def test_native_split_declines_what_it_cannot_be_sure_of(
    both: tuple[ModuleType, ModuleType], doc: bytes
) -> None:
    _, native = both
    assert native.split_json_data(doc) is None
