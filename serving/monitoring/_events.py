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
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
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

log = logging.getLogger("sluice.events")

BACKOFF_BASE_SECS = 1.0
BACKOFF_MAX_SECS = 300.0


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


Post = Callable[[str, bytes, dict[str, str]], int]  # (url, body, headers) -> HTTP status


def _httpx_post(timeout: float) -> Post:
    import httpx

    client = httpx.Client(timeout=timeout)

    def post(url: str, body: bytes, headers: dict[str, str]) -> int:
        return client.post(url, content=body, headers=headers).status_code

    return post


Sink = WebhookSink | MqttSink


class EventBus:
    """Publishes events to the configured sinks through the durable outbox.

    Each sink has its own outbox directory: ``sink-<n>`` for the n-th webhook (0-based),
    ``mqtt-<n>`` for the n-th MQTT sink."""

    def __init__(
        self,
        config: EventsConfig,
        source: str,
        *,
        post: Post | None = None,
        clock: Callable[[], float] = time.time,  # schedules retries (stored in the outbox)
        timeout: float = 10.0,
    ) -> None:
        self.config = config
        self.source = source
        self._post = post or _httpx_post(timeout)
        self._clock = clock
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._sinks: list[tuple[Sink, Path]] = [
            (sink, config.outbox / f"sink-{i}") for i, sink in enumerate(config.webhooks)
        ] + [(sink, config.outbox / f"mqtt-{i}") for i, sink in enumerate(config.mqtt)]
        self._publishers = {id(sink): MqttPublisher(sink, timeout) for sink in config.mqtt}
        for _, directory in self._sinks:
            directory.mkdir(parents=True, exist_ok=True)

    def publish(self, event_type: str, data: dict[str, Any], subject: str = "") -> str:
        """Put the event in the outbox of every sink that wants it; returns its id."""
        event = make_event(event_type, self.source, data, subject)
        body = structured_body(event)
        event_id = event.get_id()
        for sink, directory in self._sinks:
            if not sink.wants(event_type):
                continue
            entry = {"id": event_id, "body": body.decode(), "attempts": 0, "next_at": 0.0}
            name = f"{time.time_ns():020d}-{event_id}.json"
            tmp = directory / f".{name}.tmp"
            with tmp.open("w") as f:
                json.dump(entry, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, directory / name)
        self._wake.set()
        return event_id

    def pending(self) -> int:
        return sum(len(list(directory.glob("*.json"))) for _, directory in self._sinks)

    def deliver_due(self) -> int:
        """Try every due outbox entry once, oldest first per sink; a sink stops at its
        first failure so its receiver sees events in order. Returns deliveries made."""
        delivered = 0
        with self._lock:
            for sink, directory in self._sinks:
                send = self._sender(sink)
                for path in sorted(directory.glob("*.json")):
                    entry = json.loads(path.read_text())
                    now = self._clock()
                    if entry["next_at"] > now:
                        break
                    try:
                        error = send(entry)
                    except Exception as exc:
                        error = f"{type(exc).__name__}: {exc}"
                    if not error:
                        path.unlink()
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

    def _sender(self, sink: Sink) -> Callable[[dict[str, Any]], str]:
        """``send(entry)``: "" once the sink has the entry's event, else why not."""
        if isinstance(sink, MqttSink):
            publisher = self._publishers[id(sink)]

            def publish(entry: dict[str, Any]) -> str:
                event = json.loads(entry["body"])
                topic = sink.topic_for(event["type"], event["source"], event.get("subject", ""))
                return publisher.send(topic, entry["body"].encode())

            return publish

        from standardwebhooks import Webhook

        signer = Webhook(sink.secret)

        def post(entry: dict[str, Any]) -> str:
            signed_at = int(time.time())  # receivers reject stale timestamps
            stamp = dt.datetime.fromtimestamp(signed_at, tz=dt.UTC)
            headers = {
                "content-type": "application/cloudevents+json",
                "webhook-id": entry["id"],
                "webhook-timestamp": str(signed_at),
                "webhook-signature": signer.sign(entry["id"], stamp, entry["body"]),
            }
            status = self._post(sink.url, entry["body"].encode(), headers)
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
