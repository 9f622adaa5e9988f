"""Merging every worker's arm samples into one verdict window, and the supervisor's relay
of the judge's questions (serving.rollout._peers)."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from serving.rollout import ArmRelay, ArmWindows, PeerArms, Window, WorkerArms
from serving.rollout._analysis import ArmSample
from serving.traffic import ArmObserver

KEY = ("m", 2, "primary")


def test_a_merged_window_sums_counts_and_takes_p99_over_all_latencies() -> None:
    one = ArmSample(requests=3, errors=1, latencies_ns=(1_000_000, 2_000_000, 3_000_000))
    two = ArmSample(requests=2, latencies_ns=(50_000_000, 60_000_000), diffs=(0.5,), compared=1)
    window = Window.merge([one, two])
    assert (window.requests, window.errors, window.compared) == (5, 1, 1)
    expected = np.percentile([1, 2, 3, 50, 60], 99)
    assert window.p99_ms is not None and abs(window.p99_ms - expected) < 1e-9
    assert window.max_abs_diff == 0.5
    assert ArmSample.from_wire(two.to_wire()) == two


def test_a_worker_answers_with_its_arms_since_the_judges_mark() -> None:
    arms = ArmObserver()
    stats = arms.stats(*KEY)
    stats.requests, stats.errors = 5, 1
    stats.latencies_ns.extend([10, 20, 30, 40, 50])
    sent: list[tuple[Any, ...]] = []
    worker = WorkerArms(sent.append)
    worker.windows = ArmWindows(arms)
    worker.received(("arms-mark", "m", (KEY,)))
    stats.requests += 2
    stats.latencies_ns.extend([60, 70])
    worker.received(("arms-ask", (1, 9), "m", (KEY,)))
    ((kind, ask, (sample,)),) = sent
    assert (kind, ask) == ("arms-reply", (1, 9))
    assert ArmSample.from_wire(sample) == ArmSample(requests=2, latencies_ns=(60, 70))


def test_the_relay_answers_the_judge_once_every_live_worker_did() -> None:
    relay = ArmRelay()
    out: list[tuple[int, tuple[Any, ...]]] = []

    def send(worker: int, message: tuple[Any, ...]) -> None:
        out.append((worker, message))

    relay.received(1, ("arms-ask", 7, "m", (KEY,)), [1, 2, 3], send)
    assert out == [(2, ("arms-ask", (1, 7), "m", (KEY,))), (3, ("arms-ask", (1, 7), "m", (KEY,)))]
    out.clear()
    relay.received(2, ("arms-reply", (1, 7), ["two"]), [1, 2, 3], send)
    assert out == []  # worker 3 has not answered
    relay.gone(3, send)  # ... and never will
    assert out == [(1, ("arms-reply", 7, [["two"]]))]


def test_the_judge_goes_on_without_workers_that_do_not_answer() -> None:
    async def main() -> list[Any]:
        peers = PeerArms(lambda message: None, timeout=0.01)
        return await peers.collect("m", (KEY,))

    assert asyncio.run(main()) == []
