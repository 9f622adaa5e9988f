"""The highest ready version is worked out when a model's serving versions change, not per
request (issue 14): every load, unload, pin, policy change and failure changes the version a
request that names none gets at once, through a real core and real ONNX Runtime versions."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import numpy as np
import pytest

from serving.core import InferenceCore
from serving.desired_state import ModelTarget, Source
from serving.errors import Unavailable
from serving.manager import ModelManager
from serving.metrics import Metrics
from serving.settings import ControlMode, Settings
from serving.types import InferInput, InferRequest
from tests.unit.serving.versioned_core import MODEL, write_versions


def _request(version: str = "") -> InferRequest:
    data = np.array([[1.5, 2.5]], dtype=np.float32)
    return InferRequest(MODEL, (InferInput("INPUT0", "FP32", (1, 2), data),), model_version=version)


async def _answered(core: InferenceCore) -> str:
    return (await core.infer(_request())).model_version


def _add_version(repo: Path, version: int) -> None:
    (repo / MODEL / str(version)).mkdir()
    shutil.copy(repo / MODEL / "1" / "model.onnx", repo / MODEL / str(version))


async def _poll_core(repo: Path) -> InferenceCore:
    # Poll mode, but the background poll is an hour away: the test polls by hand.
    settings = Settings(
        model_repository=repo,
        cores=1,
        model_control_mode=ControlMode.POLL,
        repository_poll_secs=3600,
    )
    metrics = Metrics()
    core = InferenceCore(settings, ModelManager(settings, metrics), metrics)
    await core.start()
    return core


def test_loads_and_unloads_on_disk_change_the_pick_at_once(tmp_path: Path) -> None:
    asyncio.run(_disk_changes(write_versions(tmp_path, 3)))


async def _settled_poll(core: InferenceCore) -> None:
    """A change on disk loads once two scans see the same files."""
    await core.manager.poll_once()
    await core.manager.poll_once()


async def _disk_changes(repo: Path) -> None:
    core = await _poll_core(repo)
    try:
        assert await _answered(core) == "3"
        _add_version(repo, 5)
        await _settled_poll(core)
        assert await _answered(core) == "5"
        assert core.manager.get(MODEL).version == 5
        shutil.rmtree(repo / MODEL / "5")
        await _settled_poll(core)
        assert await _answered(core) == "3"
        with pytest.raises(Unavailable, match="version 5 is unavailable: unloaded"):
            await core.infer(_request("5"))
        # the config's version policy narrows what serves: the highest is now 2
        (repo / MODEL / "config.pbtxt").write_text(
            "version_policy: { specific: { versions: [1, 2] } }\n"
        )
        await _settled_poll(core)
        assert await _answered(core) == "2"
    finally:
        await core.close()


def test_pins_failures_and_unloading_change_the_pick_at_once(tmp_path: Path) -> None:
    asyncio.run(_intent_changes(write_versions(tmp_path, 3)))


async def _intent_changes(repo: Path) -> None:
    core = await _poll_core(repo)
    manager = core.manager
    try:
        assert await _answered(core) == "3"
        # the desired state pins version 1: 2 and 3 retire
        await manager.apply(ModelTarget(MODEL, Source.API, versions=(1,)))
        assert await _answered(core) == "1"
        assert sorted(manager.ready(MODEL)) == [1]
        # the pin lifts: 2 and 3 load again
        await manager.apply(ModelTarget(MODEL, Source.API, versions=(1, 2, 3)))
        assert await _answered(core) == "3"
        # version 3's runtime gives up: it stops serving and 2 answers
        manager._fail_version(manager.get(MODEL, "3").runtime, "instance died")
        assert await _answered(core) == "2"
        # the model is unloaded on purpose: nothing answers
        await manager.apply(ModelTarget(MODEL, Source.API, serve=False))
        assert not manager.ready(MODEL)
        with pytest.raises(Unavailable, match="is not ready"):
            await core.infer(_request())
        # and served again
        await manager.apply(ModelTarget(MODEL, Source.API))
        assert await _answered(core) == "3"
    finally:
        await core.close()


def test_serving_versions_are_replaced_never_changed_in_place(tmp_path: Path) -> None:
    from serving.manager._records import ModelRecord

    record = ModelRecord(MODEL)
    assert record.highest is None and not record.serving
    versions = {2: "two", 7: "seven", 4: "four"}
    record.serving = versions  # type: ignore[assignment]
    assert record.highest == "seven"
    versions[9] = "nine"  # the record keeps its own copy
    assert record.highest == "seven" and 9 not in record.serving
    with pytest.raises(TypeError):
        record.serving[9] = "nine"  # type: ignore[index]
    record.serving = {}
    assert record.highest is None
