"""A desired document's traffic split, served by the device and shown in its reported state."""

from __future__ import annotations

from collections import Counter

import httpx

from tests.integration.edge.conftest import Agents, Fleet, wait_for
from tests.integration.edge.test_rollout import ONES, doc

SPLIT = {"1": 80, "2": 20}


def served_versions(port: int, n: int) -> Counter[str]:
    """What ``n`` local requests naming no version got; any failure fails the test."""
    seen: Counter[str] = Counter()
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
        for _ in range(n):
            r = c.post("/v2/models/mlp/infer", json=ONES)
            assert r.status_code == 200, r.text
            body = r.json()
            factor = {"1": 2.0, "2": 3.0}[body["model_version"]]
            assert body["outputs"][0]["data"] == [factor] * 4
            seen[body["model_version"]] += 1
    return seen


def test_a_split_in_the_desired_document_serves_both_versions_and_is_reported(agents: Agents, fleet: Fleet) -> None:  # fmt: skip
    fleet.publish("dev-t", doc(1, "models:/mlp/1"))
    agent = agents.start("dev-t")
    wait_for(lambda: fleet.model("dev-t").get("applied") == 1, what="v1 committed")

    split = doc(2, "models:/mlp/2") | {}
    split["models"]["mlp"]["traffic"] = SPLIT
    fleet.publish("dev-t", split)
    wait_for(lambda: fleet.model("dev-t").get("applied") == 2, what="the split committed")
    model = fleet.model("dev-t")
    assert (model["state"], model["traffic"], model["error"]) == ("committed", SPLIT, "")

    # 400 draws at 20%: mean 80, sd 8; [40, 120] is five sd either side.
    seen = served_versions(agent.http_port, 400)
    assert set(seen) == {"1", "2"} and 40 <= seen["2"] <= 120, seen

    agent.stop()  # a reboot serves the committed split before any network call
    agent = agents.start("dev-t", mqtt__url="mqtt://127.0.0.1:1")
    seen = served_versions(agent.http_port, 200)  # mean 40, sd 5.7: [12, 68]
    assert set(seen) == {"1", "2"} and 12 <= seen["2"] <= 68, seen


def test_a_split_back_to_one_version_leaves_the_split(agents: Agents, fleet: Fleet) -> None:
    first = doc(1, "models:/mlp/2")
    first["models"]["mlp"]["traffic"] = SPLIT
    fleet.publish("dev-u", first)  # first boot: both versions pulled
    agent = agents.start("dev-u")
    wait_for(lambda: fleet.model("dev-u").get("traffic") == SPLIT and fleet.model("dev-u").get("state") == "committed", what="the split committed")  # fmt: skip
    assert set(served_versions(agent.http_port, 100)) == {"1", "2"}

    fleet.publish("dev-u", doc(2, "models:/mlp/2"))  # the same ref, no split
    wait_for(lambda: fleet.model("dev-u").get("traffic") == {} and fleet.model("dev-u").get("state") == "committed", what="the split cleared")  # fmt: skip
    assert served_versions(agent.http_port, 100) == Counter({"2": 100})
