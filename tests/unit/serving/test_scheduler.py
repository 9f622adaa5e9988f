from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Mapping, Sequence

import numpy as np

from serving.scheduler import DirectScheduler


class FakeClock:
    """Each execution appears to take ``step`` ns."""

    def __init__(self, step: int) -> None:
        self.now = 0
        self.step = step

    def __call__(self) -> int:
        self.now += self.step
        return self.now


def _recording_run(threads: list[str]):  # type: ignore[no-untyped-def]
    def run(inputs: Mapping[str, np.ndarray], names: Sequence[str]) -> dict[str, np.ndarray]:
        threads.append(threading.current_thread().name)
        return {"y": inputs["x"] + 1}

    return run


def _schedule_n(scheduler: DirectScheduler, n: int) -> list[np.ndarray]:
    async def main() -> list[np.ndarray]:
        out = []
        for i in range(n):
            execution = await scheduler.schedule({"x": np.array([i])}, ["y"], 1)
            out.append(execution.outputs["y"])
        return out

    return asyncio.run(main())


def test_short_executions_move_onto_the_event_loop() -> None:
    threads: list[str] = []
    scheduler = DirectScheduler(
        _recording_run(threads), 1, inline_below_ns=200_000, clock=FakeClock(10_000)
    )
    results = _schedule_n(scheduler, 4)
    assert [int(r[0]) for r in results] == [1, 2, 3, 4]
    # the first run measures in a thread; the rest are short, so they run on the loop
    assert threads[0] != "MainThread"
    assert threads[1:] == ["MainThread"] * 3


def test_a_slow_handoff_to_the_thread_does_not_count_as_execution() -> None:
    """On a busy server the thread handoff takes far longer than a tiny model's run; only
    the run decides whether the next executions go inline."""
    threads: list[str] = []

    class SlowHandoff(concurrent.futures.ThreadPoolExecutor):
        def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def]
            time.sleep(0.005)  # 5 ms before the run starts: a loaded machine
            return super().submit(fn, *args, **kwargs)

    with SlowHandoff(1) as executor:
        scheduler = DirectScheduler(_recording_run(threads), 1, executor, inline_below_ns=1_000_000)
        _schedule_n(scheduler, 3)
    assert threads[0] != "MainThread"
    assert threads[1:] == ["MainThread"] * 2


def test_long_executions_stay_in_threads() -> None:
    threads: list[str] = []
    scheduler = DirectScheduler(
        _recording_run(threads), 1, inline_below_ns=200_000, clock=FakeClock(500_000)
    )
    _schedule_n(scheduler, 4)
    assert "MainThread" not in threads


def test_inline_off_by_default() -> None:
    threads: list[str] = []
    scheduler = DirectScheduler(_recording_run(threads), 1, clock=FakeClock(1))
    _schedule_n(scheduler, 3)
    assert "MainThread" not in threads


def test_concurrency_is_capped_by_instances() -> None:
    active = 0
    peak = 0
    lock = threading.Lock()
    gate = threading.Event()

    def run(inputs: Mapping[str, np.ndarray], names: Sequence[str]) -> dict[str, np.ndarray]:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        gate.wait(5)
        with lock:
            active -= 1
        return {"y": inputs["x"]}

    scheduler = DirectScheduler(run, 2)

    async def main() -> None:
        tasks = [
            asyncio.create_task(scheduler.schedule({"x": np.array([i])}, ["y"], 1))
            for i in range(5)
        ]
        for _ in range(500):  # until two runs are inside (5 s at most)
            if active == 2:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # a third would have started by now if it could
        gate.set()
        await asyncio.gather(*tasks)

    asyncio.run(main())
    assert peak == 2
