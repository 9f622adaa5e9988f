"""The seam between "a request arrives" and "a session runs".

A scheduler takes validated model inputs and returns model outputs. The
direct scheduler runs each request as its own execution, at most one per model
instance at a time, off the event loop. The dynamic batcher plugs in here with
the same interface, so front ends and the core never change when it does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol

import numpy as np

__all__ = ["DirectScheduler", "Execution", "RunFn", "Scheduler"]

_NO_PARAMETERS: Mapping[str, Any] = MappingProxyType({})

RunFn = Callable[[Mapping[str, np.ndarray], Sequence[str]], dict[str, np.ndarray]]


@dataclass(frozen=True, slots=True)
class Execution:
    """What one scheduled request got back, and where its time went."""

    outputs: dict[str, np.ndarray]
    queue_ns: int
    compute_infer_ns: int
    batch_size: int  # rows in the execution that served this request
    first_in_batch: bool = True  # exactly one request per execution counts it


class Scheduler(Protocol):
    async def schedule(
        self,
        inputs: Mapping[str, np.ndarray],
        output_names: Sequence[str],
        batch_size: int,
        parameters: Mapping[str, Any] = ...,
    ) -> Execution:
        """Run ``inputs`` (``batch_size`` rows) and return the named outputs.

        ``parameters`` are the request's parameters (``priority``, ``timeout``
        in microseconds) for schedulers that honour them.
        """
        ...

    def drain(self) -> None:
        """Hold nothing back any more: what is queued, and what arrives from now on,
        runs as soon as an instance is free (a shutdown or a retiring version)."""
        ...

    async def close(self) -> None:
        """Stop taking work; fail or finish what is queued."""
        ...


class DirectScheduler:
    """One execution per request; ``instances`` executions may run at once.

    Executions run in worker threads (ONNX Runtime releases the GIL), except short
    ones: when a model's executions average under ``inline_below_ns`` and an instance
    is free, the handoff to a thread and back would cost more than the execution
    itself, so it runs on the event loop. A request that waited for an instance runs
    inline too once the average says so: under a steady load the requests queued while
    the first executions ran in threads would otherwise keep the model in threads.
    """

    def __init__(
        self,
        run: RunFn,
        instances: int,
        executor: Executor | None = None,
        *,
        inline_below_ns: int = 0,
        clock: Callable[[], int] = time.perf_counter_ns,
    ) -> None:
        self._run = run
        self._instances = max(1, instances)
        self._slots = asyncio.Semaphore(self._instances)
        self._executor = executor
        self._inline_below_ns = inline_below_ns
        self._clock = clock
        self._average_ns: float | None = None  # moving average of execution time
        self._running = 0  # executions in worker threads

    def _observe(self, ns: int) -> None:
        avg = self._average_ns
        self._average_ns = ns if avg is None else avg + (ns - avg) / 16

    @property
    def _short(self) -> bool:
        """Whether executions average under ``inline_below_ns``."""
        avg = self._average_ns
        return avg is not None and avg < self._inline_below_ns

    @property
    def runs_inline(self) -> bool:
        """Whether a request arriving now runs on the event loop: executions are short
        and an instance is free (the threads hold fewer than ``instances``)."""
        return self._short and self._running < self._instances

    async def schedule(
        self,
        inputs: Mapping[str, np.ndarray],
        output_names: Sequence[str],
        batch_size: int,
        parameters: Mapping[str, Any] = _NO_PARAMETERS,
    ) -> Execution:
        clock = self._clock
        queued = clock()
        avg = self._average_ns
        if avg is not None and avg < self._inline_below_ns and self._running < self._instances:
            # ``runs_inline``, spelt out on the path every short request takes. The loop
            # runs one inline execution at a time and the threads hold fewer than
            # ``instances``: no slot to take, nothing to wait for.
            outputs = self._run(inputs, output_names)
            ran = clock() - queued
            self._average_ns = avg + (ran - avg) / 16
            return Execution(outputs, 0, ran, batch_size)
        async with self._slots:
            started = clock()
            if self._short:
                outputs = self._run(inputs, output_names)
                done = clock()
                self._observe(done - started)
                return Execution(outputs, started - queued, done - started, batch_size)
            self._running += 1
            try:
                loop = asyncio.get_running_loop()
                outputs, ran_ns = await loop.run_in_executor(
                    self._executor, self._timed_run, inputs, output_names
                )
            finally:
                self._running -= 1
            done = clock()
        # The run alone decides whether it could go inline: the handoff to a thread and
        # back (slow on a busy loop) is what running inline saves.
        self._observe(ran_ns)
        return Execution(outputs, started - queued, done - started, batch_size)

    def _timed_run(
        self, inputs: Mapping[str, np.ndarray], output_names: Sequence[str]
    ) -> tuple[dict[str, np.ndarray], int]:
        """In the worker thread: the outputs and the nanoseconds the run itself took."""
        started = self._clock()
        outputs = self._run(inputs, output_names)
        return outputs, self._clock() - started

    def drain(self) -> None:
        """Nothing is held back here: each request runs as soon as a slot is free."""

    async def close(self) -> None:
        """Nothing is queued here: each request holds its own slot while it runs."""
