from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable, Mapping, Sequence

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


class HeldExecutor(concurrent.futures.Executor):
    """Holds every submitted run until the test releases it, so nothing finishes by itself."""

    def __init__(self) -> None:
        self.held: list[tuple[concurrent.futures.Future, Callable[[], object]]] = []
        self.peak = 0

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def]
        future: concurrent.futures.Future = concurrent.futures.Future()
        self.held.append((future, lambda: fn(*args, **kwargs)))
        self.peak = max(self.peak, len(self.held))
        return future

    def release_oldest(self) -> None:
        future, run = self.held.pop(0)
        future.set_result(run())


async def _settle() -> None:
    """Let every task run until it waits on something only the test can release."""
    for _ in range(50):
        await asyncio.sleep(0)


def test_concurrency_is_capped_by_instances() -> None:
    executor = HeldExecutor()
    scheduler = DirectScheduler(lambda inputs, names: {"y": inputs["x"]}, 2, executor)

    async def main() -> list[int]:
        tasks = [
            asyncio.create_task(scheduler.schedule({"x": np.array([i])}, ["y"], 1))
            for i in range(5)
        ]
        await _settle()
        assert len(executor.held) == 2  # two instances busy, three requests wait
        while executor.held:
            executor.release_oldest()
            await _settle()  # a waiting request takes the freed instance
            assert len(executor.held) <= 2
        return [int((await task).outputs["y"][0]) for task in tasks]

    assert asyncio.run(main()) == [0, 1, 2, 3, 4]
    assert executor.peak == 2


def _echo(inputs: Mapping[str, np.ndarray], names: Sequence[str]) -> dict[str, np.ndarray]:
    return {"y": inputs["x"]}


def test_requests_that_waited_for_an_instance_run_inline_once_executions_are_short() -> None:
    """A steady load must not keep a tiny model in threads: the requests queued while the
    first executions measured in threads run on the loop once those say they are short."""
    executor = HeldExecutor()
    scheduler = DirectScheduler(
        _echo, 2, executor, inline_below_ns=200_000, clock=FakeClock(10_000)
    )

    async def main() -> list[int]:
        tasks = [
            asyncio.create_task(scheduler.schedule({"x": np.array([i])}, ["y"], 1))
            for i in range(5)
        ]
        await _settle()
        assert len(executor.held) == 2  # nothing measured yet: both instances in threads
        executor.release_oldest()  # a 10 us execution: short
        await _settle()
        assert len(executor.held) == 1  # the three that waited ran on the loop
        assert [t.done() for t in tasks] == [True, False, True, True, True]
        # one instance is still busy in a thread; the other serves a new request inline
        extra = await scheduler.schedule({"x": np.array([5])}, ["y"], 1)
        assert len(executor.held) == 1
        executor.release_oldest()
        await _settle()
        return [int((await t).outputs["y"][0]) for t in tasks] + [int(extra.outputs["y"][0])]

    assert asyncio.run(main()) == [0, 1, 2, 3, 4, 5]
    assert executor.peak == 2


def test_an_inline_execution_never_exceeds_the_instances() -> None:
    """With one instance busy in a thread, a short execution waits for it, not runs beside it."""
    executor = HeldExecutor()
    scheduler = DirectScheduler(
        _echo, 1, executor, inline_below_ns=200_000, clock=FakeClock(10_000)
    )

    async def main() -> None:
        first = asyncio.create_task(scheduler.schedule({"x": np.array([0])}, ["y"], 1))
        await _settle()
        assert len(executor.held) == 1
        second = asyncio.create_task(scheduler.schedule({"x": np.array([1])}, ["y"], 1))
        await _settle()
        assert not second.done()  # the one instance is busy
        executor.release_oldest()
        await _settle()
        assert first.done() and second.done()
        assert not executor.held  # the second ran on the loop once the instance was free
        assert (await second).queue_ns > 0

    asyncio.run(main())
