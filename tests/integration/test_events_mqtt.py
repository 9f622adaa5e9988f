"""[[mqtt]] event sinks against a real mosquitto: structured CloudEvents on the sink's
topic, nothing lost while the broker is down or refuses the credentials, in order."""

from __future__ import annotations

import logging
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from serving.monitoring._events import EventBus, EventsConfig
from tests.integration.edge.broker import Mosquitto
from tests.integration.server_process import ServerProcess
from tests.integration.test_monitoring import _model
from tests.tls_certs import make_pki

pytestmark = pytest.mark.integration


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


class Subscriber:
    """A paho client subscribed to ``sluice/#`` at QoS 2; keeps what arrives."""

    def __init__(self, port: int, username: str | None = None, password: str | None = None) -> None:  # fmt: skip
        self.messages: list[tuple[str, bytes, str | None, bool]] = []  # topic, payload, ct, retain
        subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        if username is not None:
            self.client.username_pw_set(username, password)

        def on_connect(client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
            client.subscribe("sluice/#", qos=2)

        def on_subscribe(client: Any, userdata: Any, mid: int, rcs: Any, props: Any) -> None:
            subscribed.set()

        def on_message(client: Any, userdata: Any, message: Any) -> None:
            content_type = getattr(message.properties, "ContentType", None)
            self.messages.append((message.topic, bytes(message.payload), content_type, message.retain))  # fmt: skip

        self.client.on_connect = on_connect
        self.client.on_subscribe = on_subscribe
        self.client.on_message = on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert subscribed.wait(10), "no SUBACK from the broker"

    def until(self, count: int, timeout: float = 20.0) -> list[tuple[str, bytes, str | None, bool]]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count:
            assert time.monotonic() < deadline, f"messages so far: {self.messages}"
            time.sleep(0.02)
        return self.messages

    def events(self) -> list[Any]:
        return [JSONFormat().read(CloudEvent, payload) for _, payload, _, _ in self.messages]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    server = Mosquitto(tmp_path / "broker")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def subscribe() -> Iterator[Callable[..., Subscriber]]:
    made: list[Subscriber] = []

    def make(port: int, *credentials: str) -> Subscriber:
        made.append(Subscriber(port, *credentials))
        return made[-1]

    yield make
    for subscriber in made:
        subscriber.close()


def _config(tmp_path: Path, port: int, extra: str = "") -> EventsConfig:
    path = tmp_path / "events.toml"
    path.write_text(f'[[mqtt]]\nhost = "127.0.0.1"\nport = {port}\n{extra}')
    return EventsConfig.load(path)


@pytest.mark.parametrize(
    ("qos", "protocol"), [(0, "5"), (1, "5"), (2, "5"), (1, "3.1.1")], ids=["qos0", "qos1", "qos2", "v311"],
)  # fmt: skip
def test_an_event_reaches_a_subscriber_as_a_structured_cloudevent(
    tmp_path: Path, broker: Mosquitto, subscribe: Callable[..., Subscriber], qos: int, protocol: str
) -> None:
    rx = subscribe(broker.port)
    extra = f'qos = {qos}\nprotocol = "{protocol}"\ntopic = "sluice/events/{{type}}/{{subject}}"\n'
    bus = EventBus(_config(tmp_path, broker.port, extra), "/sluice/test", clock=Clock())
    try:
        event_id = bus.publish("io.sluice.drift.detected", {"model": "m", "feature": "x[2]"}, subject="m:1")  # fmt: skip
        assert bus.pending() == 1
        assert bus.deliver_due() == 1
        assert bus.pending() == 0
    finally:
        bus.close()
    ((topic, _, content_type, retained),) = rx.until(1)
    (event,) = rx.events()
    assert topic == "sluice/events/io.sluice.drift.detected/m:1" and not retained
    assert event.get_specversion() == "1.0" and event.get_id() == event_id
    assert event.get_type() == "io.sluice.drift.detected" and event.get_source() == "/sluice/test"
    assert event.get_subject() == "m:1"
    assert event.get_data() == {"model": "m", "feature": "x[2]"}
    assert content_type == ("application/cloudevents+json" if protocol == "5" else None)


def test_a_broker_that_is_down_loses_nothing_and_gets_events_in_order(
    tmp_path: Path, subscribe: Callable[..., Subscriber], caplog: pytest.LogCaptureFixture
) -> None:
    broker = Mosquitto(tmp_path / "broker")  # not started yet
    clock = Clock()
    bus = EventBus(_config(tmp_path, broker.port), "/sluice/test", clock=clock)
    ids = [bus.publish("io.sluice.version.loaded", {"n": i}) for i in range(3)]
    with caplog.at_level(logging.WARNING, logger="sluice.events"):
        assert bus.deliver_due() == 0
    assert bus.pending() == 3
    assert f"mqtt 127.0.0.1:{broker.port}: event {ids[0]} not delivered" in caplog.text
    assert "Connection refused" in caplog.text
    bus.close()
    broker.start()
    try:
        rx = subscribe(broker.port)
        # A new bus over the same outbox (a restart) still has them, and waits its backoff.
        bus = EventBus(_config(tmp_path, broker.port), "/sluice/test", clock=clock)
        assert bus.pending() == 3 and bus.deliver_due() == 0
        clock.now += 1.0
        assert bus.deliver_due() == 3
        bus.close()
        rx.until(3)
    finally:
        broker.stop()
    assert [e.get_id() for e in rx.events()] == ids
    assert [e.get_data() for e in rx.events()] == [{"n": 0}, {"n": 1}, {"n": 2}]


def test_a_broker_lost_between_sends_is_reconnected(
    tmp_path: Path, broker: Mosquitto, subscribe: Callable[..., Subscriber]
) -> None:
    clock = Clock()
    bus = EventBus(_config(tmp_path, broker.port), "/s", clock=clock)
    try:
        first = bus.publish("io.sluice.version.loaded", {})
        assert bus.deliver_due() == 1
        broker.stop()
        second = bus.publish("io.sluice.version.unloaded", {})
        assert bus.deliver_due() == 0 and bus.pending() == 1
        broker.start()
        rx = subscribe(broker.port)
        clock.now += 1.0
        assert bus.deliver_due() == 1
    finally:
        bus.close()
    rx.until(1)
    assert [e.get_id() for e in rx.events()] == [second] and first != second


def test_type_filters(
    tmp_path: Path, broker: Mosquitto, subscribe: Callable[..., Subscriber]
) -> None:
    rx = subscribe(broker.port)
    bus = EventBus(_config(tmp_path, broker.port, 'types = ["io.sluice.drift.*"]'), "/s", clock=Clock())  # fmt: skip
    try:
        bus.publish("io.sluice.drift.detected", {})
        bus.publish("io.sluice.version.loaded", {})
        bus.publish("io.sluice.drift.recovered", {})
        assert bus.pending() == 2
        assert bus.deliver_due() == 2
    finally:
        bus.close()
    rx.until(2)
    assert [topic for topic, *_ in rx.messages] == [
        "sluice/events/io.sluice.drift.detected", "sluice/events/io.sluice.drift.recovered",
    ]  # fmt: skip


def test_retained_events_reach_a_late_subscriber(
    tmp_path: Path, broker: Mosquitto, subscribe: Callable[..., Subscriber]
) -> None:
    bus = EventBus(_config(tmp_path, broker.port, "retain = true"), "/s", clock=Clock())
    try:
        event_id = bus.publish("io.sluice.rollout.promoted", {"model": "m"})
        assert bus.deliver_due() == 1
    finally:
        bus.close()
    rx = subscribe(broker.port)  # after the event went out
    ((topic, _, _, retained),) = rx.until(1)
    assert topic == "sluice/events/io.sluice.rollout.promoted" and retained
    assert rx.events()[0].get_id() == event_id


def test_a_broker_that_never_acknowledges_keeps_the_event(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A peer that accepts the MQTT 3.1.1 connection (CONNACK) and then swallows the
    PUBLISH without a PUBACK: the event was sent but not taken, so it stays."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    received = bytearray()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(4096)  # CONNECT
            conn.sendall(bytes([0x20, 0x02, 0x00, 0x00]))  # CONNACK, accepted
            while chunk := conn.recv(4096):
                received.extend(chunk)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    config = _config(tmp_path, port, 'protocol = "3.1.1"\nqos = 1\n')
    bus = EventBus(config, "/s", clock=Clock(), timeout=0.5)
    try:
        bus.publish("io.sluice.version.loaded", {})
        with caplog.at_level(logging.WARNING, logger="sluice.events"):
            assert bus.deliver_due() == 0
    finally:
        bus.close()
        thread.join(5)
        listener.close()
    assert received[0] >> 4 == 3  # the PUBLISH did go out
    assert bus.pending() == 1
    assert "the broker sent no PUBACK within 0.5s" in caplog.text


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_refused_credentials_keep_the_event_and_say_why(
    tmp_path: Path,
    subscribe: Callable[..., Subscriber],
    caplog: pytest.LogCaptureFixture,
    protocol: str,
) -> None:
    broker = Mosquitto(tmp_path / "broker")
    passwords = tmp_path / "broker" / "passwords"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "sluice", "right"], check=True)  # fmt: skip
    conf = broker.conf.read_text().replace("allow_anonymous true", "allow_anonymous false")
    broker.conf.write_text(conf + f"password_file {passwords}\n")
    broker.start()
    clock = Clock()
    try:
        wrong = f'username = "sluice"\npassword = "wrong"\nprotocol = "{protocol}"\n'
        bus = EventBus(_config(tmp_path, broker.port, wrong), "/s", clock=clock)
        event_id = bus.publish("io.sluice.model.registered", {"model": "m"})
        with caplog.at_level(logging.WARNING, logger="sluice.events"):
            assert bus.deliver_due() == 0
        bus.close()
        assert bus.pending() == 1
        assert "the broker refused the connection" in caplog.text
        assert "the broker refused the connection: Not authorized" in caplog.text

        rx = subscribe(broker.port, "sluice", "right")
        right = f'username = "sluice"\npassword = "right"\nprotocol = "{protocol}"\n'
        bus = EventBus(_config(tmp_path, broker.port, right), "/s", clock=clock)
        clock.now += 1.0
        assert bus.deliver_due() == 1
        bus.close()
        rx.until(1)
    finally:
        broker.stop()
    assert [e.get_id() for e in rx.events()] == [event_id]


def test_a_server_sends_version_loaded_over_mqtt(
    tmp_path: Path, broker: Mosquitto, subscribe: Callable[..., Subscriber]
) -> None:
    repo = tmp_path / "repo"
    _model(repo, "good", {})
    (tmp_path / "logs").mkdir()
    rx = subscribe(broker.port)
    events = tmp_path / "events.toml"
    events.write_text(
        f'[[mqtt]]\nhost = "127.0.0.1"\nport = {broker.port}\n'
        'topic = "sluice/{subject}/{type}"\ntypes = ["io.sluice.version.*"]\n'
    )
    server = ServerProcess(repo, "--events", str(events), log_dir=tmp_path / "logs")
    try:
        ((topic, _, content_type, _),) = rx.until(1, timeout=60)
    finally:
        server.stop()
    (loaded,) = rx.events()
    assert topic == "sluice/good:1/io.sluice.version.loaded"
    assert content_type == "application/cloudevents+json"
    assert loaded.get_type() == "io.sluice.version.loaded"
    assert loaded.get_data() == {"model": "good", "version": "1"}


def test_mutual_tls_delivers_and_an_untrusted_certificate_keeps_the_event(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pki = make_pki(tmp_path / "pki")
    broker = Mosquitto(tmp_path / "broker", tls=pki, client_certs=True)
    broker.start()
    clock = Clock()
    try:
        stranger = (f'tls = true\nca_file = "{pki.ca}"\n'
                    f'cert_file = "{pki.stranger_cert}"\nkey_file = "{pki.stranger_key}"\n')  # fmt: skip
        bus = EventBus(_config(tmp_path, broker.port, stranger), "/s", clock=clock, timeout=5)
        event_id = bus.publish("io.sluice.version.loaded", {})
        with caplog.at_level(logging.WARNING, logger="sluice.events"):
            assert bus.deliver_due() == 0
        bus.close()
        assert bus.pending() == 1 and f"event {event_id} not delivered" in caplog.text

        trusted = (f'tls = true\nca_file = "{pki.ca}"\n'
                   f'cert_file = "{pki.client_cert}"\nkey_file = "{pki.client_key}"\n')  # fmt: skip
        bus = EventBus(_config(tmp_path, broker.port, trusted), "/s", clock=clock, timeout=5)
        clock.now += 1.0
        assert bus.deliver_due() == 1  # PUBACK came back over TLS
        bus.close()
    finally:
        broker.stop()
    assert bus.pending() == 0
