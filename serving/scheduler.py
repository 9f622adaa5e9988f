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

    async def close(self) -> None:
        """Stop taking work; fail or finish what is queued."""
        ...


class DirectScheduler:
    """One execution per request; ``instances`` executions may run at once."""

    def __init__(self, run: RunFn, instances: int, executor: Executor | None = None) -> None:
        self._run = run
        self._slots = asyncio.Semaphore(max(1, instances))
        self._executor = executor

    async def schedule(
        self,
        inputs: Mapping[str, np.ndarray],
        output_names: Sequence[str],
        batch_size: int,
        parameters: Mapping[str, Any] = _NO_PARAMETERS,
    ) -> Execution:
        queued = time.perf_counter_ns()
        async with self._slots:
            started = time.perf_counter_ns()
            loop = asyncio.get_running_loop()
            outputs = await loop.run_in_executor(self._executor, self._run, inputs, output_names)
            done = time.perf_counter_ns()
        return Execution(outputs, started - queued, done - started, batch_size)

    async def close(self) -> None:
        """Nothing is queued here: each request holds its own slot while it runs."""
