"""Waiting requests, one arrival-ordered queue per priority level."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["Pending", "PendingQueue"]


class Pending:
    """One request from the moment it is queued until its result is handed back.

    ``group`` is equal for requests that may share a batch (same input names and
    per-row shapes, padded inputs compared by rank only); ``pad_shapes`` holds the
    per-row shape of each padded input (``None`` when an optional one is absent).
    """

    __slots__ = (
        "arrival_ns",
        "deadline_ns",
        "future",
        "group",
        "inputs",
        "level",
        "outcome",
        "output_names",
        "pad_shapes",
        "reject_on_timeout",
        "rows",
        "seq",
        "timeout_ns",
    )

    def __init__(
        self,
        seq: int,
        inputs: Mapping[str, np.ndarray],
        output_names: Sequence[str],
        rows: int,
        *,
        level: int = 1,
        arrival_ns: int = 0,
        timeout_ns: int = 0,
        reject_on_timeout: bool = True,
        group: Hashable = (),
        pad_shapes: tuple[tuple[int, ...] | None, ...] = (),
        future: asyncio.Future[Any] | None = None,
    ) -> None:
        self.seq = seq
        self.inputs = inputs
        self.output_names = output_names
        self.rows = rows
        self.level = level
        self.arrival_ns = arrival_ns
        self.timeout_ns = timeout_ns
        self.deadline_ns: int | None = arrival_ns + timeout_ns if timeout_ns else None
        self.reject_on_timeout = reject_on_timeout
        self.group = group
        self.pad_shapes = pad_shapes
        self.future = future
        self.outcome: Any = None  # set when done, kept until released in order

    def expired(self, now_ns: int) -> bool:
        """Past its deadline and to be rejected."""
        return self.reject_on_timeout and self.deadline_ns is not None and now_ns > self.deadline_ns

    def delayed(self, now_ns: int) -> bool:
        """Past its deadline with timeout_action DELAY: served after its level's others."""
        return (
            not self.reject_on_timeout
            and self.deadline_ns is not None
            and now_ns > self.deadline_ns
        )

    def __repr__(self) -> str:
        return f"Pending(seq={self.seq}, rows={self.rows}, level={self.level})"


class PendingQueue:
    """Arrival-ordered requests per priority level (level 1 first)."""

    def __init__(self, levels: int = 1) -> None:
        self._levels: list[deque[Pending]] = [deque() for _ in range(max(1, levels))]
        self._count = 0
        self._rows = 0
        self._timed = 0  # requests with a deadline

    def __len__(self) -> int:
        return self._count

    @property
    def rows(self) -> int:
        return self._rows

    @property
    def timed(self) -> int:
        """How many waiting requests have a queue deadline (0: none can expire)."""
        return self._timed

    def depth(self, level: int) -> int:
        return len(self._levels[level - 1])

    def push(self, item: Pending) -> None:
        self._levels[item.level - 1].append(item)
        self._count += 1
        self._rows += item.rows
        if item.deadline_ns is not None:
            self._timed += 1

    def remove(self, items: Iterable[Pending]) -> None:
        gone = {id(item) for item in items}
        if not gone:
            return
        for index, level in enumerate(self._levels):
            if any(id(item) in gone for item in level):
                kept: deque[Pending] = deque()
                for item in level:
                    if id(item) not in gone:
                        kept.append(item)
                        continue
                    self._count -= 1
                    self._rows -= item.rows
                    if item.deadline_ns is not None:
                        self._timed -= 1
                self._levels[index] = kept

    def __contains__(self, item: Pending) -> bool:
        return any(item in level for level in self._levels)

    def __iter__(self) -> Iterator[Pending]:
        for level in self._levels:
            yield from level

    def ordered(self, now_ns: int) -> Iterator[Pending]:
        """Service order: by level; within a level, arrival order with delayed ones last.

        Expired (REJECT) requests are left out: they are about to be failed.
        """
        for level in self._levels:
            later = []
            for item in level:
                if item.deadline_ns is not None and now_ns > item.deadline_ns:
                    if not item.reject_on_timeout:
                        later.append(item)
                    continue
                yield item
            yield from later
