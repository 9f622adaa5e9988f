"""Messages and the numpy reference path shared by both assembly twins.

Both ``_python`` and the Cython ``_native`` import this module, so every message
is spelled once; the native twin also falls back to the numpy path here for
object (BYTES) arrays, whose elements are references rather than plain bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from serving.errors import InternalError

__all__ = [
    "assemble_numpy",
    "bad_dtype",
    "bad_rank",
    "bad_rows",
    "scatter_numpy",
    "too_large",
]


def bad_rows(total: int, rows: int) -> InternalError:
    return InternalError(f"batch assembly: requests hold {total} rows, the batch buffer {rows}")


def bad_rank(index: int, shape: Sequence[int], row_shape: Sequence[int]) -> InternalError:
    return InternalError(
        f"batch assembly: request {index} has shape {list(shape)}, which does not fit rows "
        f"of shape {list(row_shape)}"
    )


def too_large(index: int, shape: Sequence[int], row_shape: Sequence[int]) -> InternalError:
    return InternalError(
        f"batch scatter: request {index} expects rows of shape {list(shape)}, larger than "
        f"the model's output rows {list(row_shape)}"
    )


def bad_dtype(index: int, dtype: Any, expected: Any) -> InternalError:
    return InternalError(
        f"batch assembly: request {index} has dtype {dtype}, the batch buffer {expected}"
    )


def _fits(shape: Sequence[int], row_shape: Sequence[int]) -> bool:
    return len(shape) == len(row_shape) and all(
        s <= d for s, d in zip(shape, row_shape, strict=True)
    )


def assemble_numpy(parts: Sequence[np.ndarray], out: np.ndarray, pad_value: Any = 0) -> None:
    """Copy each part's rows into ``out`` one after another, padding smaller rows."""
    row_shape = out.shape[1:]
    total = sum(part.shape[0] for part in parts)
    if total != out.shape[0]:
        raise bad_rows(total, out.shape[0])
    offset = 0
    for index, part in enumerate(parts):
        if part.dtype != out.dtype:
            raise bad_dtype(index, part.dtype, out.dtype)
        rows = part.shape[0]
        shape = part.shape[1:]
        region = out[offset : offset + rows]
        if shape == row_shape:
            region[...] = part
        elif _fits(shape, row_shape):
            region[...] = pad_value
            region[(slice(None), *(slice(0, d) for d in shape))] = part
        else:
            raise bad_rank(index, part.shape, row_shape)
        offset += rows


def scatter_numpy(
    batch: np.ndarray, rows: Sequence[int], shapes: Sequence[Sequence[int] | None]
) -> list[np.ndarray]:
    """Split ``batch`` into fresh arrays of ``rows[i]`` rows, cut to ``shapes[i]`` per row."""
    row_shape = batch.shape[1:]
    total = sum(rows)
    if total > batch.shape[0]:
        raise bad_rows(total, batch.shape[0])
    result = []
    offset = 0
    for index, (count, shape) in enumerate(zip(rows, shapes, strict=True)):
        region = batch[offset : offset + count]
        if shape is not None and tuple(shape) != row_shape:
            if not _fits(shape, row_shape):
                raise too_large(index, shape, row_shape)
            region = region[(slice(None), *(slice(0, d) for d in shape))]
        result.append(np.array(region, copy=True, order="C"))
        offset += count
    return result
