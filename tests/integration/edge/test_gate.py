"""Bad versions, bad documents and stale documents: what serves keeps serving."""

from __future__ import annotations

from tests.integration.edge.conftest import Agents, Fleet, wait_for
from tests.integration.edge.test_rollout import Client, answer, doc

OUT_OF_RANGE = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [5, 6, 7, 8]}]}  # fmt: skip


def test_a_version_failing_its_golden_check_is_rolled_back(agents: Agents, fleet: Fleet) -> None:
    fleet.publish("dev-g", doc(1, "models:/mlp/1"))
    agent = agents.start("dev-g")
    wait_for(lambda: fleet.model("dev-g").get("applied") == 1, what="v1 committed")
    fleet.publish("dev-g", doc(2, "models:/mlp/3"))  # version 3's golden file expects 7s, not 5s
    wait_for(lambda: fleet.model("dev-g").get("state") == "rolled_back", what="rolled back")
    model = fleet.model("dev-g")
    assert model["applied"] == 1 and model["version"] == 3
    assert "golden output 'y'" in model["error"], model["error"]
    assert answer(agent.http_port) == (200, "1", [2.0] * 4)


def test_a_version_whose_live_error_rate_trips_the_gate_is_rolled_back(agents: Agents, fleet: Fleet) -> None:  # fmt: skip
    fleet.publish("dev-l", doc(1, "models:/mlp/2"))
    agent = agents.start("dev-l", health__window_secs=30.0, health__window_requests=40)
    client = Client(agent.http_port, OUT_OF_RANGE)  # fine on version 2, an error on version 4
    client.start()  # its requests also end version 2's canary window (40 requests)
    wait_for(lambda: fleet.model("dev-l").get("applied") == 2, what="v2 committed")
    mark = len(client.answers)
    fleet.publish("dev-l", doc(2, "models:/mlp/4"))  # its golden inputs stay in range: passes
    wait_for(lambda: fleet.model("dev-l").get("state") == "rolled_back", what="rolled back")
    answers = client.finish()[mark:]
    model = fleet.model("dev-l")
    assert model["applied"] == 2 and "live error rate" in model["error"], model
    assert any(code != 200 for code, _ in answers)  # the bad version did answer some requests
    assert answer(agent.http_port, OUT_OF_RANGE)[:2] == (200, "2")


def test_malformed_documents_are_refused_and_reported(agents: Agents, fleet: Fleet) -> None:
    fleet.publish("dev-m", doc(1, "models:/mlp/1"))
    agent = agents.start("dev-m")
    wait_for(lambda: fleet.model("dev-m").get("applied") == 1, what="v1 committed")
    fleet.publish("dev-m", b"{not json")
    wait_for(lambda: "not JSON" in fleet.reported["dev-m"].get("desired_error", ""), what="refusal")  # fmt: skip
    fleet.publish("dev-m", {"version": 5, "models": {"mlp": {"ref": "mlp-2"}}})
    wait_for(lambda: "models.mlp.ref" in fleet.reported["dev-m"]["desired_error"], what="refusal")
    assert fleet.reported["dev-m"]["desired_version"] == 1
    assert answer(agent.http_port) == (200, "1", [2.0] * 4)


def test_out_of_order_and_duplicate_documents_change_nothing(agents: Agents, fleet: Fleet) -> None:
    fleet.publish("dev-o", doc(2, "models:/mlp/2"))
    agent = agents.start("dev-o")
    wait_for(lambda: fleet.model("dev-o").get("applied") == 2, what="v2 committed")
    client = Client(agent.http_port)
    client.start()
    fleet.publish("dev-o", doc(1, "models:/mlp/1"))  # older
    fleet.publish("dev-o", doc(2, "models:/mlp/2"))  # duplicate
    fleet.publish("dev-o", doc(2, "models:/mlp/1"))  # same version, other content: not newer
    fleet.publish("dev-o", doc(3, "models:/mlp/2"))  # newer, same model: nothing to do
    wait_for(lambda: fleet.reported["dev-o"]["desired_version"] == 3, what="doc 3 held")
    wait_for(lambda: fleet.model("dev-o").get("state") == "committed")
    answers = client.finish()
    assert set(answers) == {(200, "2")}
    accepted = [e["version"] for e in fleet.events if e.get("kind") == "desired_accepted"]
    assert accepted == [2, 3]
    assert not [e for e in fleet.events if e.get("kind") == "state" and e.get("version") == 1]
