"""The router: which version answers an inference request, through a real core."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

from serving.core import InferenceCore
from serving.desired_state import ModelTarget, Source
from serving.errors import NotFound, Unavailable
from serving.model import ModelVersion
from serving.router import HighestReady, Router
from serving.types import InferInput, InferRequest
from tests.unit.serving.versioned_core import MODEL, run_core, write_versions


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """identity_fp32 with versions 1, 2 and 3, all serving."""
    return write_versions(tmp_path, 3)


def _request(version: str = "", request_id: str = "") -> InferRequest:
    data = np.array([[1.5, 2.5]], dtype=np.float32)
    return InferRequest(
        MODEL, (InferInput("INPUT0", "FP32", (1, 2), data),), model_version=version, id=request_id
    )


class _ByRequestId:
    """A stand-in for a traffic split: the request id names the version."""

    def __init__(self) -> None:
        self.shadowed: list[int] = []

    def choose(self, request: InferRequest, ready: Mapping[int, ModelVersion]) -> ModelVersion:
        return ready[int(request.id)]

    def shadows(
        self, request: InferRequest, chosen: ModelVersion, ready: Mapping[int, ModelVersion]
    ) -> tuple[ModelVersion, ...]:
        return ()


def test_default_policy_is_the_highest_ready_version(repo: Path) -> None:
    async def scenario(core: InferenceCore) -> None:
        assert isinstance(core.router.policy(MODEL), HighestReady)
        response = await core.infer(_request())
        assert response.model_version == "3"
        np.testing.assert_array_equal(response.outputs[0].data, [[1.5, 2.5]])

    run_core(repo, scenario)


def test_an_explicit_version_is_served_by_that_version(repo: Path) -> None:
    async def scenario(core: InferenceCore) -> None:
        core.router.set_policy(MODEL, _ByRequestId())
        for version in ("1", "2", "3"):
            response = await core.infer(_request(version, request_id="3"))
            assert response.model_version == version
        with pytest.raises(NotFound, match="no version 7"):
            await core.infer(_request("7"))

    run_core(repo, scenario)


def test_a_policy_picks_the_version_and_the_answer_says_which(repo: Path) -> None:
    async def scenario(core: InferenceCore) -> None:
        core.router.set_policy(MODEL, _ByRequestId())
        answered = [(await core.infer(_request(request_id=v))).model_version for v in "1213"]
        assert answered == ["1", "2", "1", "3"]
        # statistics count each version's own requests
        stats = {s["version"]: s["inference_count"] for s in core.model_statistics(MODEL)["model_stats"]}  # fmt: skip
        assert stats == {"1": 2, "2": 1, "3": 1}
        core.router.set_policy(MODEL, None)
        assert (await core.infer(_request(request_id="1"))).model_version == "3"

    run_core(repo, scenario)


def test_metadata_config_and_ready_never_pass_through_the_policy(repo: Path) -> None:
    class Refuses(_ByRequestId):
        def choose(self, request: InferRequest, ready: Mapping[int, ModelVersion]) -> ModelVersion:
            raise AssertionError("metadata went through the routing policy")

    async def scenario(core: InferenceCore) -> None:
        core.router.set_policy(MODEL, Refuses())
        assert core.model_metadata(MODEL)["versions"] == ["1", "2", "3"]
        assert core.model_config(MODEL)["name"] == MODEL
        assert core.model_ready(MODEL)
        assert core.raw_input(MODEL).name == "INPUT0"

    run_core(repo, scenario)


def test_unknown_and_unready_models_fail_as_before(repo: Path) -> None:
    async def scenario(core: InferenceCore) -> None:
        core.router.set_policy(MODEL, _ByRequestId())
        with pytest.raises(NotFound, match="unknown model 'nope'"):
            await core.infer(InferRequest("nope", ()))
        await core.manager.apply(ModelTarget(MODEL, Source.API, serve=False))
        with pytest.raises(Unavailable, match="not ready"):
            await core.infer(_request(request_id="1"))

    run_core(repo, scenario)


def test_a_router_without_policies_asks_only_for_the_default() -> None:
    asked: list[tuple[str, str]] = []

    class Versions:
        def get(self, name: str, version: str = "") -> ModelVersion:
            asked.append((name, version))
            raise NotFound("none")

        def ready(self, name: str) -> Mapping[int, ModelVersion]:
            raise AssertionError("the default route needs no list of ready versions")

    router = Router(Versions())
    for version in ("", "2"):
        with pytest.raises(NotFound):
            router.route(InferRequest(MODEL, (), model_version=version))
    assert asked == [(MODEL, ""), (MODEL, "2")]
    assert router.shadows(InferRequest(MODEL, ()), None) == ()  # type: ignore[arg-type]


def test_shadow_copies_run_and_their_answers_are_discarded(repo: Path) -> None:
    class ShadowToOne(_ByRequestId):
        def choose(self, request: InferRequest, ready: Mapping[int, ModelVersion]) -> ModelVersion:
            return ready[3]

        def shadows(
            self, request: InferRequest, chosen: ModelVersion, ready: Mapping[int, ModelVersion]
        ) -> tuple[ModelVersion, ...]:
            return (ready[1], ready[2])

    async def scenario(core: InferenceCore) -> None:
        core.router.set_policy(MODEL, ShadowToOne())
        await core.manager.get(MODEL, "2").retire()  # its shadow copy fails
        response = await core.infer(_request())
        assert response.model_version == "3"
        while core._shadowing:
            await asyncio.sleep(0)
        stats = {s["version"]: s for s in core.model_statistics(MODEL)["model_stats"]}
        assert stats["3"]["inference_count"] == 1
        assert stats["1"]["inference_count"] == 1  # the shadow copy ran
        assert stats["2"]["inference_count"] == 0  # retired: it failed, the request did not

    run_core(repo, scenario)
