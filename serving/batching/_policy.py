"""The flush decision: which waiting requests run now, and when to look again.

A pure function of the queue, the time and the free instances: no clock, no
timers, no I/O, so tests feed it a queue and a time and assert the batches.

Rules, in Triton's terms:

- Requests are served by priority level, then arrival; a timed-out request with
  ``timeout_action: DELAY`` goes behind the others of its level, one with REJECT
  is failed (``Decision.expired``) once the time is strictly past its deadline.
- A batch starts at the first request in that order and takes the following
  requests that may share it (same shapes, or within the padding waste cap),
  skipping the others, so mixed shapes still batch with their own kind. A request
  is never split: the batch closes at the first one of its kind that does not fit.
- It runs when it is full; when the next request of its kind does not fit; when a
  prefix of it reaches a preferred batch size; at once when it is the only request
  waiting and the model is idle (an instance is free, none is running, and the last
  execution served a single request); else when its oldest request has waited
  ``max_queue_delay`` (0: at once) or a member reaches its deadline. Under load a
  lone request would run a batch of one, the least efficient size, while the rest of
  the load arrives behind it: it waits for company instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import prod

from serving.batching._queue import Pending, PendingQueue

__all__ = ["SHORT_REASONS", "Decision", "Flush", "FlushPolicy"]

#: Why a batch ran with fewer rows than ``max_batch_size``:
#: ``idle``: it was the only request waiting on an idle model, so it ran at once;
#: ``delay_expired``: its oldest request waited ``max_queue_delay_microseconds`` (0 counts);
#: ``timeout``: a member reached its queue timeout before the delay ran out;
#: ``shape``: the delay ran out while requests that would have fitted waited with other shapes
#: (or past the padding waste cap);
#: ``fit``: the next request of its kind has more rows than were left (requests are never split);
#: ``preferred``: it reached a ``preferred_batch_size``;
#: ``closing``: the batcher was closing and finished queued work.
SHORT_REASONS = ("idle", "delay_expired", "timeout", "shape", "fit", "preferred", "closing")


@dataclass(frozen=True, slots=True)
class Flush:
    """One batch to run now."""

    requests: tuple[Pending, ...]
    rows: int
    short: str | None  # one of SHORT_REASONS, or None for a full batch


@dataclass(frozen=True, slots=True)
class Decision:
    flushes: tuple[Flush, ...] = ()
    expired: tuple[Pending, ...] = ()  # REJECT requests past their deadline
    wake_at_ns: int | None = None  # decide again then, unless something happens first


@dataclass(slots=True)
class _Formed:
    members: list[Pending]
    rows: int
    blocked_shape: bool
    blocked_fit: bool


class FlushPolicy:
    def __init__(
        self,
        max_batch_size: int,
        max_queue_delay_ns: int = 0,
        preferred_batch_sizes: Sequence[int] = (),
        max_waste: float = 1.0,
        *,
        run_lone_at_once: bool = True,
    ) -> None:
        self.max_batch_size = max(1, max_batch_size)
        self.max_queue_delay_ns = max(0, max_queue_delay_ns)
        self.preferred = frozenset(preferred_batch_sizes)
        self.max_waste = max_waste
        self.run_lone_at_once = run_lone_at_once

    def decide(
        self,
        queue: PendingQueue,
        now_ns: int,
        free_instances: int,
        *,
        draining: bool = False,
        loaded: bool = False,
    ) -> Decision:
        """The batches to run now on up to ``free_instances`` instances.

        ``draining`` (closing with queued work to finish) runs whatever is formed
        without waiting. ``loaded``: an execution is running, or the last one served
        more than one request; a lone request then waits for company.
        """
        expired: tuple[Pending, ...] = ()
        wake: int | None = None
        if queue.timed:  # the common case has no deadlines: no pass over the queue for them
            expired = tuple(item for item in queue if item.expired(now_ns))
            for item in queue:
                if item.deadline_ns is not None and item.deadline_ns >= now_ns:
                    wake = _earliest(wake, item.deadline_ns + 1)
        flushes: list[Flush] = []
        if free_instances > 0:
            candidates = list(queue.ordered(now_ns))
            while candidates and len(flushes) < free_instances:
                formed = self._form(candidates)
                lone = len(candidates) == 1 and not loaded and not flushes
                flush, due = self._judge(formed, now_ns, lone, draining)
                if flush is None:
                    wake = _earliest(wake, due)
                    break
                flushes.append(flush)
                taken = {id(item) for item in flush.requests}
                candidates = [item for item in candidates if id(item) not in taken]
        return Decision(tuple(flushes), expired, wake)

    def _judge(
        self, formed: _Formed, now_ns: int, lone: bool, draining: bool
    ) -> tuple[Flush | None, int | None]:
        members, rows = formed.members, formed.rows
        if rows >= self.max_batch_size:
            return Flush(tuple(members), rows, None), now_ns
        if formed.blocked_fit:
            return Flush(tuple(members), rows, "fit"), now_ns
        if self.preferred:
            best, running = 0, 0
            for count, item in enumerate(members, 1):
                running += item.rows
                if running in self.preferred:
                    best = count
            if best:
                chosen = members[:best]
                return Flush(tuple(chosen), sum(i.rows for i in chosen), "preferred"), now_ns
        if lone and self.run_lone_at_once:
            return Flush(tuple(members), rows, "idle"), now_ns
        if draining:
            return Flush(tuple(members), rows, "closing"), now_ns
        delay_due = min(i.arrival_ns for i in members) + self.max_queue_delay_ns
        deadlines = [i.deadline_ns for i in members if i.deadline_ns is not None]
        timeout_due = min(deadlines) if deadlines else None
        if now_ns >= delay_due:
            reason = "shape" if formed.blocked_shape else "delay_expired"
            return Flush(tuple(members), rows, reason), now_ns
        if timeout_due is not None and now_ns >= timeout_due:
            return Flush(tuple(members), rows, "timeout"), now_ns
        return None, _earliest(delay_due, timeout_due)

    def _form(self, candidates: Sequence[Pending]) -> _Formed:
        head = candidates[0]
        members = [head]
        rows = head.rows
        blocked_shape = blocked_fit = False
        padding = bool(head.pad_shapes)
        if padding:
            real = [_elements(s, head.rows) for s in head.pad_shapes]
            widest = list(head.pad_shapes)
        for item in candidates[1:]:
            if rows >= self.max_batch_size:
                break
            if item.group != head.group:
                blocked_shape = blocked_shape or item.rows <= self.max_batch_size - rows
                continue
            if rows + item.rows > self.max_batch_size:
                blocked_fit = True
                break
            if padding:
                new_widest = [_widen(w, s) for w, s in zip(widest, item.pad_shapes, strict=True)]
                new_real = [
                    r + _elements(s, item.rows) for r, s in zip(real, item.pad_shapes, strict=True)
                ]
                total_rows = rows + item.rows
                padded = sum(_elements(w, total_rows) for w in new_widest)
                if padded and 1.0 - sum(new_real) / padded > self.max_waste:
                    blocked_shape = True
                    continue
                widest, real = new_widest, new_real
            members.append(item)
            rows += item.rows
        return _Formed(members, rows, blocked_shape, blocked_fit)


def _earliest(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def _elements(shape: tuple[int, ...] | None, rows: int) -> int:
    return 0 if shape is None else rows * prod(shape)


def _widen(a: tuple[int, ...] | None, b: tuple[int, ...] | None) -> tuple[int, ...] | None:
    if a is None or b is None:
        return a if b is None else b
    return tuple(max(x, y) for x, y in zip(a, b, strict=True))
