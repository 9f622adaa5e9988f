"""Batch assembly and scatter, the same over both twins."""

from __future__ import annotations

import os
from types import ModuleType

import numpy as np
import pytest

from serving.batching import IMPLEMENTATION
from serving.errors import InternalError


def test_selector_picks_the_native_twin_unless_told_not_to() -> None:
    expected = "python" if os.environ.get("SLUICE_NO_EXTENSIONS") == "1" else "native"
    assert IMPLEMENTATION == expected


@pytest.mark.parametrize("dtype", ["float32", "int64", "uint8", "bool", "float16", "float64"])
def test_equal_shapes_are_concatenated(twin: ModuleType, dtype: str) -> None:
    parts = [np.arange(n * 4).reshape(n, 2, 2).astype(dtype) for n in (1, 3, 2)]
    out = np.empty((6, 2, 2), dtype=dtype)
    twin.assemble(parts, out, 0)
    np.testing.assert_array_equal(out, np.concatenate(parts))


def test_smaller_rows_are_padded_with_the_pad_value(twin: ModuleType) -> None:
    a = np.array([[1, 2, 3]], dtype=np.int32)
    b = np.array([[4, 5, 6, 7, 8], [9, 10, 11, 12, 13]], dtype=np.int32)
    out = np.zeros((3, 5), dtype=np.int32)
    twin.assemble([a, b], out, -1)
    np.testing.assert_array_equal(out, [[1, 2, 3, -1, -1], [4, 5, 6, 7, 8], [9, 10, 11, 12, 13]])


def test_padding_on_an_inner_axis(twin: ModuleType) -> None:
    a = np.arange(2 * 2 * 3, dtype=np.float32).reshape(2, 2, 3)
    out = np.zeros((2, 4, 3), dtype=np.float32)
    twin.assemble([a], out, 0.5)
    np.testing.assert_array_equal(out[:, :2], a)
    assert (out[:, 2:] == 0.5).all()


def test_bytes_inputs_use_the_numpy_path(twin: ModuleType) -> None:
    a = np.array([[b"a"]], dtype=object)
    b = np.array([[b"b", b"c"]], dtype=object)
    out = np.empty((2, 2), dtype=object)
    twin.assemble([a, b], out, b"")
    assert out.tolist() == [[b"a", b""], [b"b", b"c"]]
    pieces = twin.scatter(out, [1, 1], [(1,), None])
    assert [p.tolist() for p in pieces] == [[[b"a"]], [[b"b", b"c"]]]


def test_scatter_unpads_and_always_copies(twin: ModuleType) -> None:
    batch = np.arange(3 * 4 * 2, dtype=np.int16).reshape(3, 4, 2)
    pieces = twin.scatter(batch, [1, 2], [(2, 2), None])
    np.testing.assert_array_equal(pieces[0], batch[:1, :2])
    np.testing.assert_array_equal(pieces[1], batch[1:3])
    for piece in pieces:
        assert not np.shares_memory(piece, batch)
        assert piece.flags.c_contiguous


def test_non_contiguous_parts_are_accepted(twin: ModuleType) -> None:
    base = np.arange(24, dtype=np.float64).reshape(4, 6)
    part = base[:, ::2]  # strided view
    out = np.empty((4, 3), dtype=np.float64)
    twin.assemble([part], out, 0)
    np.testing.assert_array_equal(out, part)


def test_errors_are_the_same(twin: ModuleType) -> None:
    out = np.empty((2, 3), dtype=np.float32)
    with pytest.raises(InternalError, match="requests hold 1 rows, the batch buffer 2"):
        twin.assemble([np.zeros((1, 3), np.float32)], out, 0)
    with pytest.raises(InternalError, match=r"request 0 has shape \[2, 4\]"):
        twin.assemble([np.zeros((2, 4), np.float32)], out, 0)
    with pytest.raises(InternalError, match="request 0 has dtype int32"):
        twin.assemble([np.zeros((2, 3), np.int32)], out, 0)
    with pytest.raises(InternalError, match=r"request 0 expects rows of shape \[5\]"):
        twin.scatter(out, [2], [(5,)])


def test_twins_agree_on_random_shapes() -> None:
    from tests.unit.serving.twins import load_twin

    py = load_twin("serving.batching", "py")
    native = load_twin("serving.batching", "native")
    rng = np.random.default_rng(7)
    for _ in range(200):
        ndim = int(rng.integers(0, 4))
        row = tuple(int(x) for x in rng.integers(1, 5, ndim))
        parts = [
            rng.integers(
                -99, 99, (int(rng.integers(1, 4)), *(int(rng.integers(0, d + 1)) for d in row))
            ).astype(np.int32)
            for _ in range(int(rng.integers(1, 6)))
        ]
        rows = sum(p.shape[0] for p in parts)
        expected = np.empty((rows, *row), np.int32)
        got = np.empty((rows, *row), np.int32)
        py.assemble(parts, expected, -7)
        native.assemble(parts, got, -7)
        np.testing.assert_array_equal(got, expected)
        counts = [p.shape[0] for p in parts]
        shapes = [p.shape[1:] for p in parts]
        for a, b, part in zip(
            py.scatter(expected, counts, shapes),
            native.scatter(got, counts, shapes),
            parts,
            strict=True,
        ):
            np.testing.assert_array_equal(a, part)
            np.testing.assert_array_equal(b, part)


def test_scatter_cuts_a_leading_variable_axis_before_fixed_ones(twin: ModuleType) -> None:
    """An encoder's [B, L, D] output cut back to each request's own length L."""
    batch = np.arange(3 * 5 * 4, dtype=np.float32).reshape(3, 5, 4)
    pieces = twin.scatter(batch, [1, 2], [(2, 4), (5, 4)])
    assert [p.shape for p in pieces] == [(1, 2, 4), (2, 5, 4)]
    np.testing.assert_array_equal(pieces[0], batch[:1, :2])
    np.testing.assert_array_equal(pieces[1], batch[1:3])
    assert all(p.flags.c_contiguous and p.base is None for p in pieces)
