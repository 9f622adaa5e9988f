"""Poll mode's rescans are jittered (registry_client.PollSchedule), so pods sharing one
repository volume do not scan it in step; what a scan finds is unchanged."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from serving.examples import write_repository
from serving.manager._poller import RepositoryPoller

INTERVAL = 15.0


def test_rescans_wait_a_jittered_interval_and_still_settle_changes(tmp_path: Path) -> None:
    write_repository(tmp_path, ["identity_fp32"])
    waits: list[float] = []
    changed: list[str] = []
    enough = asyncio.Event()

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) >= 10:
            enough.set()
            await asyncio.Event().wait()
        await asyncio.sleep(0)

    async def on_changed(name: str) -> None:
        changed.append(name)

    async def on_gone(name: str) -> None:
        raise AssertionError(f"{name} is still on disk")

    async def main() -> None:
        poller = RepositoryPoller(
            tmp_path, {}, on_changed, on_gone, rng=random.Random(11), sleep=sleep
        )
        task = asyncio.create_task(poller.poll_forever(INTERVAL))
        await asyncio.wait_for(enough.wait(), 30)
        task.cancel()

    asyncio.run(main())
    first, *steady = waits
    assert 0.0 <= first <= INTERVAL
    assert all(0.8 * INTERVAL <= w <= 1.2 * INTERVAL for w in steady), steady
    assert len(set(steady)) == len(steady)
    # a new model loads once two scans saw the same files, and only then, as before;
    # nothing marks it loaded here, so every other scan reports it again
    assert changed and set(changed) == {"identity_fp32"}
