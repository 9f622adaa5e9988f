"""Reusable batch buffers, one kind per (input, dtype, padded row shape).

A buffer is lent to exactly one execution at a time and comes back only after
that execution's outputs were copied out for the requests (``scatter`` always
allocates), so no request ever holds memory a later batch overwrites.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

__all__ = ["BufferPool"]

BufferKey = tuple[str, str, tuple[int, ...]]


class BufferPool:
    def __init__(self, max_rows: int, max_kinds: int = 64) -> None:
        self._max_rows = max(1, max_rows)
        self._max_kinds = max_kinds
        self._free: OrderedDict[BufferKey, list[np.ndarray]] = OrderedDict()

    def acquire(self, name: str, dtype: np.dtype, row_shape: tuple[int, ...]) -> np.ndarray:
        """A C-contiguous ``(max_rows, *row_shape)`` array, reused when one is free."""
        key = (name, dtype.str, row_shape)
        free = self._free.get(key)
        if free:
            self._free.move_to_end(key)
            return free.pop()
        return np.empty((self._max_rows, *row_shape), dtype=dtype)

    def release(self, name: str, buffer: np.ndarray) -> None:
        if buffer.dtype == np.dtype(object):
            return  # references to old requests' bytes: let them go
        key = (name, buffer.dtype.str, tuple(buffer.shape[1:]))
        self._free.setdefault(key, []).append(buffer)
        self._free.move_to_end(key)
        while len(self._free) > self._max_kinds:
            self._free.popitem(last=False)
