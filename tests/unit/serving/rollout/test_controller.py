"""The rollout controller through a real core: stepping by evaluation, state on disk."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from serving.core import InferenceCore
from serving.errors import InvalidArgument
from serving.manager import ModelManager
from serving.metrics import Metrics
from serving.rollout import ADVANCE, HOLD, RolloutSpec
from serving.settings import Settings
from serving.types import InferInput, InferRequest
from tests.unit.serving.versioned_core import MODEL, run_core, write_versions

SPEC = RolloutSpec(to=2, baseline=1, steps=(50, 100), min_samples=5, max_p99_ratio=1e6)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return write_versions(tmp_path, 2)


async def _send(core: InferenceCore, count: int) -> set[str]:
    data = np.array([[1.5, 2.5]], dtype=np.float32)
    request = InferRequest(MODEL, (InferInput("INPUT0", "FP32", (1, 2), data),))
    return {(await core.infer(request)).model_version for _ in range(count)}


def test_a_rollout_steps_holds_for_samples_and_promotes(repo: Path) -> None:
    async def scenario(core: InferenceCore) -> None:
        await core.rollout.start(MODEL, SPEC, run=False)
        assert core.traffic.split(MODEL)[0].weights == {1: 50, 2: 50}
        assert (await core.rollout.evaluate(MODEL)).action == HOLD  # nothing sent yet
        assert await _send(core, 60) == {"1", "2"}
        assert (await core.rollout.evaluate(MODEL)).action == ADVANCE
        assert core.traffic.split(MODEL)[0].weights == {2: 100}
        assert await _send(core, 10) == {"2"}
        assert (await core.rollout.evaluate(MODEL)).action == ADVANCE
        status = core.rollout_status(MODEL)
        assert status["state"] == "promoted"
        assert [e["action"] for e in status["history"]] == [
            "start",
            "hold",
            "advance",
            "advance",
            "promote",
        ]
        assert "waiting for samples: 0 of 5 candidate requests" in status["history"][1]["reason"]

    run_core(repo, scenario)
    saved = (repo / ".sluice" / "rollouts" / f"{MODEL}.json").read_text()
    assert '"state": "promoted"' in saved


def test_a_running_rollout_resumes_after_a_restart(repo: Path) -> None:
    async def first(core: InferenceCore) -> None:
        await core.rollout.start(MODEL, SPEC, run=False)

    async def second(core: InferenceCore) -> None:
        status = core.rollout_status(MODEL)
        assert (status["state"], status["step"]) == ("running", 50)
        assert status["history"][-1]["action"] == "resume"
        assert core.traffic.split(MODEL)[0].weights == {1: 50, 2: 50}

    run_core(repo, first)
    run_core(repo, second)


def test_one_process_runs_a_rollout_and_the_others_read_and_abort_it(repo: Path) -> None:
    # Two cores over one repository stand for two workers of --workers 2.
    async def main() -> None:
        cores = []
        for _ in range(2):
            settings = Settings(model_repository=repo, cores=1)
            metrics = Metrics()
            core = InferenceCore(settings, ModelManager(settings, metrics), metrics)
            await core.start()
            cores.append(core)
        runner, other = cores
        try:
            fast = dataclasses.replace(SPEC, interval_s=0.01, min_samples=10**6)  # holds
            await runner.rollout.start(MODEL, fast)
            assert other.rollout_status(MODEL)["state"] == "running"  # from the state file
            with pytest.raises(InvalidArgument, match="already has a rollout running"):
                await other.rollout.start(MODEL, SPEC, run=False)
            await other.rollout_abort(MODEL)
            for _ in range(3000):  # the runner reads the file before its next decision
                if runner.rollout_status(MODEL)["state"] != "running":
                    break
                await asyncio.sleep(0.01)
            assert runner.rollout_status(MODEL)["state"] == "aborted"
            assert runner.rollout_status(MODEL)["history"][-1]["action"] == "abort"
            assert other.traffic.split(MODEL)[0].weights == {1: 100}
            await other.rollout.start(MODEL, SPEC, run=False)  # the lock was released
        finally:
            for core in cores:
                await core.close()

    asyncio.run(main())
