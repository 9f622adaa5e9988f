"""Sluice's load generator: closed-loop concurrency and open-loop constant or Poisson rates.

Protocol-neutral: it drives ``Sender`` objects (one per connection or concurrent slot,
see ``_http`` and ``_grpc``) and records latencies in microseconds.

- Closed loop: each of N senders sends its next request as soon as the last one answered.
- Open loop: the send times are fixed in advance (``_schedule``); a free sender takes the
  next due request, and latency counts from the *intended* send time, so requests that
  waited for a sender while the server stalled are charged for the wait.

Only requests whose (intended) send time falls after the warm-up count.
"""

from __future__ import annotations

import asyncio
import time
from array import array
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

from serving.loadgen._schedule import constant_schedule, poisson_schedule

__all__ = ["LoadResult", "LoadSpec", "Sender", "drive", "open_senders"]

Mode = Literal["closed", "constant", "poisson"]
ProgressFn = Callable[[float, int, int], None]  # elapsed s, successes, errors
_MAX_ERROR_SAMPLES = 5


class Sender(Protocol):
    async def send(self, index: int) -> bool:
        """Send pre-encoded request ``index``; True when it succeeded."""

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class LoadSpec:
    connections: int
    duration: float
    warmup: float = 0.0
    mode: Mode = "closed"
    rate: float = 0.0  # open loop: requests per second
    seed: int = 0  # Poisson schedule seed

    def schedule(self) -> np.ndarray:
        total = self.warmup + self.duration
        if self.mode == "constant":
            return constant_schedule(self.rate, total)
        if self.mode == "poisson":
            return poisson_schedule(self.rate, total, self.seed)
        raise ValueError(f"mode {self.mode!r} has no schedule")


@dataclass(slots=True)
class LoadResult:
    duration: float  # measured window, seconds
    latencies_us: array = field(default_factory=lambda: array("q"))
    errors: int = 0
    dropped: int = 0  # open loop: intended sends that never completed
    error_samples: list[str] = field(default_factory=list)

    @property
    def successes(self) -> int:
        return len(self.latencies_us)

    @property
    def throughput(self) -> float:
        return self.successes / self.duration if self.duration > 0 else 0.0


class _Recorder:
    __slots__ = ("result",)

    def __init__(self, duration: float) -> None:
        self.result = LoadResult(duration=duration)

    def ok(self, latency_ns: int) -> None:
        self.result.latencies_us.append(latency_ns // 1000)

    def failed(self, reason: str) -> None:
        self.result.errors += 1
        if len(self.result.error_samples) < _MAX_ERROR_SAMPLES:
            self.result.error_samples.append(reason)


async def _attempt(sender: Sender, index: int) -> str | None:
    """None on success, else a short reason."""
    try:
        if await sender.send(index):
            return None
        return "unsuccessful status"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"[:200]


async def drive(
    senders: list[Sender],
    spec: LoadSpec,
    payload_count: int,
    progress: ProgressFn | None = None,
) -> LoadResult:
    """Run ``spec`` over ``senders`` (one per connection) and return what was recorded."""
    if len(senders) != spec.connections:
        raise ValueError(f"{spec.connections} connections but {len(senders)} senders")
    recorder = _Recorder(spec.duration)
    start = time.perf_counter_ns()
    measure_from = start + int(spec.warmup * 1e9)
    end = measure_from + int(spec.duration * 1e9)
    reporter = asyncio.create_task(_report(progress, recorder, measure_from, end))
    try:
        if spec.mode == "closed":
            await _closed(senders, payload_count, recorder, measure_from, end)
        else:
            await _open(senders, spec, payload_count, recorder, start, measure_from)
    finally:
        reporter.cancel()
    return recorder.result


async def _closed(
    senders: list[Sender], payload_count: int, rec: _Recorder, measure_from: int, end: int
) -> None:
    step = len(senders)

    async def run(slot: int, sender: Sender) -> None:
        index = slot
        clock = time.perf_counter_ns
        while True:
            sent = clock()
            if sent >= end:
                return
            reason = await _attempt(sender, index % payload_count)
            if sent >= measure_from:
                if reason is None:
                    rec.ok(clock() - sent)
                else:
                    rec.failed(reason)
            index += step

    await asyncio.gather(*(run(i, s) for i, s in enumerate(senders)))


async def _open(
    senders: list[Sender],
    spec: LoadSpec,
    payload_count: int,
    rec: _Recorder,
    start: int,
    measure_from: int,
) -> None:
    intended = start + (spec.schedule() * 1e9).astype(np.int64)
    queue: asyncio.Queue[tuple[int, int] | None] = asyncio.Queue()
    clock = time.perf_counter_ns

    async def dispatch() -> None:
        for index, due in enumerate(intended.tolist()):
            wait = due - clock()
            if wait > 200_000:  # sleep only when the next send is more than 0.2 ms away
                await asyncio.sleep(wait / 1e9)
            queue.put_nowait((index, due))
        for _ in senders:
            queue.put_nowait(None)

    async def run(sender: Sender) -> None:
        while (item := await queue.get()) is not None:
            index, due = item
            reason = await _attempt(sender, index % payload_count)
            if due >= measure_from:
                if reason is None:
                    rec.ok(clock() - due)
                else:
                    rec.failed(reason)

    workers = [asyncio.create_task(run(s)) for s in senders]
    await dispatch()
    grace = max(5.0, spec.duration)
    _done, pending = await asyncio.wait(workers, timeout=grace)
    for task in pending:
        task.cancel()
    if pending:
        measured = int((intended >= measure_from).sum())
        rec.result.dropped = max(0, measured - rec.result.successes - rec.result.errors)
        rec.result.errors += rec.result.dropped
        rec.failed(f"{rec.result.dropped} requests not answered within {grace:.0f}s of the end")


async def _report(progress: ProgressFn | None, rec: _Recorder, measure_from: int, end: int) -> None:
    if progress is None:
        return
    while True:
        await asyncio.sleep(0.5)
        now = time.perf_counter_ns()
        elapsed = (now - measure_from) / 1e9  # negative while warming up
        progress(elapsed, rec.result.successes, rec.result.errors)
        if now > end + 60e9:
            return


async def open_senders(factory: Callable[[int], Awaitable[Sender]], count: int) -> list[Sender]:
    """Open ``count`` senders concurrently (e.g. connect N sockets)."""
    return list(await asyncio.gather(*(factory(i) for i in range(count))))
