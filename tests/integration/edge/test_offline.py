"""Reboots without a network, SIGKILL mid-update, store-and-forward."""

from __future__ import annotations

import sqlite3

from tests.integration.edge.broker import Mosquitto
from tests.integration.edge.conftest import Agents, Fleet, wait_for
from tests.integration.edge.test_poll import DesiredServer, desired_server  # noqa: F401
from tests.integration.edge.test_rollout import answer, doc


def test_boot_without_broker_serves_local_state_then_drains_the_outbox_in_order(
    agents: Agents, fleet: Fleet, broker: Mosquitto
) -> None:
    fleet.publish("dev-b", doc(1, "models:/mlp/1"))
    agent = agents.start("dev-b")
    wait_for(lambda: fleet.model("dev-b").get("applied") == 1, what="v1 committed")
    assert agent.stop() == 0
    broker.stop()

    agent = agents.start("dev-b")  # no broker: serves before any network call
    assert answer(agent.http_port) == (200, "1", [2.0] * 4)
    outbox = agents.tmp_path / "devices" / "dev-b" / "outbox.db"
    with sqlite3.connect(outbox) as db:
        waiting = db.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
    assert waiting >= 2  # at least the boot event and the reported state

    boots_before = sum(1 for e in fleet.events if e.get("kind") == "boot")
    broker.start()
    wait_for(lambda: sum(1 for e in fleet.events if e.get("kind") == "boot") > boots_before, what="boot event delivered")  # fmt: skip

    def drained() -> bool:
        with sqlite3.connect(outbox) as db:
            return db.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 0

    wait_for(drained, what="outbox drained")
    seqs = [e["seq"] for e in fleet.events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    wait_for(lambda: fleet.status.get("dev-b") == "online")
    assert answer(agent.http_port)[:2] == (200, "1")


def test_sigkill_in_canary_restarts_on_the_committed_version_and_converges(agents: Agents, fleet: Fleet) -> None:  # fmt: skip
    fleet.publish("dev-k", doc(1, "models:/mlp/1"))
    agent = agents.start("dev-k")
    wait_for(lambda: fleet.model("dev-k").get("applied") == 1, what="v1 committed")
    agent.stop()
    agent = agents.start("dev-k", health__window_secs=600.0, health__window_requests=10_000)
    fleet.publish("dev-k", doc(2, "models:/mlp/2"))
    wait_for(lambda: fleet.model("dev-k").get("state") == "canary", what="v2 in canary")
    assert answer(agent.http_port)[:2] == (200, "2")
    agent.kill()

    agent = agents.start("dev-k")  # short window this time
    # It came up on the committed version (the retry of version 2 begins right after).
    assert "models=mlp/1" in agent.log()
    wait_for(lambda: fleet.model("dev-k").get("applied") == 2, what="v2 committed after restart")
    assert answer(agent.http_port) == (200, "2", [3.0] * 4)
    assert [e for e in fleet.events if e.get("kind") == "resumed" and e.get("was") == "canary"]


def test_a_full_outbox_drops_the_oldest_and_reports_the_count(
    agents: Agents,
    fleet: Fleet,
    broker: Mosquitto,
    desired_server: DesiredServer,  # noqa: F811
) -> None:
    broker.stop()  # offline: everything the agent says waits in its outbox
    desired_server.document = doc(1, "models:/mlp/1")
    agent = agents.start(
        "dev-f", poll__url=desired_server.url, outbox__max_bytes=2048, outbox__policy="drop_oldest"
    )
    wait_for(lambda: answer(agent.http_port)[:2] == (200, "1"), what="v1 serving")
    desired_server.document = doc(2, "models:/mlp/2")  # more events while offline
    wait_for(lambda: answer(agent.http_port)[:2] == (200, "2"), what="v2 serving")
    outbox = agents.tmp_path / "devices" / "dev-f" / "outbox.db"
    with sqlite3.connect(outbox) as db:
        pending = db.execute("SELECT COALESCE(SUM(size), 0) FROM messages").fetchone()[0]
        dropped = dict(db.execute("SELECT reason, count FROM drops").fetchall())
    assert pending <= 2048 and dropped.get("full_oldest", 0) > 0

    broker.start()
    wait_for(lambda: fleet.reported.get("dev-f", {}).get("device_info", {}).get("dropped", {}).get("full_oldest", 0) >= dropped["full_oldest"], what="drop count reported")  # fmt: skip
    wait_for(lambda: fleet.model("dev-f").get("applied") == 2)
    assert not [e for e in fleet.events if e.get("kind") == "boot"]  # the oldest went first
