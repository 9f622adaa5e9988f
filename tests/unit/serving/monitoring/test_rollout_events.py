"""io.sluice.rollout.promoted / rolled_back: a real core's rollout controller tells the
monitoring's event bus, which delivers to a real signed webhook receiver."""

from __future__ import annotations

import asyncio
import base64
import shutil
from pathlib import Path

import numpy as np
import pytest

from serving.core import InferenceCore
from serving.examples import write_repository
from serving.manager import ModelManager
from serving.metrics import Metrics
from serving.monitoring import EventBus, EventsConfig, Monitoring
from serving.rollout import ADVANCE, ROLLBACK, RolloutSpec
from serving.settings import Settings
from serving.types import InferInput, InferRequest
from tests.unit.serving.monitoring.receiver import Receiver

MODEL = "identity_fp32"
SECRET = "whsec_" + base64.b64encode(b"rollout events secret, 32 bytes").decode()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    write_repository(repo, [MODEL])
    (repo / MODEL / "config.pbtxt").write_text("version_policy: { all: {} }\n")
    (repo / MODEL / "2").mkdir()
    shutil.copy(repo / MODEL / "1" / "model.onnx", repo / MODEL / "2")
    return repo


def _rollout(repo: Path, tmp_path: Path, rx: Receiver, spec: RolloutSpec) -> list[str]:
    """Runs one rollout interval by interval until it ends; returns the decisions."""
    events = tmp_path / "events.toml"
    events.write_text(f'[[webhook]]\nurl = "{rx.url}"\nsecret = "{SECRET}"\ntypes = ["io.sluice.rollout.*"]\n')  # fmt: skip
    bus = EventBus(EventsConfig.load(events), "/sluice/test")
    actions: list[str] = []

    async def main() -> None:
        settings = Settings(model_repository=repo, cores=1)
        metrics = Metrics()
        core = InferenceCore(settings, ModelManager(settings, metrics), metrics)
        await core.start()
        monitoring = Monitoring(None, bus)
        monitoring.start(core)
        try:
            await core.rollout.start(MODEL, spec, run=False)
            data = np.array([[1.5, 2.5]], dtype=np.float32)
            request = InferRequest(MODEL, (InferInput("INPUT0", "FP32", (1, 2), data),))
            while core.rollout_status(MODEL)["state"] == "running":
                for _ in range(40):
                    await core.infer(request)
                actions.append((await core.rollout.evaluate(MODEL)).action)
        finally:
            monitoring.close(core)
            await core.close()

    asyncio.run(main())
    bus.deliver_due()  # what the background thread had not sent yet
    assert bus.pending() == 0
    return actions


def test_a_promoted_rollout_sends_promoted(repo: Path, tmp_path: Path) -> None:
    spec = RolloutSpec(to=2, baseline=1, steps=(50, 100), min_samples=5, max_p99_ratio=1e6)
    with Receiver(SECRET) as rx:
        assert _rollout(repo, tmp_path, rx, spec) == [ADVANCE, ADVANCE]
    (event,) = rx.events
    assert event["type"] == "io.sluice.rollout.promoted" and event["subject"] == MODEL
    assert event["data"] == {
        "model": MODEL,
        "baseline": 1,
        "candidate": 2,
        "reason": event["data"]["reason"],
    }
    assert "samples within the criteria" in event["data"]["reason"]
    assert rx.bad_signatures == 0


def test_a_rolled_back_rollout_sends_rolled_back_with_the_reason(
    repo: Path, tmp_path: Path
) -> None:
    spec = RolloutSpec(to=2, baseline=1, steps=(50, 100), min_samples=5, max_p99_ratio=1e-9)
    with Receiver(SECRET) as rx:
        assert _rollout(repo, tmp_path, rx, spec) == [ROLLBACK]
    (event,) = rx.events
    assert event["type"] == "io.sluice.rollout.rolled_back"
    assert event["data"]["candidate"] == 2 and event["data"]["baseline"] == 1
    assert "the baseline's" in event["data"]["reason"]
