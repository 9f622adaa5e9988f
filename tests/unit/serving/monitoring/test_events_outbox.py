"""Each sink's outbox is bounded: past ``max_event_age`` or ``max_outbox_bytes`` the oldest
undelivered events are dropped, counted by sink and reason, and logged once per burst,
while a receiver that is down for weeks would otherwise fill the disk."""

from __future__ import annotations

import base64
import logging
import re
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from serving.monitoring._events import EventBus, EventsConfig, EventsConfigError
from tests.unit.serving.monitoring.receiver import Receiver

SECRET = "whsec_" + base64.b64encode(b"a test secret of 32 bytes......").decode()
DAY = 86400.0


class Clock:
    """Wall-clock time that only moves when told."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def _config(tmp_path: Path, url: str, top: str = "") -> EventsConfig:
    path = tmp_path / "events.toml"
    path.write_text(f'{top}\n[[webhook]]\nurl = "{url}"\nsecret = "{SECRET}"\n')
    return EventsConfig.load(path)


def _dropped(registry: CollectorRegistry, sink: str, reason: str) -> float | None:
    labels = {"sink": sink, "reason": reason}
    return registry.get_sample_value("sluice_events_dropped_total", labels)


def _drop_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "dropped the" in r.getMessage()]


def test_defaults_are_256_mib_and_7_days_per_sink(tmp_path: Path) -> None:
    config = _config(tmp_path, "http://127.0.0.1:1/")
    assert config.max_outbox_bytes == 256 * 1024**2
    assert config.max_event_age_secs == 7 * DAY


@pytest.mark.parametrize(
    ("top", "size", "age"),
    [
        ('max_outbox_bytes = "64MiB"\nmax_event_age = "36h"', 64 * 1024**2, 36 * 3600.0),
        ('max_outbox_bytes = "1 GB"\nmax_event_age = "2d"', 10**9, 2 * DAY),
        ("max_outbox_bytes = 4096\nmax_event_age = 90", 4096, 90.0),
        ('max_outbox_bytes = "512KiB"\nmax_event_age = "30m"', 512 * 1024, 1800.0),
    ],
)
def test_bounds_are_read_with_their_units(tmp_path: Path, top: str, size: int, age: float) -> None:
    config = _config(tmp_path, "http://127.0.0.1:1/", top)
    assert (config.max_outbox_bytes, config.max_event_age_secs) == (size, age)


@pytest.mark.parametrize(
    ("top", "message"),
    [
        ("max_outbox_bytes = 0", r"max_outbox_bytes must be a positive number of bytes .* not 0$"),
        ('max_outbox_bytes = "lots"', r"max_outbox_bytes must be .* not 'lots'$"),
        ('max_outbox_bytes = "5TiB"', r"max_outbox_bytes must be .* not '5TiB'$"),
        ("max_outbox_bytes = true", r"max_outbox_bytes must be .* not True$"),
        ('max_event_age = "1w"', r"max_event_age must be a positive duration .* not '1w'$"),
        ("max_event_age = -5", r"max_event_age must be a positive duration .* not -5$"),
        ('max_event_age = "0d"', r"max_event_age must be .* not '0d'$"),
    ],
)
def test_bad_bounds_are_refused_precisely(tmp_path: Path, top: str, message: str) -> None:
    with pytest.raises(EventsConfigError, match=message):
        _config(tmp_path, "http://127.0.0.1:1/", top)


def test_events_older_than_max_event_age_are_dropped_counted_and_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock, registry = Clock(), CollectorRegistry()
    with Receiver(SECRET) as rx:
        rx.status = 500  # down for weeks
        config = _config(tmp_path, rx.url, 'max_event_age = "7d"')
        bus = EventBus(config, "/sluice/test", clock=clock, registry=registry)
        for i in range(3):
            bus.publish("io.sluice.version.loaded", {"n": i})
        assert bus.deliver_due() == 0 and bus.pending() == 3
        clock.now += 6 * DAY  # younger than 7 days: kept, and retried
        assert bus.deliver_due() == 0 and bus.pending() == 3
        assert _dropped(registry, "sink-0", "max_event_age") is None
        clock.now += 1 * DAY + 1
        fresh = bus.publish("io.sluice.version.unloaded", {})
        with caplog.at_level(logging.WARNING, logger="sluice.events"):
            bus.deliver_due()
            clock.now += 1
            bus.deliver_due()
        rx.status = 200
        clock.now += 3600
        bus.deliver_due()
    assert _dropped(registry, "sink-0", "max_event_age") == 3.0
    assert bus.dropped == {("sink-0", "max_event_age"): 3}
    (warning,) = _drop_warnings(caplog)
    assert "sink-0" in warning and "dropped the 3 oldest undelivered event(s)" in warning
    assert "max_event_age (604800s)" in warning
    assert [e["id"] for e in rx.events] == [fresh]  # none of the old ones, ever


def test_past_max_outbox_bytes_the_oldest_go_and_the_newest_are_delivered_in_order(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock, registry = Clock(), CollectorRegistry()
    with Receiver(SECRET) as rx:
        rx.status = 500
        config = _config(tmp_path, rx.url, 'max_outbox_bytes = "4KiB"')
        bus = EventBus(config, "/sluice/test", clock=clock, registry=registry)
        outbox = config.outbox / "sink-0"
        ids = []
        with caplog.at_level(logging.WARNING, logger="sluice.events"):
            for i in range(40):  # a few hundred bytes each: ten times the cap
                ids.append(bus.publish("io.sluice.drift.detected", {"n": i, "pad": "x" * 200}))
                clock.now += 1
                bus.deliver_due()  # the background thread's passes
            kept = sorted(outbox.glob("*.json"))
            sizes = [p.stat().st_size for p in kept]
            assert sum(sizes) <= 4096 < sum(sizes) + sizes[0]  # dropped only what it had to
            first_burst = _drop_warnings(caplog)
            clock.now += 60  # the burst goes on a minute later: its drops are summed
            ids.append(bus.publish("io.sluice.drift.detected", {"n": 40, "pad": "x" * 200}))
            bus.deliver_due()
        rx.status = 200
        clock.now += 600
        assert bus.deliver_due() == len(kept)
    dropped = 41 - len(kept)
    assert _dropped(registry, "sink-0", "max_outbox_bytes") == dropped
    assert [e["id"] for e in rx.events] == ids[-len(kept) :]  # the newest, in order
    assert len(first_burst) == 1  # many passes dropped; one warning
    assert "past max_outbox_bytes (4096 bytes)" in first_burst[0]
    # then at most one a minute, summing what was dropped since; none is left unsaid
    warnings = _drop_warnings(caplog)
    assert len(warnings) == 3
    counts = re.findall(r"dropped the (\d+) oldest", "\n".join(warnings))
    assert sum(map(int, counts)) == dropped and f"({dropped} dropped since start)" in warnings[-1]


def test_the_cap_is_per_sink_so_a_dead_receiver_does_not_cost_a_live_one_its_events(
    tmp_path: Path,
) -> None:
    clock = Clock()
    with Receiver(SECRET) as down, Receiver(SECRET) as up:
        down.status = 500
        path = tmp_path / "events.toml"
        path.write_text(
            "max_outbox_bytes = 2048\n"
            f'[[webhook]]\nurl = "{down.url}"\nsecret = "{SECRET}"\n'
            f'[[webhook]]\nurl = "{up.url}"\nsecret = "{SECRET}"\n'
        )
        bus = EventBus(EventsConfig.load(path), "/s", clock=clock)
        ids = []
        for i in range(20):
            ids.append(bus.publish("io.sluice.version.loaded", {"n": i, "pad": "y" * 200}))
            clock.now += 1
            bus.deliver_due()
    assert [e["id"] for e in up.events] == ids
    assert bus.dropped[("sink-0", "max_outbox_bytes")] > 0
    assert ("sink-1", "max_outbox_bytes") not in bus.dropped


def test_publish_never_waits_for_the_bounds(tmp_path: Path) -> None:
    """Over both bounds, ``publish`` still writes every event (the delivery pass drops)."""
    clock = Clock()
    config = _config(tmp_path, "http://127.0.0.1:1/", "max_outbox_bytes = 1\nmax_event_age = 1")
    bus = EventBus(config, "/s", clock=clock)
    clock.now += 10
    for i in range(5):
        bus.publish("io.sluice.version.loaded", {"n": i})
    assert bus.pending() == 5
