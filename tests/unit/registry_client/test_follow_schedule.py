"""The follower's polls are jittered (registry_client.PollSchedule): its waits, recorded
through an injected sleep, against a real local registry and a real ModelManager."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from registry_client import Follower, LocalRegistry
from serving.examples import build_identity
from serving.following import ManagerTarget
from serving.manager import ModelManager
from serving.metrics import Metrics
from serving.settings import Settings

NAME = "ident"
POLL_SECS = 30.0


class RecordedSleep:
    """Returns at once and records each wait; after ``rounds`` waits it parks for good."""

    def __init__(self, rounds: int) -> None:
        self.rounds = rounds
        self.waits: list[float] = []
        self.done = asyncio.Event()

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if len(self.waits) >= self.rounds:
            self.done.set()
            await asyncio.Event().wait()  # until the follower is closed
        await asyncio.sleep(0)


async def _follow(repo: Path, registry: LocalRegistry, sleep: RecordedSleep, seed: int) -> None:
    repo.mkdir()
    manager = ModelManager(Settings(model_repository=repo, cores=1), Metrics())
    follower = Follower(
        ManagerTarget(manager), registry.uri, [f"models:/{NAME}@champion"],
        deployment=f"pod-{seed}", poll_secs=POLL_SECS, rng=random.Random(seed), sleep=sleep,
    )  # fmt: skip
    try:
        await follower.start()
        await manager.start()
        await asyncio.wait_for(sleep.done.wait(), 60)
    finally:
        await follower.close()
        await manager.close()


def test_two_followers_started_together_do_not_poll_in_step(tmp_path: Path) -> None:
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(build_identity("FP32"))
    registry = LocalRegistry(tmp_path / "registry")
    registry.register(NAME, [onnx], aliases=["champion"])
    pods = [RecordedSleep(rounds=12), RecordedSleep(rounds=12)]

    async def main() -> None:
        await asyncio.gather(
            *(_follow(tmp_path / f"repo{i}", registry, s, i) for i, s in enumerate(pods))
        )

    asyncio.run(main())
    for sleep in pods:
        first, *steady = sleep.waits
        assert 0.0 <= first <= POLL_SECS  # a random start within one interval
        assert all(0.8 * POLL_SECS <= w <= 1.2 * POLL_SECS for w in steady), steady
        assert len(set(steady)) == len(steady)  # not one fixed interval
    # The two pods' poll times (the running sums of their waits) drift apart.
    times = [[sum(s.waits[: i + 1]) for i in range(len(s.waits))] for s in pods]
    assert all(abs(a - b) > 0.01 for a, b in zip(*times, strict=True))
