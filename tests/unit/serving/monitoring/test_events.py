from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest

from serving.monitoring._events import EventBus, EventsConfig, EventsConfigError
from tests.unit.serving.monitoring.receiver import Receiver

SECRET = "whsec_" + base64.b64encode(b"a test secret of 32 bytes......").decode()


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def _config(tmp_path: Path, url: str, types: str = "") -> EventsConfig:
    path = tmp_path / "events.toml"
    path.write_text(f'[[webhook]]\nurl = "{url}"\nsecret = "{SECRET}"\n{types}')
    return EventsConfig.load(path)


def test_signed_cloudevents_reach_a_real_receiver(tmp_path: Path) -> None:
    with Receiver(SECRET) as rx:
        bus = EventBus(_config(tmp_path, rx.url), "/sluice/test", clock=Clock())
        event_id = bus.publish("io.sluice.drift.detected", {"model": "m", "feature": "x[2]"})
        assert bus.deliver_due() == 1
    assert rx.bad_signatures == 0
    (event,) = rx.events
    assert event["specversion"] == "1.0" and event["id"] == event_id
    assert event["type"] == "io.sluice.drift.detected" and event["source"] == "/sluice/test"
    assert event["data"] == {"model": "m", "feature": "x[2]"}
    assert event["_content_type"].startswith("application/cloudevents+json")


def test_a_receiver_that_is_down_loses_nothing_and_gets_events_in_order(tmp_path: Path) -> None:
    clock = Clock()
    with Receiver(SECRET) as rx:
        rx.status = 500
        bus = EventBus(_config(tmp_path, rx.url), "/sluice/test", clock=clock)
        ids = [bus.publish("io.sluice.version.loaded", {"n": i}) for i in range(3)]
        assert bus.deliver_due() == 0
        assert bus.deliver_due() == 0  # backing off: not tried again yet
        assert rx.attempts == 1
        clock.now += 1.0
        assert bus.deliver_due() == 0 and rx.attempts == 2
        # A new bus over the same outbox (a restart) still has them.
        bus = EventBus(_config(tmp_path, rx.url), "/sluice/test", clock=clock)
        assert bus.pending() == 3
        rx.status = 200
        clock.now += 2.0
        assert bus.deliver_due() == 3
    assert [e["id"] for e in rx.events] == ids
    assert bus.pending() == 0


def test_a_receiver_that_never_answers_is_retried(tmp_path: Path) -> None:
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)  # accepts the connection, never answers
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/"
    try:
        bus = EventBus(_config(tmp_path, url), "/s", clock=Clock(), timeout=0.2)
        bus.publish("io.sluice.version.loaded", {})
        assert bus.deliver_due() == 0
        assert bus.pending() == 1
    finally:
        sock.close()


def test_type_filters(tmp_path: Path) -> None:
    with Receiver(SECRET) as rx:
        config = _config(tmp_path, rx.url, 'types = ["io.sluice.version.*"]')
        bus = EventBus(config, "/s", clock=Clock())
        bus.publish("io.sluice.drift.detected", {})
        bus.publish("io.sluice.version.unloaded", {})
        assert bus.deliver_due() == 1
    assert [e["type"] for e in rx.events] == ["io.sluice.version.unloaded"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[webhook]]\nurl = "ftp://x"\nsecret = "s"', "url must be an http"),
        ('[[webhook]]\nurl = "http://x"', "secret .* is missing"),
        ('[[webhook]]\nurl = "http://x"\nsecret = "whsec_!!"', "not a Standard Webhooks key"),
        (f'[[webhook]]\nurl = "http://x"\nsecret = "{SECRET}"\ntypes = ["io.other.*"]',
         "matches no Sluice event type"),
        ("[[hook]]", "unknown key 'hook'"),
        (f'[[webhook]]\nurl = "http://x"\nsecret = "{SECRET}"\n[[webhook]]\nurl = "http://y"\n'
         f'secret = "{SECRET}"\nsecert = "{SECRET}"',
         r"webhook #2: unknown key 'secert' \(known: secret, types, url\)$"),
        ("webhook = [", "events file"),
    ],
)  # fmt: skip
def test_bad_events_files_are_precise(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "events.toml"
    path.write_text(text)
    with pytest.raises(EventsConfigError, match=message):
        EventsConfig.load(path)


def test_a_command_about_to_exit_says_what_it_left_in_the_outbox(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Receiver(SECRET) as rx:
        rx.status = 500
        config = _config(tmp_path, rx.url)
        bus = EventBus(config, "/sluice/test")
        bus.publish("io.sluice.drift.detected", {"features": ["x[1]"]})
        assert bus.deliver_before_exit(5.0) == 1
    err = capsys.readouterr().err
    assert f"1 event pending in {config.outbox}, will be delivered by the next sluice" in err
    with Receiver(SECRET) as rx:
        later = Clock()
        later.now = time.time() + 2.0  # past the first retry's backoff (1 s)
        bus = EventBus(_config(tmp_path, rx.url), "/sluice/test", clock=later)
        assert bus.deliver_before_exit(5.0) == 0
        assert [e["type"] for e in rx.events] == ["io.sluice.drift.detected"]
    assert capsys.readouterr().err == ""
