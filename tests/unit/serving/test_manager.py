"""Model lifecycle against real tiny models and real ONNX Runtime sessions."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
import pytest

from serving.errors import InvalidArgument, NotFound, Unavailable, Unsupported
from serving.examples import write_repository
from serving.manager import ModelManager
from serving.metrics import Metrics
from serving.settings import ControlMode, Settings
from serving.types import InferInput, InferRequest


def _settings(repo: Path, mode: ControlMode = ControlMode.NONE) -> Settings:
    return Settings(model_repository=repo, model_control_mode=mode, cores=1)


def _run(
    repo: Path,
    scenario: Callable[[ModelManager], Awaitable[None]],
    mode: ControlMode = ControlMode.NONE,
) -> None:
    async def main() -> None:
        manager = ModelManager(_settings(repo, mode), Metrics())
        try:
            await manager.start()
            await scenario(manager)
        finally:
            await manager.close()

    asyncio.run(main())


def _request(version: str = "") -> InferRequest:
    data = np.array([[1.5, 2.5]], dtype=np.float32)
    return InferRequest(
        "identity_fp32", (InferInput("INPUT0", "FP32", (1, 2), data),), model_version=version
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    write_repository(tmp_path, ["identity_fp32"])
    return tmp_path


def _add_version(repo: Path, version: int, content: bytes | None = None) -> None:
    target = repo / "identity_fp32" / str(version)
    target.mkdir()
    if content is None:
        shutil.copy(repo / "identity_fp32" / "1" / "model.onnx", target / "model.onnx")
    else:
        (target / "model.onnx").write_bytes(content)


def test_latest_policy_serves_the_newest_version(repo: Path) -> None:
    _add_version(repo, 2)

    async def scenario(m: ModelManager) -> None:
        assert m.ready_versions("identity_fp32") == ["2"]
        response = await m.get("identity_fp32").infer(_request())
        assert response.model_version == "2"
        with pytest.raises(NotFound, match="no version 1"):
            m.get("identity_fp32", "1")

    _run(repo, scenario)


def test_failed_reload_leaves_the_serving_version_untouched(repo: Path) -> None:
    async def scenario(m: ModelManager) -> None:
        _add_version(repo, 2, b"not a model")
        await m.poll_once()  # first sight: waits for the files to settle
        assert m.ready_versions("identity_fp32") == ["1"]
        await m.poll_once()
        assert m.ready_versions("identity_fp32") == ["1"]
        entries = {e["version"]: e for e in m.index() if e["name"] == "identity_fp32"}
        assert entries["1"]["state"] == "READY"
        assert entries["2"]["state"] == "UNAVAILABLE" and entries["2"]["reason"]
        assert (await m.get("identity_fp32").infer(_request())).model_version == "1"
        # the file is fixed: the next settled scan swaps version 2 in and retires 1
        shutil.copy(
            repo / "identity_fp32" / "1" / "model.onnx", repo / "identity_fp32" / "2" / "model.onnx"
        )
        await m.poll_once()
        await m.poll_once()
        assert m.ready_versions("identity_fp32") == ["2"]
        entries = {e["version"]: e for e in m.index() if e["name"] == "identity_fp32"}
        assert entries["1"] == {
            "name": "identity_fp32",
            "version": "1",
            "state": "UNAVAILABLE",
            "reason": "unloaded",
        }

    _run(repo, scenario, ControlMode.POLL)


def test_poll_unloads_a_removed_model(repo: Path) -> None:
    async def scenario(m: ModelManager) -> None:
        shutil.rmtree(repo / "identity_fp32")
        await m.poll_once()
        with pytest.raises(Unavailable):
            m.get("identity_fp32")

    _run(repo, scenario, ControlMode.POLL)


def test_explicit_mode_load_and_unload(repo: Path) -> None:
    async def scenario(m: ModelManager) -> None:
        assert m.index() == [{"name": "identity_fp32", "version": "", "state": "", "reason": ""}]
        with pytest.raises(NotFound):
            m.get("identity_fp32")
        await m.load("identity_fp32")
        assert m.ready_versions("identity_fp32") == ["1"]
        await m.unload("identity_fp32")
        with pytest.raises(Unavailable, match="not ready"):
            m.get("identity_fp32")
        with pytest.raises(NotFound, match="nothing"):
            await m.load("nothing")
        with pytest.raises(InvalidArgument, match="invalid model name"):
            await m.load("../etc")

    _run(repo, scenario, ControlMode.EXPLICIT)


def test_load_api_is_refused_outside_explicit_mode(repo: Path) -> None:
    async def scenario(m: ModelManager) -> None:
        with pytest.raises(Unsupported, match="explicit"):
            await m.load("identity_fp32")
        with pytest.raises(Unsupported, match="explicit"):
            await m.unload("identity_fp32")

    _run(repo, scenario)


def test_bad_config_fails_that_model_only(repo: Path) -> None:
    write_repository(repo, ["simple"])
    (repo / "identity_fp32" / "config.pbtxt").write_text("max_batch_size: [")

    async def scenario(m: ModelManager) -> None:
        assert m.ready_versions("simple") == ["1"]
        with pytest.raises(Unavailable, match=r"config\.pbtxt"):
            m.get("identity_fp32")
        entry = next(e for e in m.index() if e["name"] == "identity_fp32")
        assert entry["state"] == "UNAVAILABLE" and "config.pbtxt" in entry["reason"]

    _run(repo, scenario)


def test_version_strings_are_checked(repo: Path) -> None:
    async def scenario(m: ModelManager) -> None:
        with pytest.raises(InvalidArgument, match="not a number"):
            m.get("identity_fp32", "one")

    _run(repo, scenario)
