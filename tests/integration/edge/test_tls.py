"""mqtts://: the agent verifies the broker with its CA and presents a client certificate."""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from registry_client import LocalRegistry
from tests.integration.edge.broker import Mosquitto
from tests.integration.edge.conftest import Agents, wait_for
from tests.integration.edge.test_rollout import answer, doc
from tests.tls_certs import Pki, make_pki


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


@pytest.fixture
def tls_broker(tmp_path: Path, pki: Pki) -> Iterator[Mosquitto]:
    """mosquitto on TLS only, requiring a client certificate the client CA signed."""
    b = Mosquitto(tmp_path / "tls-broker", tls=pki, client_certs=True)
    b.start()
    yield b
    b.stop()


@pytest.fixture
def tls_agents(tmp_path: Path, tls_broker: Mosquitto, registry: LocalRegistry) -> Iterator[Agents]:
    a = Agents(tmp_path, tls_broker, registry)
    yield a
    a.stop_all()


class TlsFleet:
    """The fleet side over mutual TLS: publishes desired, keeps the reported states."""

    def __init__(self, broker: Mosquitto, pki: Pki) -> None:
        self.reported: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="tls-fleet")
        self.client.tls_set(
            ca_certs=str(pki.ca), certfile=str(pki.client_cert), keyfile=str(pki.client_key),
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )  # fmt: skip
        self.client.on_message = self._message
        self.client.on_connect = lambda c, *a: c.subscribe("sluice/devices/+/reported", qos=1)
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()

    def _message(self, client: Any, userdata: Any, message: Any) -> None:
        with self._lock:
            self.reported[message.topic.split("/")[2]] = json.loads(message.payload)

    def model(self, device: str) -> dict[str, Any]:
        with self._lock:
            return dict(self.reported.get(device, {}).get("models", {}).get("mlp", {}))

    def publish(self, device: str, document: dict[str, Any]) -> None:
        payload = json.dumps(document).encode()
        info = self.client.publish(f"sluice/devices/{device}/desired", payload, qos=1, retain=True)
        info.wait_for_publish(timeout=10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def tls_fleet(tls_broker: Mosquitto, pki: Pki) -> Iterator[TlsFleet]:
    f = TlsFleet(tls_broker, pki)
    yield f
    f.close()


def test_the_agent_converges_over_mutual_tls(tls_agents: Agents, tls_fleet: TlsFleet, pki: Pki) -> None:  # fmt: skip
    assert tls_agents.broker.url.startswith("mqtts://")
    tls_fleet.publish("dev-s", doc(1, "models:/mlp/1"))
    agent = tls_agents.start(
        "dev-s",
        mqtt__ca_file=pki.ca,
        mqtt__cert_file=pki.client_cert,
        mqtt__key_file=pki.client_key,
    )
    wait_for(lambda: tls_fleet.model("dev-s").get("applied") == 1, what="v1 committed over TLS")
    assert answer(agent.http_port) == (200, "1", [2.0] * 4)
    assert tls_fleet.reported["dev-s"]["device_info"]["broker_error"] == ""


def test_a_wrong_ca_is_refused_with_the_reason_in_the_log_and_the_agent_keeps_retrying(
    tls_agents: Agents, tls_fleet: TlsFleet, pki: Pki
) -> None:
    tls_fleet.publish("dev-w", doc(1, "models:/mlp/1"))
    agent = tls_agents.start(  # trusts the client CA, which did not sign the broker
        "dev-w",
        mqtt__ca_file=pki.client_ca,
        mqtt__cert_file=pki.client_cert,
        mqtt__key_file=pki.client_key,
    )
    agent.wait_log("certificate verify failed", timeout=30)
    line = next(x for x in agent.log().splitlines() if "certificate verify failed" in x)
    assert f"cannot connect to {tls_agents.broker.url}" in line, line
    assert agent.proc.poll() is None  # still running, still retrying
    assert "dev-w" not in tls_fleet.reported  # nothing got through
    outbox = tls_agents.tmp_path / "devices" / "dev-w" / "outbox.db"
    assert outbox.exists()
