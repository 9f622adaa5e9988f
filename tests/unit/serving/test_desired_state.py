"""The desired-state contract, and the manager reconciling towards it with real models."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from serving.desired_state import DesiredState, ModelTarget, Source
from serving.errors import NotFound, Unavailable
from serving.examples import write_repository
from serving.manager import ModelManager
from serving.metrics import Metrics
from serving.settings import ControlMode, Settings

MODEL = "identity_fp32"


def test_targets_round_trip_through_json() -> None:
    target = ModelTarget(
        MODEL, Source.EDGE, versions=(3, 2, 3), traffic={3: 90, 2: 10}, config='{"a": 1}',
        generation=7,
    )  # fmt: skip
    assert target.versions == (2, 3)  # sorted, once each
    assert list(target.traffic) == [2, 3]
    assert ModelTarget.from_json(target.to_json()) == target
    state = DesiredState().with_target(target).with_target(ModelTarget("other", Source.API))
    again = DesiredState.from_json(state.to_json())
    assert again == state and again.generation == 8
    assert again.target("other") == ModelTarget("other", Source.API, generation=8)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": ""}, "invalid model name"),
        ({"name": "a/b"}, "invalid model name"),
        ({"name": "m", "versions": (-1,)}, "non-negative"),
        ({"name": "m", "traffic": {1: 0}}, "not all 0"),
        ({"name": "m", "versions": (1,), "traffic": {2: 5}}, "does not serve"),
    ],
)
def test_bad_targets_are_refused_with_the_reason(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ModelTarget(**kwargs)


def test_a_bad_document_names_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="invalid model target"):
        ModelTarget.from_json({"source": "api"})
    with pytest.raises(ValueError, match="invalid model target"):
        ModelTarget.from_json({"name": "m", "source": "somewhere"})


def test_generations_stamp_changes_in_order() -> None:
    state = DesiredState()
    state = state.with_target(ModelTarget("a"))
    state = state.with_target(ModelTarget("b"))
    assert [state.target(n).generation for n in "ab"] == [1, 2]  # type: ignore[union-attr]
    late = ModelTarget("a", versions=(1,), generation=1)
    assert not late.newer_than(state.target("a"))
    assert ModelTarget("a", generation=3).newer_than(state.target("a"))
    assert state.without("a").target("a") is None and state.without("zzz") is state


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """identity_fp32 versions 1 and 2 on disk; by default the newest serves."""
    write_repository(tmp_path, [MODEL])
    (tmp_path / MODEL / "2").mkdir()
    shutil.copy(tmp_path / MODEL / "1" / "model.onnx", tmp_path / MODEL / "2")
    return tmp_path


def _run(
    repo: Path,
    scenario: Callable[[ModelManager], Awaitable[None]],
    mode: ControlMode = ControlMode.NONE,
) -> None:
    async def main() -> None:
        settings = Settings(model_repository=repo, model_control_mode=mode, cores=1)
        manager = ModelManager(settings, Metrics())
        try:
            await manager.start()
            await scenario(manager)
        finally:
            await manager.close()

    asyncio.run(main())


def test_the_manager_reconciles_to_each_target(repo: Path) -> None:
    async def scenario(m: ModelManager) -> None:
        assert m.ready_versions(MODEL) == ["2"]  # the repository scan, by version policy
        assert await m.apply(ModelTarget(MODEL, Source.EDGE, versions=(1,)))
        assert m.ready_versions(MODEL) == ["1"]
        assert m.desired.target(MODEL).source is Source.EDGE  # type: ignore[union-attr]
        assert await m.apply(ModelTarget(MODEL, Source.ROLLOUT, versions=(1, 2)))
        assert m.ready_versions(MODEL) == ["1", "2"]
        assert await m.apply(ModelTarget(MODEL, Source.EDGE, serve=False))
        assert m.ready_versions(MODEL) == []
        with pytest.raises(Unavailable, match="unloaded"):
            m.get(MODEL)
        assert await m.apply(ModelTarget(MODEL, Source.EDGE))  # back to the version policy
        assert m.ready_versions(MODEL) == ["2"]

    _run(repo, scenario)


def test_duplicates_and_late_deliveries_change_nothing(repo: Path) -> None:
    async def scenario(m: ModelManager) -> None:
        assert await m.apply(ModelTarget(MODEL, Source.EDGE, versions=(1,), generation=5))
        assert not await m.apply(ModelTarget(MODEL, Source.EDGE, versions=(1,), generation=5))
        assert not await m.apply(ModelTarget(MODEL, Source.EDGE, versions=(2,), generation=4))
        assert m.ready_versions(MODEL) == ["1"]
        assert await m.apply(ModelTarget(MODEL, Source.EDGE, versions=(2,), generation=6))
        assert m.ready_versions(MODEL) == ["2"]

    _run(repo, scenario)


def test_a_target_that_cannot_serve_leaves_what_serves(repo: Path) -> None:
    async def scenario(m: ModelManager) -> None:
        with pytest.raises(Exception, match="no version directory matches"):
            await m.apply(ModelTarget(MODEL, Source.REGISTRY, versions=(9,)))
        assert m.ready_versions(MODEL) == ["2"]
        with pytest.raises(NotFound, match="no model 'ghost'"):
            await m.apply(ModelTarget("ghost", Source.EDGE))

    _run(repo, scenario)


def test_the_repository_api_keeps_a_pin_and_tells_listeners(repo: Path) -> None:
    told: list[ModelTarget] = []

    async def scenario(m: ModelManager) -> None:
        m.api_listeners.append(told.append)
        await m.apply(ModelTarget(MODEL, Source.REGISTRY, versions=(1,)))
        await m.load(MODEL, {"max_batch_size": 2})  # a reload through the API keeps the pin
        assert m.ready_versions(MODEL) == ["1"]
        assert m.get(MODEL).config.max_batch_size == 2
        await m.unload(MODEL)
        assert m.ready_versions(MODEL) == []
        assert [(t.source, t.serve, t.versions) for t in told] == [
            (Source.API, True, (1,)),
            (Source.API, False, (1,)),
        ]
        assert told[0].config == {"max_batch_size": 2} and told[1].config is None
        assert told[0].generation < told[1].generation == m.desired.generation

    _run(repo, scenario, ControlMode.EXPLICIT)
