"""The split policy through a real core: weights, stickiness, shadows and their cap."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from serving.core import InferenceCore
from serving.desired_state import ModelTarget
from serving.errors import InvalidArgument
from serving.traffic import StickyKey, TrafficSplit, stable_fraction
from serving.types import InferInput, InferRequest
from tests.unit.serving.versioned_core import MODEL, run_core, write_versions


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return write_versions(tmp_path, 3)


def _request(user: str = "", version: str = "") -> InferRequest:
    data = np.array([[1.5, 2.5]], dtype=np.float32)
    params = {"user": user} if user else {}
    return InferRequest(
        MODEL, (InferInput("INPUT0", "FP32", (1, 2), data),), model_version=version,
        parameters=params,
    )  # fmt: skip


def test_the_stable_hash_is_the_same_in_every_process() -> None:
    # Another interpreter with another hash seed places the keys where this one does:
    # what makes a sticky key land on one version in every worker.
    code = (
        "from serving.traffic import stable_fraction; "
        "print([stable_fraction(f'user-{i}', b'arm') for i in range(5)])"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    other = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert other.strip() == str([stable_fraction(f"user-{i}", b"arm") for i in range(5)])
    assert len({stable_fraction(f"user-{i}", b"arm") for i in range(5)}) == 5


def test_weights_sticky_keys_and_named_versions(repo: Path) -> None:
    keys = [f"user-{random.Random(7).random()}-{i}" for i in range(1000)]

    async def scenario(core: InferenceCore) -> None:
        core.traffic_set(MODEL, {"traffic": {"1": 80, "2": 20}, "sticky": "parameter:user"})
        served = Counter()
        first: dict[str, str] = {}
        for key in keys:
            version = (await core.infer(_request(key))).model_version
            served[version] += 1
            first[key] = version
        # binomial(1000, 0.2): sd 12.6; 4 sd either side
        assert 800 - 51 <= served["1"] <= 800 + 51 and served["1"] + served["2"] == 1000
        for key in keys[:50]:  # the same key, the same version
            assert (await core.infer(_request(key))).model_version == first[key]
        assert (await core.infer(_request(keys[0], version="3"))).model_version == "3"
        shown = core.traffic_show(MODEL)
        assert shown["source"] == "api"
        again = sum(1 for key in keys[:50] if first[key] == "1")
        assert shown["arms"]["primary"]["1"]["requests"] == served["1"] + again

    run_core(repo, scenario)


def test_shadow_answers_are_compared_never_returned_and_dropped_when_behind(repo: Path) -> None:
    async def scenario(core: InferenceCore) -> None:
        core.traffic.max_inflight = 1
        core.traffic_set(MODEL, {"traffic": {"1": 100}, "shadow": {"3": 100}})
        answers = await asyncio.gather(*(core.infer(_request()) for _ in range(5)))
        assert {a.model_version for a in answers} == {"1"}
        while core.traffic.tasks:
            await asyncio.gather(*core.traffic.tasks)
        shadow = core.traffic_show(MODEL)["arms"]["shadow"]["3"]
        # all five copies were started before any ran: one ran, four were dropped
        assert (shadow["sent"], shadow["dropped"], shadow["requests"]) == (1, 4, 1)
        assert shadow["compared"] == 1 and shadow["max_abs_diff"] == 0.0

    run_core(repo, scenario)


def test_admin_split_names_only_ready_versions_and_clears_back_to_default(repo: Path) -> None:
    async def scenario(core: InferenceCore) -> None:
        with pytest.raises(InvalidArgument, match="no ready version 9"):
            core.traffic_set(MODEL, {"traffic": {"1": 50, "9": 50}})
        core.traffic_set(MODEL, {"traffic": {"2": 1}})
        assert (await core.infer(_request())).model_version == "2"
        core.traffic_set(MODEL, {})
        assert (await core.infer(_request())).model_version == "3"
        assert core.traffic_show(MODEL)["source"] == ""

    run_core(repo, scenario)


def test_config_parameters_set_the_split(repo: Path) -> None:
    (repo / MODEL / "config.pbtxt").write_text(
        "version_policy: { all: {} }\n"
        'parameters [ { key: "sluice.traffic" value: { string_value: "2:1" } },\n'
        '  { key: "sluice.sticky" value: { string_value: "header:X-User" } } ]\n'
    )

    async def scenario(core: InferenceCore) -> None:
        assert core.traffic_show(MODEL)["source"] == "config"
        assert core.traffic.split(MODEL)[0] == TrafficSplit(
            {2: 1}, sticky=StickyKey("header", "x-user")
        )
        assert (await core.infer(_request(), {"x-user": "a"})).model_version == "2"

    run_core(repo, scenario)


def test_an_admin_split_is_the_models_desired_state(repo: Path) -> None:
    async def scenario(core: InferenceCore) -> None:
        relayed: list[ModelTarget] = []
        core.manager.api_listeners.append(relayed.append)  # what --workers N relays
        core.traffic_set(MODEL, {"traffic": {"1": 3}, "shadow": {"2": 5}, "sticky": "header:u"})
        target = core.manager.desired.target(MODEL)
        assert target is not None and relayed == [target]
        assert target.to_json()["traffic"] == {"1": 3}
        assert (target.to_json()["shadow"], target.sticky) == ({"2": 5}, "header:u")
        assert ModelTarget.from_json(target.to_json()) == target
        # a target relayed from another worker installs its split here
        await core.manager.apply(
            dataclasses.replace(target, traffic={2: 1}, shadow={}, generation=0)
        )
        assert (await core.infer(_request())).model_version == "2"
        core.traffic_set(MODEL, {})
        assert not core.manager.desired.target(MODEL).traffic  # type: ignore[union-attr]
        assert (await core.infer(_request())).model_version == "3"

    run_core(repo, scenario)
