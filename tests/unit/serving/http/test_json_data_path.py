"""The JSON request decoder with the native codec twin beside the pure-Python one.

With the native twin the decoder splits each input's "data" array out of the document,
lets json parse the rest and scans the arrays from their bytes; with the pure-Python twin
json parses the whole document. A client must not be able to tell: every body, valid or
hostile, decodes to the same ``InferRequest`` (arrays bit for bit) or fails with the same
message, and the README's JSON rules hold either way. The JSON answer is the same text too.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serving import codecs
from serving.datatypes import DATATYPES
from serving.errors import SluiceError
from serving.http.request_codec import decode_infer_request
from serving.http.response_codec import encode_infer_response
from serving.types import InferOutput, InferRequest, InferResponse
from tests.unit.serving.codecs.test_json_text import TOKENS, data_texts, shapes_for
from tests.unit.serving.twins import load_twin

BOUNDED = settings(
    max_examples=250,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
_FUNCTIONS = (
    "split_json_data",
    "json_text_to_array",
    "json_to_array",
    "array_to_json",
    "array_to_json_text",
    "binary_to_array",
    "array_to_binary",
)

Decode = Callable[[bytes, int | None], tuple[str, Any]]


@pytest.fixture
def twins(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """``use("py")`` or ``use("native")`` puts that twin behind ``serving.codecs``."""
    modules = {
        "py": load_twin("serving.codecs", "py"),
        "native": load_twin("serving.codecs", "native"),
    }

    def use(which: str) -> None:
        module: ModuleType = modules[which]
        for name in _FUNCTIONS:
            monkeypatch.setattr(codecs, name, getattr(module, name))

    return use


def outcome(body: bytes, header_length: int | None = None) -> tuple[str, Any]:
    try:
        return "ok", decode_infer_request(
            body,
            model_name="m",
            model_version="",
            content_type="application/json",
            header_length=header_length,
        )
    except SluiceError as exc:
        return "error", (type(exc).__name__, exc.message)


def both_ways(use: Callable[[str], None], body: bytes, header_length: int | None = None) -> Any:
    use("py")
    want = outcome(body, header_length)
    use("native")
    got = outcome(body, header_length)
    assert got[0] == want[0], (body[:300], got, want)
    if got[0] == "error":
        assert got[1] == want[1]
    else:
        assert_same_request(got[1], want[1])
    return got


def assert_same_request(a: InferRequest, b: InferRequest) -> None:
    assert (a.model_name, a.model_version, a.id, a.outputs, a.shared_memory_inputs) == (
        b.model_name,
        b.model_version,
        b.id,
        b.outputs,
        b.shared_memory_inputs,
    )
    assert dict(a.parameters) == dict(b.parameters)
    assert len(a.inputs) == len(b.inputs)
    for x, y in zip(a.inputs, b.inputs, strict=True):
        assert (x.name, x.datatype, x.shape, dict(x.parameters)) == (
            y.name,
            y.datatype,
            y.shape,
            dict(y.parameters),
        )
        assert x.data.dtype == y.data.dtype and x.data.shape == y.data.shape
        if x.data.dtype == object:
            assert x.data.tolist() == y.data.tolist()
        else:
            assert x.data.tobytes() == y.data.tobytes()


@st.composite
def bodies(draw: st.DrawFn) -> tuple[bytes, int | None]:
    """Request documents with raw data texts spliced in, plus hostile framing around them."""
    inputs = []
    for position in range(draw(st.integers(1, 3))):
        text = draw(data_texts())
        shape = list(draw(shapes_for(text)))
        datatype = draw(st.sampled_from([d.name for d in DATATYPES] + ["NOPE"]))
        name = draw(st.sampled_from([f"in{position}", "in0", "", "é"]))
        fields = [
            f'"name": {json.dumps(name)}',
            f'"datatype": "{datatype}"',
            f'"shape": {json.dumps(shape)}',
            f'"data": {text}',
        ]
        extra = draw(
            st.sampled_from(
                [
                    None,
                    '"parameters": {"binary_data_size": 4}',
                    '"parameters": {"x": [1, 2]}',
                    '"data": [1]',
                    '"d\\u0061ta": [2]',
                ]
            )
        )
        if extra is not None:
            fields.insert(draw(st.integers(0, len(fields))), extra)
        inputs.append("{" + ", ".join(fields) + "}")
    doc = '{"id": "r", "inputs": [' + ", ".join(inputs) + "]"
    doc += draw(
        st.sampled_from(["}", ', "outputs": [{"name": "y"}]}', "} ", "}}", "", ', "inputs": []}'])
    )
    body = draw(st.sampled_from(["", " ", "\ufeff"])) + doc
    raw = body.encode()
    if draw(st.booleans()):
        return raw, None
    tail = draw(st.sampled_from([b"", b"\x00\x00\x80\x3f"]))
    return raw + tail, len(raw)


@BOUNDED
@given(body=bodies())
def test_every_body_decodes_alike_with_either_twin(
    twins: Callable[[str], None], body: tuple[bytes, int | None]
) -> None:
    both_ways(twins, *body)


@BOUNDED
@given(
    tokens=st.lists(st.sampled_from(TOKENS), min_size=1, max_size=6),
    datatype=st.sampled_from([d.name for d in DATATYPES if d.json_ok]),
)
def test_every_token_decodes_alike_with_either_twin(
    twins: Callable[[str], None], tokens: list[str], datatype: str
) -> None:
    body = json.dumps(
        {"inputs": [{"name": "x", "datatype": datatype, "shape": [len(tokens)], "data": []}]}
    ).replace("[]", "[" + ",".join(tokens) + "]")
    both_ways(twins, body.encode())


def request(data: str, datatype: str = "FP32", shape: str = "[1]") -> bytes:
    head = f'{{"inputs": [{{"name": "x", "datatype": "{datatype}", "shape": {shape}, '
    return (head + f'"data": {data}}}]}}').encode()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (request("[1e309]"), "the number 1e309 is out of range of a 64-bit float"),
        (request("[1e309]", "FP64"), "the number 1e309 is out of range of a 64-bit float"),
        (request("[1e39]"), "FP32 element 0 value 1e+39 is out of range"),
        (request("[" + "1" * 4301 + "]", "INT64"), "Exceeds the limit (4300 digits)"),
        (request("[128]", "INT8"), "INT8 element 0 value 128 is out of range [-128, 127]"),
        (request("[1.5]", "INT32"), "INT32 element 0 must be an integer, got 1.5"),
        (request("[[1], [2, 3]]", shape="[3]"), "not rectangular at depth 1"),
        (request("[[1], 2]", shape="[2]"), "mixes lists and values at depth 0"),
        (request("[1, 2]", shape="[3]"), "expected 3 elements for shape [3], got 2"),
        (request("[1]", shape="[" + ", ".join(["1"] * 65) + "]"), "at most 64 are allowed"),
        (request("[1, 2,]"), "Expecting value: line 1 column 75 (char 74)"),
        (request("[" * 100_000 + "]" * 100_000), "nested too deeply to parse"),
        (request("[1]", "FP16"), "FP16 data cannot travel as JSON numbers"),
    ],
)
def test_readme_rules_hold_with_either_twin(
    twins: Callable[[str], None], body: bytes, message: str
) -> None:
    kind, (error, text) = both_ways(twins, body)
    assert kind == "error" and error == "InvalidArgument"
    assert message in text


def test_non_finite_values_and_deep_nesting_are_accepted_with_either_twin(
    twins: Callable[[str], None],
) -> None:
    kind, req = both_ways(twins, request("[NaN, Infinity, -Infinity]", shape="[3]"))
    assert kind == "ok"
    got = req.inputs[0].data
    assert np.isnan(got[0]) and got[1] == np.inf and got[2] == -np.inf
    # 70 levels: past the native scanner's 64, so that twin decodes it the json way.
    kind, req = both_ways(twins, request("[" * 70 + "1" + "]" * 70))
    assert kind == "ok" and req.inputs[0].data.tolist() == [1.0]


def test_binary_extension_header_with_json_data_alike(twins: Callable[[str], None]) -> None:
    header = (
        b'{"inputs": [{"name": "a", "datatype": "INT32", "shape": [2], "data": [7, -7]},'
        b' {"name": "b", "datatype": "FP32", "shape": [1],'
        b' "parameters": {"binary_data_size": 4}}]}'
    )
    kind, req = both_ways(twins, header + np.float32(2.5).tobytes(), len(header))
    assert kind == "ok"
    assert req.inputs[0].data.tolist() == [7, -7] and req.inputs[1].data.tolist() == [2.5]


@pytest.mark.parametrize("size", [3, 31, 32, 1000])
@pytest.mark.parametrize("datatype", ["FP32", "FP64", "INT64", "UINT8", "BOOL", "BYTES"])
def test_json_answer_is_the_same_text_with_either_twin(
    twins: Callable[[str], None], size: int, datatype: str
) -> None:
    rng = np.random.default_rng(size)
    values: np.ndarray
    if datatype == "BYTES":
        values = np.array([f"é{i}".encode() for i in range(size)] + [b"\xff"], dtype=object)
    elif datatype == "BOOL":
        values = rng.integers(0, 2, size + 1).astype(bool)
    elif datatype.startswith("FP"):
        values = np.append(rng.standard_normal(size), np.nan).astype(
            datatype.lower().replace("fp", "float")
        )
    else:
        values = rng.integers(0, 200, size + 1).astype(np.dtype(datatype.lower()))
    resp = InferResponse(
        model_name="m",
        model_version="1",
        id="q\u2603",
        parameters={"p": 1},
        outputs=(
            InferOutput("y", datatype, (1, size + 1), values.reshape(1, -1)),
            InferOutput("z", "INT8", (2,), np.array([1, -1], np.int8)),
        ),
    )
    req = InferRequest(model_name="m", inputs=())
    texts = []
    for which in ("py", "native"):
        twins(which)
        body, headers = encode_infer_response(resp, req, accept=None)
        assert headers == {"Content-Type": "application/json"}
        texts.append(body)
    assert texts[0] == texts[1]
    flat = (
        [x.decode("utf-8", "backslashreplace") for x in values]
        if datatype == "BYTES"
        else values.tolist()
    )
    want = {
        "model_name": "m",
        "model_version": "1",
        "id": "q\u2603",
        "parameters": {"p": 1},
        "outputs": [
            {"name": "y", "datatype": datatype, "shape": [1, size + 1], "data": flat},
            {"name": "z", "datatype": "INT8", "shape": [2], "data": [1, -1]},
        ],
    }
    assert texts[1] == json.dumps(want, separators=(",", ":")).encode()
