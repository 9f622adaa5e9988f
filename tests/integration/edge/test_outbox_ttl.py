"""Outbox rows older than the TTL are dropped through a real broker outage, and counted."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from tests.integration.edge.broker import Mosquitto
from tests.integration.edge.conftest import Agents, Fleet, wait_for
from tests.integration.edge.test_rollout import answer, doc

TTL = 2.0
QUIET = 3600.0  # no heartbeat during the test: the reconnect's own report must say it


def pending(outbox: Path) -> list[tuple[str, float]]:
    with sqlite3.connect(outbox) as db:
        return db.execute("SELECT topic, created FROM messages ORDER BY row").fetchall()


def test_messages_older_than_the_ttl_are_dropped_not_sent_and_the_count_is_reported(
    agents: Agents, fleet: Fleet, broker: Mosquitto
) -> None:
    fleet.publish("dev-e", doc(1, "models:/mlp/1"))
    agent = agents.start("dev-e", outbox__ttl_secs=TTL, heartbeat_secs=QUIET)
    wait_for(lambda: fleet.model("dev-e").get("applied") == 1, what="v1 committed")
    outbox = agents.tmp_path / "devices" / "dev-e" / "outbox.db"
    wait_for(lambda: not pending(outbox), what="outbox drained")
    assert agent.stop() == 0
    boots = sum(1 for e in fleet.events if e.get("kind") == "boot")
    assert boots == 1

    broker.stop()
    # It boots offline: its boot event and reported state wait in the outbox.
    agent = agents.start("dev-e", outbox__ttl_secs=TTL, heartbeat_secs=QUIET)
    assert answer(agent.http_port)[:2] == (200, "1")
    waiting = pending(outbox)
    assert any(topic.endswith("/events") for topic, _ in waiting), waiting
    # The outage outlasts the TTL: every row queued while offline is now too old.
    wait_for(lambda: time.time() - max(c for _, c in waiting) > TTL + 0.2, what="the TTL to pass")
    broker.start()

    def expired_reported() -> int:
        info = fleet.reported.get("dev-e", {}).get("device_info", {})
        return int(info.get("dropped", {}).get("expired", 0))

    wait_for(lambda: expired_reported() >= len(waiting), timeout=20, what="the expired count reported")  # fmt: skip
    assert expired_reported() == len(waiting)
    wait_for(lambda: not pending(outbox), what="outbox drained after the reconnect")
    wait_for(lambda: fleet.status.get("dev-e") == "online")
    assert sum(1 for e in fleet.events if e.get("kind") == "boot") == boots  # never sent
    assert answer(agent.http_port)[:2] == (200, "1")
