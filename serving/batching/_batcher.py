"""The dynamic batcher: a scheduler that runs waiting requests together.

It wraps a runtime's blocking ``run`` exactly as ``DirectScheduler`` does (at
most one execution per instance, off the event loop) and adds a queue and the
flush policy in between. Everything but the execution itself happens on the
event loop, so the queue needs no locks.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

from serving.batching._assembly import assemble, scatter
from serving.batching._config import BatchingConfig
from serving.batching._policy import Decision, Flush, FlushPolicy
from serving.batching._pool import BufferPool
from serving.batching._queue import Pending, PendingQueue
from serving.errors import InvalidArgument, Overloaded, Unavailable
from serving.metrics import Metrics
from serving.scheduler import Execution, RunFn

__all__ = ["DynamicBatcher"]

log = logging.getLogger("sluice.batching")

_NO_PARAMETERS: Mapping[str, Any] = MappingProxyType({})

# Runs a batch as its requests: one outputs dict, or the exception that failed it, each.
RunEachFn = Callable[
    [Sequence[Mapping[str, np.ndarray]], Sequence[str]],
    Sequence["dict[str, np.ndarray] | BaseException"],
]
_CANCELLED = object()


@dataclass(frozen=True, slots=True)
class _Plan:
    """What one execution runs: inputs to assemble, outputs to scatter."""

    requests: tuple[Pending, ...]
    output_names: tuple[str, ...]
    # name -> (parts, batch view of a pooled buffer, pad value); empty for a lone request
    assembly: Mapping[str, tuple[list[np.ndarray], np.ndarray, Any]]
    # output name -> per-request row shapes to cut back to (None: whole rows)
    unpad: Mapping[str, list[tuple[int, ...] | None]]


class DynamicBatcher:
    """Triton's dynamic batcher, plus shape grouping and optional padding.

    ``clock`` (nanoseconds) is injected so tests drive time by hand; queue and
    compute times in each ``Execution`` are measured with it too.
    """

    def __init__(
        self,
        run: RunFn,
        instances: int,
        executor: Executor | None,
        config: Any,
        *,
        metrics: Metrics | None = None,
        model: str = "",
        version: str = "",
        clock: Callable[[], int] = time.monotonic_ns,
        run_each: RunEachFn | None = None,
    ) -> None:
        """``run_each``: a runtime that takes a batch as its requests (a Python model's
        ``execute(requests)``) instead of one tensor per input; nothing is assembled then,
        and an exception in its list fails only that request."""
        self._run = run
        self._run_each = run_each
        self._instances = max(1, instances)
        self._free = self._instances
        self._executor = executor
        self._settings = BatchingConfig.from_model_config(config)
        s = self._settings
        self._policy = FlushPolicy(
            s.max_batch_size,
            s.max_queue_delay_ns,
            s.preferred_batch_sizes,
            s.max_waste,
            run_lone_at_once=s.run_lone_at_once,
        )
        self._padded = {p.name: p for p in s.padded}
        self._metrics = metrics
        self._model = model or str(getattr(config, "name", ""))
        self._version = version
        self._clock = clock
        self._queue = PendingQueue(s.priority_levels)
        self._order: deque[Pending] = deque()  # preserve_ordering: accepted, not yet released
        self._pool = BufferPool(s.max_batch_size)
        self._tasks: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: int | None = None
        self._seq = 0
        self._closed = False
        self._draining = False
        self._exec_ns_avg = 0.0
        self._last_requests = 0  # requests in the latest execution: >1 means under load

    # -- the Scheduler interface ---------------------------------------------

    async def schedule(
        self,
        inputs: Mapping[str, np.ndarray],
        output_names: Sequence[str],
        batch_size: int,
        parameters: Mapping[str, Any] = _NO_PARAMETERS,
    ) -> Execution:
        if self._closed:
            raise Unavailable(f"model '{self._model}' is unloading and takes no new requests")
        level = self._priority(parameters)
        policy = self._settings.policy(level)
        if policy.max_queue_size and self._queue.depth(level) >= policy.max_queue_size:
            self._reject("queue_full")
            raise Overloaded(
                f"model '{self._model}' is overloaded: the queue of priority level {level} "
                f"holds its maximum of {policy.max_queue_size} requests",
                retry_after=self._retry_after(),
            )
        loop = asyncio.get_running_loop()
        self._seq += 1
        item = Pending(
            self._seq,
            inputs,
            tuple(output_names),
            batch_size,
            level=level,
            arrival_ns=self._clock(),
            timeout_ns=policy.timeout_ns(self._timeout_us(parameters)),
            reject_on_timeout=policy.reject_on_timeout,
            group=self._group(inputs),
            pad_shapes=tuple(
                tuple(inputs[name].shape[1:]) if name in inputs else None for name in self._padded
            ),
            future=loop.create_future(),
        )
        self._queue.push(item)
        if self._settings.preserve_ordering:
            self._order.append(item)
        self.wake()
        assert item.future is not None
        try:
            return await item.future  # type: ignore[no-any-return]
        except asyncio.CancelledError:
            if item in self._queue:
                self._queue.remove((item,))
                self._gauge()
            if item.outcome is None:
                item.outcome = _CANCELLED
                self._release_in_order()
            raise

    def drain(self) -> None:
        """Stop waiting for batches to fill: run what is formed whenever an instance is free."""
        if not self._draining:
            self._draining = True
            self.wake()

    async def close(self, *, finish_queued: bool = False) -> None:
        """Stop taking requests; fail what is queued (or run it), then wait for executions."""
        self._closed = True
        if finish_queued:
            self.drain()
        else:
            queued = list(self._queue)
            self._queue.remove(queued)
            for item in queued:
                self._reject("closed")
                self._finish(
                    item,
                    Unavailable(f"model '{self._model}' was unloaded while the request was queued"),
                )
        while self._tasks or (finish_queued and len(self._queue)):
            if self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)
            else:
                self.wake()
                await asyncio.sleep(0)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._gauge()

    # -- deciding ------------------------------------------------------------

    def wake(self) -> None:
        """Run the flush policy now; the timer calls this, as do tests that move the clock."""
        now = self._clock()
        loaded = self._free < self._instances or self._last_requests > 1
        decision = self._policy.decide(
            self._queue, now, self._free, draining=self._draining, loaded=loaded
        )
        self._apply(decision)
        self._arm(decision.wake_at_ns, now)

    def _apply(self, decision: Decision) -> None:
        if decision.expired:
            self._queue.remove(decision.expired)
            for item in decision.expired:
                self._reject("timeout")
                self._finish(
                    item,
                    Unavailable(f"request timed out in queue after {item.timeout_ns // 1000} µs"),
                )
        for flush in decision.flushes:
            self._queue.remove(flush.requests)
            self._free -= 1
            self._last_requests = len(flush.requests)
            if self._metrics is not None:
                self._metrics.observe_batch(self._model, self._version, flush.rows, flush.short)
            task = asyncio.get_running_loop().create_task(self._execute(flush))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._gauge()

    def _arm(self, wake_at: int | None, now: int) -> None:
        if wake_at == self._timer_at and self._timer is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = wake_at
        if wake_at is not None:
            delay = max(0.0, (wake_at - now) / 1e9)
            self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.wake()

    # -- executing -----------------------------------------------------------

    async def _execute(self, flush: Flush) -> None:
        loop = asyncio.get_running_loop()
        started = self._clock()
        released = False
        plan = _Plan(flush.requests, (), {}, {})
        try:
            plan = self._plan(flush)
            results, worker_ns = await loop.run_in_executor(self._executor, self._run_plan, plan)
        except asyncio.CancelledError:
            released = True  # the worker may still use the buffers: never reuse them
            for item in plan.requests:
                self._finish(item, Unavailable(f"model '{self._model}' execution was cancelled"))
            raise
        except BaseException as exc:
            for item in plan.requests:
                self._finish(item, exc)
        else:
            done = self._clock()
            elapsed = done - started
            self._exec_ns_avg = (
                elapsed if not self._exec_ns_avg else (0.8 * self._exec_ns_avg + 0.2 * elapsed)
            )
            for index, (item, outputs) in enumerate(zip(plan.requests, results, strict=True)):
                if isinstance(outputs, BaseException):
                    self._finish(item, outputs)
                    continue
                self._finish(
                    item,
                    Execution(
                        outputs, started - item.arrival_ns, worker_ns, flush.rows, index == 0
                    ),
                )
        finally:
            if not released:
                for name, (_parts, view, _pad) in plan.assembly.items():
                    self._pool.release(name, view.base if view.base is not None else view)
            self._free += 1
            if not self._closed or self._draining or len(self._queue):
                self.wake()

    def _plan(self, flush: Flush) -> _Plan:
        """Choose buffers and shapes on the loop; the copying happens in the worker."""
        requests = flush.requests
        names: dict[str, None] = {}
        for item in requests:
            names.update(dict.fromkeys(item.output_names))
        output_names = tuple(names)
        if len(requests) == 1 or self._run_each is not None:
            return _Plan(requests, output_names, {}, {})
        head = requests[0]
        assembly: dict[str, tuple[list[np.ndarray], np.ndarray, Any]] = {}
        padded_rows: dict[str, list[tuple[int, ...] | None]] = {}
        for name, first in head.inputs.items():
            parts = [item.inputs[name] for item in requests]
            row_shape = tuple(first.shape[1:])
            pad = self._padded.get(name)
            pad_value: Any = 0
            if pad is not None:
                shapes = [tuple(p.shape[1:]) for p in parts]
                row_shape = tuple(max(dims) for dims in zip(*shapes, strict=True))
                if any(s != row_shape for s in shapes):
                    padded_rows[name] = list(shapes)
                pad_value = pad.value
            buffer = self._pool.acquire(name, first.dtype, row_shape)
            assembly[name] = (parts, buffer[: flush.rows], pad_value)
        unpad: dict[str, list[tuple[int, ...] | None]] = {}
        if padded_rows:
            for out in output_names:
                cut = self._settings.cuts.get(out)
                if cut is not None and cut.source in padded_rows:
                    unpad[out] = [
                        None if shape is None else cut.shape(shape)
                        for shape in padded_rows[cut.source]
                    ]
        return _Plan(requests, output_names, assembly, unpad)

    def _run_plan(self, plan: _Plan) -> tuple[list[dict[str, np.ndarray] | BaseException], int]:
        """Assemble, run and scatter one batch in a worker thread; also how long that took
        there (an execution's compute time: the hand-offs to and from the event loop are
        neither queue nor compute)."""
        started = self._clock()
        results = self._run_batch(plan)
        return results, self._clock() - started

    def _run_batch(self, plan: _Plan) -> list[dict[str, np.ndarray] | BaseException]:
        requests = plan.requests
        if self._run_each is not None:
            results = self._run_each([item.inputs for item in requests], plan.output_names)
            return [
                r if isinstance(r, BaseException) else {n: r[n] for n in item.output_names}
                for item, r in zip(requests, results, strict=True)
            ]
        if not plan.assembly:
            outputs = self._run(requests[0].inputs, plan.output_names)
            return [{name: outputs[name] for name in requests[0].output_names}]
        inputs = {}
        for name, (parts, view, pad_value) in plan.assembly.items():
            assemble(parts, view, pad_value)
            inputs[name] = view
        outputs = self._run(inputs, plan.output_names)
        rows = [item.rows for item in requests]
        pieces = {
            name: scatter(outputs[name], rows, plan.unpad.get(name, [None] * len(requests)))
            for name in plan.output_names
        }
        return [
            {name: pieces[name][index] for name in item.output_names}
            for index, item in enumerate(requests)
        ]

    # -- handing results back ------------------------------------------------

    def _finish(self, item: Pending, outcome: Any) -> None:
        if item.outcome is _CANCELLED:
            return
        item.outcome = outcome
        if self._settings.preserve_ordering:
            self._release_in_order()
        else:
            _resolve(item)

    def _release_in_order(self) -> None:
        order = self._order
        while order and order[0].outcome is not None:
            _resolve(order.popleft())

    # -- request parameters --------------------------------------------------

    def _priority(self, parameters: Mapping[str, Any]) -> int:
        raw = parameters.get("priority", 0)
        levels = self._settings.priority_levels
        if isinstance(raw, bool) or not isinstance(raw, int) or not 0 <= raw <= levels:
            raise InvalidArgument(
                f"priority {raw!r} is out of range for model '{self._model}': use 1 (highest) "
                f"to {levels}, or 0 for the model's default {self._settings.default_priority}"
            )
        return raw or self._settings.default_priority

    def _timeout_us(self, parameters: Mapping[str, Any]) -> int:
        raw = parameters.get("timeout", 0)
        if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
            raise InvalidArgument(
                f"timeout {raw!r} must be a non-negative integer number of microseconds"
            )
        return raw

    def _group(self, inputs: Mapping[str, np.ndarray]) -> tuple[Any, ...]:
        padded = self._padded
        return tuple(
            (name, arr.dtype.str, arr.ndim if name in padded else arr.shape[1:])
            for name, arr in sorted(inputs.items())
        )

    # -- visibility ----------------------------------------------------------

    def _retry_after(self) -> float:
        """Seconds until the queue has likely drained by one batch per instance."""
        capacity = self._settings.max_batch_size * self._instances
        batches = math.ceil((self._queue.rows + 1) / capacity)
        wait_ns = self._settings.max_queue_delay_ns + batches * self._exec_ns_avg
        return max(0.001, wait_ns / 1e9)

    def _reject(self, reason: str) -> None:
        if self._metrics is not None:
            self._metrics.observe_rejection(self._model, self._version, reason)

    def _gauge(self) -> None:
        if self._metrics is not None:
            self._metrics.set_queue_depth(self._model, self._version, len(self._queue))

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    @property
    def free_instances(self) -> int:
        return self._free


def _resolve(item: Pending) -> None:
    future = item.future
    if future is None or future.done():
        return
    if isinstance(item.outcome, BaseException):
        future.set_exception(item.outcome)
    else:
        future.set_result(item.outcome)
