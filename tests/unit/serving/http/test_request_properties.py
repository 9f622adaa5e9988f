"""Property-based tests of the HTTP request decoder (``serving.http.request_codec``).

Hypothesis builds valid infer requests, writes them the ways a client may (JSON,
the binary extension with ``Inference-Header-Content-Length``, msgpack, gzip or
deflate on top) and checks they decode to exactly the ``InferRequest`` built;
mutated and hostile bodies must give a ``SluiceError`` with a message, never
another exception. Runs over both codec twins through the selector, as the
server does (``SLUICE_NO_EXTENSIONS=1`` picks the pure-Python one).
"""

from __future__ import annotations

import gzip
import itertools
import json
import zlib
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from serving.datatypes import DATATYPES, DataType
from serving.errors import SluiceError
from serving.http.request_codec import decode_body, decode_infer_request
from serving.types import InferRequest

BOUNDED = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
LIMIT = 1 << 20  # the body limit handed to decode_body

JSON_TYPES = [d for d in DATATYPES if d.json_ok]
names = st.text(min_size=1, max_size=6)
small_shapes = st.lists(st.integers(0, 3), max_size=3).map(tuple)
# Parameters the decoder passes through untouched (no extension claims these keys).
parameter_values = st.dictionaries(
    st.sampled_from(["x_tag", "x_count", "x_flag"]),
    st.one_of(st.booleans(), st.integers(-(2**63), 2**63 - 1), st.text(max_size=6)),
    max_size=2,
)


def elements(datatype: DataType, *, finite: bool, text: bool) -> st.SearchStrategy[Any]:
    if datatype.is_bytes:
        return st.text(max_size=6).map(str.encode) if text else st.binary(max_size=6)
    if datatype.numpy.kind == "f":
        width = datatype.numpy.itemsize * 8
        return st.floats(width=width, allow_nan=not finite, allow_infinity=not finite)
    return hnp.from_dtype(datatype.numpy)


@dataclass(frozen=True)
class Tensor:
    name: str
    datatype: DataType
    array: np.ndarray
    form: str  # "json" (a data list), "binary" (binary_data_size) or "bin" (msgpack bin)
    parameters: dict[str, Any]


@dataclass(frozen=True)
class Request:
    """A valid request as its pieces, and the bytes each wire form gives for it."""

    id: str | None
    tensors: tuple[Tensor, ...]
    outputs: tuple[tuple[str, dict[str, Any]], ...] | None
    parameters: dict[str, Any]

    def header(self, for_msgpack: bool) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.id is not None:
            out["id"] = self.id
        if self.parameters:
            out["parameters"] = self.parameters
        out["inputs"] = [self._input(t, for_msgpack) for t in self.tensors]
        if self.outputs is not None:
            out["outputs"] = [
                {"name": n, **({"parameters": p} if p else {})} for n, p in self.outputs
            ]
        return out

    @staticmethod
    def _input(t: Tensor, for_msgpack: bool) -> dict[str, Any]:
        item: dict[str, Any] = {
            "name": t.name,
            "datatype": t.datatype.name,
            "shape": list(t.array.shape),
        }
        parameters = dict(t.parameters)
        if t.form == "binary":
            parameters["binary_data_size"] = len(wire_bytes(t))
        elif t.form == "bin":
            item["data"] = wire_bytes(t)
        else:
            flat = t.array.reshape(-1).tolist()
            if t.datatype.is_bytes and not for_msgpack:
                flat = [x.decode() for x in flat]
            item["data"] = flat
        if parameters:
            item["parameters"] = parameters
        return item

    def json_body(self) -> bytes:
        return json.dumps(self.header(for_msgpack=False)).encode()

    def binary_body(self) -> tuple[bytes, int]:
        header = self.json_body()
        tail = b"".join(wire_bytes(t) for t in self.tensors if t.form == "binary")
        return header + tail, len(header)

    def msgpack_body(self) -> bytes:
        return msgpack.packb(self.header(for_msgpack=True), use_bin_type=True)


def wire_bytes(t: Tensor) -> bytes:
    if t.datatype.is_bytes:
        return b"".join(len(x).to_bytes(4, "little") + x for x in t.array.reshape(-1).tolist())
    return np.ascontiguousarray(t.array, dtype=t.datatype.numpy).tobytes()


@st.composite
def tensors(draw: st.DrawFn, name: str, forms: list[str]) -> Tensor:
    form = draw(st.sampled_from(forms))
    types = JSON_TYPES if form == "json" else list(DATATYPES)
    datatype = draw(st.sampled_from(types))
    # A JSON body carries text and finite numbers; msgpack lists carry bytes as bin.
    finite = form == "json"
    text = form == "json" and "bin" not in forms
    arr = draw(
        hnp.arrays(
            datatype.numpy,
            draw(small_shapes),
            elements=elements(datatype, finite=finite, text=text),
        )
    )
    return Tensor(name, datatype, arr, form, draw(parameter_values))


@st.composite
def requests(draw: st.DrawFn, forms: list[str]) -> Request:
    input_names = draw(st.lists(names, min_size=1, max_size=3, unique=True))
    outputs = draw(
        st.none()
        | st.lists(
            st.tuples(names, st.dictionaries(st.just("binary_data"), st.booleans(), max_size=1)),
            max_size=2,
            unique_by=lambda o: o[0],
        ).map(tuple)
    )
    return Request(
        id=draw(st.none() | st.text(max_size=8)),
        tensors=tuple(draw(tensors(n, forms)) for n in input_names),
        outputs=outputs,
        parameters=draw(parameter_values),
    )


def decode(body: bytes, content_type: str | None, header_length: int | None) -> InferRequest:
    return decode_infer_request(
        body,
        model_name="m",
        model_version="1",
        content_type=content_type,
        header_length=header_length,
    )


def assert_decodes_to(got: InferRequest, request: Request) -> None:
    assert got.model_name == "m" and got.model_version == "1"
    assert got.id == (request.id or "")
    assert dict(got.parameters) == request.parameters
    assert len(got.inputs) == len(request.tensors)
    for tensor, want in zip(got.inputs, request.tensors, strict=True):
        assert tensor.name == want.name
        assert tensor.datatype == want.datatype.name
        assert tensor.shape == want.array.shape
        assert dict(tensor.parameters) == want.parameters
        assert tensor.data.shape == want.array.shape
        assert tensor.data.dtype == want.datatype.numpy
        if want.datatype.is_bytes:
            assert tensor.data.reshape(-1).tolist() == want.array.reshape(-1).tolist()
        else:
            assert tensor.data.tobytes() == want.array.tobytes()
    wanted_outputs = request.outputs or ()
    assert [(o.name, dict(o.parameters)) for o in got.outputs] == list(wanted_outputs)


def outcome(call: Any) -> Any:
    """The call's result, or None after a SluiceError with a message; anything else fails."""
    try:
        return call()
    except SluiceError as exc:
        assert exc.message, f"{type(exc).__name__} without a message"
        return None


# ---------------------------------------------------------------- valid in, exact out


@BOUNDED
@given(request=requests(["json"]), content_type=st.sampled_from([None, "application/json"]))
def test_json_body_round_trips(request: Request, content_type: str | None) -> None:
    assert_decodes_to(decode(request.json_body(), content_type, None), request)


@BOUNDED
@given(request=requests(["json", "binary"]))
def test_binary_extension_round_trips(request: Request) -> None:
    body, header_length = request.binary_body()
    assert_decodes_to(decode(body, "application/octet-stream", header_length), request)


@BOUNDED
@given(
    request=requests(["json", "bin"]),
    content_type=st.sampled_from(["application/msgpack", "application/x-msgpack; charset=x"]),
)
def test_msgpack_body_round_trips(request: Request, content_type: str) -> None:
    assert_decodes_to(decode(request.msgpack_body(), content_type, None), request)


@BOUNDED
@given(
    request=requests(["json", "binary"]),
    encoding=st.sampled_from(["gzip", "x-gzip", "deflate"]),
    members=st.integers(1, 3),
)
def test_compressed_body_round_trips(request: Request, encoding: str, members: int) -> None:
    body, header_length = request.binary_body()
    if encoding == "deflate":
        encoded = zlib.compress(body)
    else:
        # A gzip body may be several members; together they are the body.
        cuts = [len(body) * i // members for i in range(members + 1)]
        encoded = b"".join(gzip.compress(body[a:b]) for a, b in itertools.pairwise(cuts))
    decoded = decode_body(encoded, encoding, len(body))
    assert decoded == body
    assert_decodes_to(decode(decoded, None, header_length), request)


# ---------------------------------------------------------------- invalid in, SluiceError out

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=4)
    | st.sampled_from([2**64, -(2**63) - 1, 10**400]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=8,
)


@st.composite
def mutated(draw: st.DrawFn, body: bytes) -> bytes:
    """``body`` after a few byte-level edits: flips, cuts, insertions, deletions."""
    data = bytearray(body)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "duplicate"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(
                st.binary(min_size=1, max_size=8)
                | st.sampled_from([b"[", b"{", b'"', b"\\", b"\xff", b"1e309", b"NaN", b"-"])
            )
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        else:
            data[at:at] = data[at : at + draw(st.integers(1, 16))]
    return bytes(data)


@st.composite
def retyped(draw: st.DrawFn, request: Request) -> dict[str, Any]:
    """The request's JSON header with one field, top-level or in an input, set to junk."""
    header = request.header(for_msgpack=False)
    target = header
    if draw(st.booleans()):
        target = header["inputs"][draw(st.integers(0, len(header["inputs"]) - 1))]
        keys = ["name", "datatype", "shape", "data", "parameters"]
    else:
        keys = ["id", "inputs", "outputs", "parameters"]
    target[draw(st.sampled_from(keys))] = draw(json_values)
    return header


HOSTILE_BODIES = [
    # Deep nesting, in the data and as the whole body.
    b'{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":'
    + b"[" * 100_000
    + b"]" * 100_000
    + b"}]}",
    b"[" * 100_000 + b"]" * 100_000,
    # An integer of more than 4,300 digits, as data and as a dimension.
    b'{"inputs":[{"name":"x","datatype":"INT64","shape":[1],"data":[' + b"9" * 5000 + b"]}]}",
    b'{"inputs":[{"name":"x","datatype":"INT64","shape":[' + b"9" * 5000 + b'],"data":[1]}]}',
    # Numbers JSON does not have.
    b'{"inputs":[{"name":"x","datatype":"FP64","shape":[1],"data":[1e309]}]}',
    b'{"inputs":[{"name":"x","datatype":"FP32","shape":[2],"data":[NaN, Infinity]}]}',
    # More than 64 dims; a zero dim times huge dims.
    b'{"inputs":[{"name":"x","datatype":"FP32","shape":[' + b"1," * 70 + b'1],"data":[1]}]}',
    b'{"inputs":[{"name":"x","datatype":"FP32","shape":[0,4611686018427387904],"data":[]}]}',
    b'{"inputs":[{"name":"x","datatype":"BYTES","shape":[0,9223372036854775807,2],"data":[]}]}',
]
HOSTILE_IDS = [
    "deep-data",
    "deep-body",
    "5000-digit-data",
    "5000-digit-dim",
    "1e309",
    "nan-infinity",
    "71-dims",
    "zero-times-huge",
    "bytes-zero-times-huge",
]


def hostile_binary(count: int, size: int) -> tuple[bytes, int]:
    """A BYTES input whose shape claims ``count`` elements over ``size`` bytes."""
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "datatype": "BYTES",
                    "shape": [count],
                    "parameters": {"binary_data_size": size},
                }
            ]
        }
    ).encode()
    return header + bytes(size), len(header)


@BOUNDED
@given(
    request=requests(["json", "binary"]),
    data=st.data(),
    content_type=st.sampled_from([None, "application/json", "application/msgpack"]),
)
def test_mutated_bodies_give_sluice_errors(
    request: Request, data: st.DataObject, content_type: str | None
) -> None:
    body, header_length = request.binary_body()
    bad = data.draw(mutated(body))
    length = data.draw(
        st.sampled_from([None, header_length, 0, -1, len(bad) + 1]) | st.integers(0, len(bad))
    )
    result = outcome(lambda: decode(bad, content_type, length))
    assert result is None or isinstance(result, InferRequest)


@BOUNDED
@given(request=requests(["json", "bin"]), data=st.data())
def test_mutated_msgpack_gives_sluice_errors(request: Request, data: st.DataObject) -> None:
    bad = data.draw(mutated(request.msgpack_body()))
    result = outcome(lambda: decode(bad, "application/msgpack", None))
    assert result is None or isinstance(result, InferRequest)


@BOUNDED
@given(request=requests(["json"]), data=st.data(), as_msgpack=st.booleans())
def test_wrong_types_give_sluice_errors(
    request: Request, data: st.DataObject, as_msgpack: bool
) -> None:
    header = data.draw(retyped(request))
    body, content_type = json.dumps(header).encode(), None
    if as_msgpack:
        try:
            body, content_type = msgpack.packb(header, use_bin_type=True), "application/msgpack"
        except OverflowError:
            pass  # msgpack has no integers past 64 bits; such a header travels as JSON
    result = outcome(lambda: decode(body, content_type, None))
    assert result is None or isinstance(result, InferRequest)


@pytest.mark.parametrize("body", HOSTILE_BODIES, ids=HOSTILE_IDS)
def test_hostile_json_gives_sluice_errors(body: bytes) -> None:
    result = outcome(lambda: decode(body, None, None))
    assert result is None or isinstance(result, InferRequest)


@BOUNDED
@given(
    count=st.sampled_from([2**40, 2**62, 2**63 - 1]) | st.integers(0, 64),
    size=st.integers(0, 64),
)
def test_bytes_counts_are_checked_against_the_data(count: int, size: int) -> None:
    body, header_length = hostile_binary(count, size)
    result = outcome(lambda: decode(body, None, header_length))
    if result is not None:
        # Only possible when every element is there: each takes at least its 4-byte prefix.
        assert 4 * count <= size


@BOUNDED
@given(
    body=st.binary(max_size=256)
    | st.binary(max_size=64).map(gzip.compress).flatmap(mutated)
    | st.binary(max_size=64).map(zlib.compress).flatmap(mutated),
    encoding=st.sampled_from(["gzip", "deflate", "x-gzip", "br", "identity", "GZIP, deflate"]),
    limit=st.sampled_from([0, 16, 1024]),
)
def test_arbitrary_encoded_bodies_give_sluice_errors(
    body: bytes, encoding: str, limit: int
) -> None:
    result = outcome(lambda: decode_body(body, encoding, limit))
    assert result is None or len(result) <= limit


@BOUNDED
@given(
    parts_spec=st.lists(
        st.tuples(st.binary(min_size=1, max_size=8), st.integers(1, 20_000)),
        min_size=2,
        max_size=3,
    )
)
def test_every_gzip_member_is_decoded_once(parts_spec: list[tuple[bytes, int]]) -> None:
    # Members past 64 KiB each cross the decoder's output chunk at a member boundary.
    parts = [pattern * repeat for pattern, repeat in parts_spec]
    whole = b"".join(parts)
    encoded = b"".join(gzip.compress(p) for p in parts)
    assert decode_body(encoded, "gzip", max(1, len(whole))) == whole
