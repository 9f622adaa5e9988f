"""Sluice's CloudEvents 1.0 and the sinks they go to.

Types are ``io.sluice.<subject>.<verb>`` (``EVENT_TYPES``). Sinks come from one TOML
file (``--events FILE``, ``serving.monitoring._events_config``)::

    outbox = "/var/lib/sluice/outbox"     # optional; default <FILE>.outbox beside it
    [[webhook]]
    url = "https://ops.example/hooks/sluice"
    secret = "whsec_..."                 # Standard Webhooks secret
    types = ["io.sluice.version.*"]      # optional filter (fnmatch patterns)
    [[mqtt]]
    host = "broker.example"
    topic = "sluice/events/{type}"       # {type}, {source}, {subject}

``EventBus.publish`` writes one outbox file per (event, sink) before returning, so an
event survives a receiver that is down and a process that dies; the delivery thread
sends each as a structured CloudEvent (``application/cloudevents+json``), oldest first
per sink, retrying with exponential backoff. A webhook gets it POSTed and signed as
Standard Webhooks specifies (``webhook-id`` is the event id, so a receiver can drop a
redelivery); an MQTT sink gets it published to its topic (``_mqtt_sink``), removed from
the outbox only once the broker acknowledged it.

Each sink's outbox is bounded (``max_outbox_bytes``, ``max_event_age``): before each
delivery pass the oldest entries past either bound are dropped, counted
(``sluice_events_dropped_total{sink,reason}``) and logged at most once a minute per sink
and reason; ``publish`` never waits for that.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from serving.monitoring._events_config import (
    EVENT_TYPES,
    EventsConfig,
    EventsConfigError,
    MqttSink,
    WebhookSink,
)
from serving.monitoring._mqtt_sink import MqttPublisher

__all__ = [
    "EVENT_TYPES",
    "EventBus",
    "EventsConfig",
    "EventsConfigError",
    "MqttSink",
    "WebhookSink",
    "backoff_secs",
]

COMMAND_DELIVERY_SECS = 10.0  # the most a command waits for its events' receivers, all sinks

log = logging.getLogger("sluice.events")

BACKOFF_BASE_SECS = 1.0
BACKOFF_MAX_SECS = 300.0
DROP_LOG_SECS = 60.0  # drops in a burst are logged once, then summed at most once a minute


def backoff_secs(attempts: int) -> float:
    """The wait after the ``attempts``-th failed delivery of an entry: 1 s doubling, at most 5 min."""
    return min(BACKOFF_BASE_SECS * 2 ** (attempts - 1), BACKOFF_MAX_SECS)


def make_event(event_type: str, source: str, data: dict[str, Any], subject: str = "") -> Any:
    """A CloudEvents 1.0 event of one of ``EVENT_TYPES``."""
    from cloudevents.core.v1.event import CloudEvent

    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}")
    attributes: dict[str, Any] = {
        "type": event_type,
        "source": source,
        "id": uuid.uuid4().hex,
        "time": dt.datetime.now(dt.UTC),
        "datacontenttype": "application/json",
    }
    if subject:
        attributes["subject"] = subject
    return CloudEvent(attributes=attributes, data=data)


def structured_body(event: Any) -> bytes:
    from cloudevents.core.bindings.http import to_structured_event

    return to_structured_event(event).body


# post(url, body, headers, timeout) -> the HTTP status of the answer
Post = Callable[[str, bytes, dict[str, str], float], int]


def _httpx_post() -> Post:
    import httpx

    client = httpx.Client()

    def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
        return client.post(url, content=body, headers=headers, timeout=timeout).status_code

    return post


def _created_secs(path: Path) -> float:
    """When an outbox entry was written: its name starts with the time in ns."""
    try:
        return int(path.name[:20]) / 1e9
    except ValueError:
        return 0.0  # not a name publish wrote: oldest of all


Sink = WebhookSink | MqttSink


class EventBus:
    """Publishes events to the configured sinks through the durable outbox.

    Each sink has its own outbox directory: ``sink-<n>`` for the n-th webhook (0-based),
    ``mqtt-<n>`` for the n-th MQTT sink; that name is the ``sink`` label of
    ``sluice_events_dropped_total`` when ``registry`` (a prometheus_client
    CollectorRegistry) is given."""

    def __init__(
        self,
        config: EventsConfig,
        source: str,
        *,
        post: Post | None = None,
        clock: Callable[[], float] = time.time,  # schedules retries (stored in the outbox), ages
        timeout: float = 10.0,
        registry: Any = None,
    ) -> None:
        self.config = config
        self.source = source
        self.timeout = timeout
        self._post = post or _httpx_post()
        self._clock = clock
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._name_lock = threading.Lock()
        self._last_ns = 0
        self._sinks: list[tuple[Sink, Path]] = [
            (sink, config.outbox / f"sink-{i}") for i, sink in enumerate(config.webhooks)
        ] + [(sink, config.outbox / f"mqtt-{i}") for i, sink in enumerate(config.mqtt)]
        self._publishers = {id(sink): MqttPublisher(sink, timeout) for sink in config.mqtt}
        for _, directory in self._sinks:
            directory.mkdir(parents=True, exist_ok=True)
        # Each outbox's bytes as this process sees them (None: not counted yet); when the
        # count passes the cap, the directory itself is measured before anything is dropped.
        self._bytes: dict[Path, int | None] = dict.fromkeys((d for _, d in self._sinks), None)
        self.dropped: dict[tuple[str, str], int] = {}  # (outbox name, reason) -> entries
        self._unlogged: dict[tuple[str, str], int] = {}  # dropped, not yet in the log
        self._logged_at: dict[tuple[str, str], float] = {}
        self._counter: Any = None
        if registry is not None:
            from prometheus_client import Counter

            self._counter = Counter(
                "sluice_events_dropped", "Events dropped from an outbox before delivery, by "
                "sink (its outbox directory) and the bound it passed", ["sink", "reason"],
                registry=registry,
            )  # fmt: skip

    def publish(self, event_type: str, data: dict[str, Any], subject: str = "") -> str:
        """Put the event in the outbox of every sink that wants it; returns its id."""
        event = make_event(event_type, self.source, data, subject)
        body = structured_body(event)
        event_id = event.get_id()
        for sink, directory in self._sinks:
            if not sink.wants(event_type):
                continue
            entry = {"id": event_id, "body": body.decode(), "attempts": 0, "next_at": 0.0}
            name = f"{self._name_ns():020d}-{event_id}.json"
            tmp = directory / f".{name}.tmp"
            text = json.dumps(entry)
            with tmp.open("w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, directory / name)
            counted = self._bytes[directory]
            if counted is not None:  # a stale count only delays a drop until it is measured
                self._bytes[directory] = counted + len(text.encode())
        self._wake.set()
        return event_id

    def _name_ns(self) -> int:
        """An entry's name starts with when it was written (the bus's clock, in ns), kept
        increasing within the process so that the names sort in publish order."""
        with self._name_lock:
            self._last_ns = max(self._last_ns + 1, int(self._clock() * 1e9))
            return self._last_ns

    def pending(self) -> int:
        return sum(len(list(directory.glob("*.json"))) for _, directory in self._sinks)

    def deliver_due(self, deadline: float | None = None) -> int:
        """Try every due outbox entry once, oldest first per sink; a sink stops at its
        first failure so its receiver sees events in order. ``deadline`` (a
        ``time.monotonic()`` value): no send waits past it, and none starts after it.
        Returns deliveries made."""
        delivered = 0
        with self._lock:
            self._log_drops()  # what a burst dropped since its last warning
            for sink, directory in self._sinks:
                send = self._sender(sink)
                for path in self._within_bounds(directory):
                    timeout = self.timeout
                    if deadline is not None:
                        timeout = min(timeout, deadline - time.monotonic())
                        if timeout <= 0:
                            return delivered
                    try:
                        text = path.read_text()
                    except FileNotFoundError:  # another process sent or dropped it
                        continue
                    entry = json.loads(text)
                    now = self._clock()
                    if entry["next_at"] > now:
                        break
                    try:
                        error = send(entry, timeout)
                    except Exception as exc:
                        error = f"{type(exc).__name__}: {exc}"
                    if not error:
                        path.unlink(missing_ok=True)
                        counted = self._bytes[directory]
                        if counted is not None:
                            self._bytes[directory] = max(0, counted - len(text.encode()))
                        delivered += 1
                        continue
                    entry["attempts"] += 1
                    delay = backoff_secs(entry["attempts"])
                    entry["next_at"] = now + delay
                    path.write_text(json.dumps(entry))
                    log.warning(
                        "%s: event %s not delivered (%s); attempt %d, next in %.0fs",
                        sink.name, entry["id"], error, entry["attempts"], delay,
                    )  # fmt: skip
                    break
        return delivered

    def deliver_within(self, seconds: float) -> int:
        """One delivery attempt of what is due, taking at most about ``seconds`` in all
        (a command that exits after it); then the MQTT connections are closed. Returns
        the entries still pending."""
        try:
            self.deliver_due(deadline=time.monotonic() + seconds)
        finally:
            self.close()
        return self.pending()

    def deliver_before_exit(self, seconds: float = COMMAND_DELIVERY_SECS) -> int:
        """``deliver_within`` for a command about to exit: what a receiver did not take
        waits in the outbox, and stderr says so. Returns the entries still pending."""
        pending = self.deliver_within(seconds)
        if pending:
            events = "event" if pending == 1 else "events"
            print(f"{pending} {events} pending in {self.config.outbox}, will be delivered "
                  "by the next sluice command or server using this events file",
                  file=sys.stderr)  # fmt: skip
        return pending

    # -- the outbox's bounds ----------------------------------------------------------

    def _within_bounds(self, directory: Path) -> list[Path]:
        """The outbox's entries, oldest first, once those past ``max_event_age`` and, oldest
        first, those past ``max_outbox_bytes`` are dropped."""
        paths = sorted(directory.glob("*.json"))
        oldest_kept = self._clock() - self.config.max_event_age_secs
        expired = 0
        while expired < len(paths) and _created_secs(paths[expired]) < oldest_kept:
            expired += 1
        if expired:
            self._drop(directory, paths[:expired], "max_event_age")
            paths = paths[expired:]
        counted = self._bytes[directory]
        if counted is None or counted > self.config.max_outbox_bytes:
            sizes = []
            for path in paths:
                try:
                    sizes.append(path.stat().st_size)
                except FileNotFoundError:
                    sizes.append(0)
            total, over = sum(sizes), 0
            while total > self.config.max_outbox_bytes and over < len(sizes):
                total -= sizes[over]
                over += 1
            if over:
                self._drop(directory, paths[:over], "max_outbox_bytes")
                paths = paths[over:]
            self._bytes[directory] = total
        return paths

    def _drop(self, directory: Path, paths: list[Path], reason: str) -> None:
        for path in paths:
            path.unlink(missing_ok=True)
        key = (directory.name, reason)
        self.dropped[key] = self.dropped.get(key, 0) + len(paths)
        if self._counter is not None:
            self._counter.labels(*key).inc(len(paths))
        self._unlogged[key] = self._unlogged.get(key, 0) + len(paths)
        self._log_drops()

    def _log_drops(self, *, now: bool = False) -> None:
        """One warning per sink and reason for a burst of drops: at its first drop, then
        the drops since, at most once a minute (``now``: whatever is left, at close)."""
        for key, count in list(self._unlogged.items()):
            at = self._clock()
            if not now and at - self._logged_at.get(key, -math.inf) < DROP_LOG_SECS:
                continue
            self._logged_at[key] = at
            del self._unlogged[key]
            name, reason = key
            bound = (
                f"older than max_event_age ({self.config.max_event_age_secs:g}s)"
                if reason == "max_event_age"
                else f"past max_outbox_bytes ({self.config.max_outbox_bytes} bytes)"
            )
            log.warning(
                "events outbox %s: dropped the %d oldest undelivered event(s) %s "
                "(%d dropped since start)",
                self.config.outbox / name, count, bound, self.dropped[key],
            )  # fmt: skip

    def _sender(self, sink: Sink) -> Callable[[dict[str, Any], float], str]:
        """``send(entry, timeout)``: "" once the sink has the entry's event, else why not."""
        if isinstance(sink, MqttSink):
            publisher = self._publishers[id(sink)]

            def publish(entry: dict[str, Any], timeout: float) -> str:
                event = json.loads(entry["body"])
                topic = sink.topic_for(event["type"], event["source"], event.get("subject", ""))
                return publisher.send(topic, entry["body"].encode(), timeout)

            return publish

        from standardwebhooks import Webhook

        signer = Webhook(sink.secret)

        def post(entry: dict[str, Any], timeout: float) -> str:
            signed_at = int(time.time())  # receivers reject stale timestamps
            stamp = dt.datetime.fromtimestamp(signed_at, tz=dt.UTC)
            headers = {
                "content-type": "application/cloudevents+json",
                "webhook-id": entry["id"],
                "webhook-timestamp": str(signed_at),
                "webhook-signature": signer.sign(entry["id"], stamp, entry["body"]),
            }
            status = self._post(sink.url, entry["body"].encode(), headers, timeout)
            return "" if 200 <= status < 300 else f"HTTP {status}"

        return post

    # -- background delivery --------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sluice-events", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.deliver_due()
            except Exception:
                log.exception("event delivery failed")
            self._wake.wait(1.0)
            self._wake.clear()

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        with self._lock:
            for publisher in self._publishers.values():
                publisher.close()
            self._log_drops(now=True)
