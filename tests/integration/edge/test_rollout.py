"""Rollouts on a device, seen from the device's own HTTP endpoint and the fleet's topics."""

from __future__ import annotations

import threading
from typing import Any

import httpx

from tests.integration.edge.conftest import Agents, Fleet, wait_for

ONES = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 1, 1, 1]}]}


def doc(version: int, ref: str, golden: bool = True) -> dict[str, Any]:
    entry: dict[str, Any] = {"ref": ref}
    if golden:
        entry["golden"] = "golden.json"
    return {"version": version, "models": {"mlp": entry}}


def answer(port: int, body: dict[str, Any] = ONES) -> tuple[int, str, list[float]]:
    r = httpx.post(f"http://127.0.0.1:{port}/v2/models/mlp/infer", json=body, timeout=30)
    if r.status_code != 200:
        return r.status_code, "", []
    j = r.json()
    return 200, j["model_version"], j["outputs"][0]["data"]


class Client(threading.Thread):
    """A local app calling the device's endpoint without pause; keeps every answer."""

    def __init__(self, port: int, body: dict[str, Any] = ONES) -> None:
        super().__init__(daemon=True)
        self.port, self.body = port, body
        self.answers: list[tuple[int, str]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30) as c:
            while not self.stopping.is_set():
                r = c.post("/v2/models/mlp/infer", json=self.body)
                self.answers.append((r.status_code, r.json().get("model_version", "") if r.status_code == 200 else ""))  # fmt: skip

    def finish(self) -> list[tuple[int, str]]:
        self.stopping.set()
        self.join(30)
        return self.answers


def test_first_boot_converges_then_a_rollout_fails_no_request(agents: Agents, fleet: Fleet) -> None:
    fleet.publish("dev-1", doc(1, "models:/mlp/1"))
    agent = agents.start("dev-1")
    wait_for(lambda: fleet.model("dev-1").get("state") == "committed", what="v1 committed")
    assert answer(agent.http_port) == (200, "1", [2.0] * 4)
    assert fleet.status["dev-1"] == "online"

    client = Client(agent.http_port)
    client.start()
    wait_for(lambda: len(client.answers) >= 5)
    fleet.publish("dev-1", doc(2, "models:/mlp/2"))
    wait_for(lambda: fleet.model("dev-1").get("applied") == 2, what="v2 committed")
    wait_for(lambda: client.answers and client.answers[-1] == (200, "2"))
    answers = client.finish()
    assert {code for code, _ in answers} == {200}, [a for a in answers if a[0] != 200][:5]
    served = [v for _, v in answers]
    assert served.index("2") > 0 and set(served[served.index("2") :]) == {"2"}  # no flapping back
    model = fleet.model("dev-1")
    assert (model["state"], model["applied"], model["previous"]) == ("committed", 2, 1)
