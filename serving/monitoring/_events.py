"""Sluice's CloudEvents 1.0 and the sinks they go to.

Types are ``io.sluice.<subject>.<verb>`` (``EVENT_TYPES``). Sinks come from one TOML
file (``--events FILE``)::

    outbox = "/var/lib/sluice/outbox"     # optional; default <FILE>.outbox beside it
    [[webhook]]
    url = "https://ops.example/hooks/sluice"
    secret = "whsec_..."                 # Standard Webhooks secret
    types = ["io.sluice.version.*"]      # optional filter (fnmatch patterns)

``EventBus.publish`` writes one outbox file per (event, sink) before returning, so an
event survives a receiver that is down and a process that dies; the delivery thread
POSTs each as a structured CloudEvent (``application/cloudevents+json``) signed as
Standard Webhooks specifies (``webhook-id`` is the event id, so a receiver can drop
a redelivery), oldest first per sink, retrying with exponential backoff.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
import logging
import os
import threading
import time
import tomllib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["EVENT_TYPES", "EventBus", "EventsConfig", "EventsConfigError", "WebhookSink"]

log = logging.getLogger("sluice.events")

EVENT_TYPES = (
    "io.sluice.model.registered",
    "io.sluice.model.alias_moved",
    "io.sluice.version.loaded",
    "io.sluice.version.unloaded",
    "io.sluice.version.load_failed",
    "io.sluice.drift.detected",
    "io.sluice.drift.recovered",
    "io.sluice.collect.dropping",
    "io.sluice.rollout.promoted",
    "io.sluice.rollout.rolled_back",
)
BACKOFF_BASE_SECS = 1.0
BACKOFF_MAX_SECS = 300.0


class EventsConfigError(ValueError):
    """An events file that cannot be used, with the reason."""


@dataclass(frozen=True, slots=True)
class WebhookSink:
    url: str
    secret: str
    types: tuple[str, ...] = ()  # fnmatch patterns; empty: every type

    def wants(self, event_type: str) -> bool:
        return not self.types or any(fnmatch.fnmatchcase(event_type, p) for p in self.types)


@dataclass(frozen=True, slots=True)
class EventsConfig:
    webhooks: tuple[WebhookSink, ...]
    outbox: Path

    @classmethod
    def load(cls, path: Path) -> EventsConfig:
        try:
            data = tomllib.loads(path.read_text())
        except OSError as exc:
            raise EventsConfigError(f"events file {str(path)!r}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise EventsConfigError(f"events file {str(path)!r}: {exc}") from None
        unknown = sorted(set(data) - {"webhook", "outbox"})
        if unknown:
            raise EventsConfigError(
                f"events file {str(path)!r}: unknown key {unknown[0]!r} (known: outbox, webhook)"
            )
        hooks = []
        for i, entry in enumerate(data.get("webhook", [])):
            where = f"events file {str(path)!r}: webhook #{i + 1}"
            url, secret, types = entry.get("url"), entry.get("secret"), entry.get("types", [])
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise EventsConfigError(f"{where}: url must be an http(s) URL, not {url!r}")
            if not isinstance(secret, str) or not secret:
                raise EventsConfigError(
                    f"{where}: secret (a Standard Webhooks whsec_ key) is missing"
                )
            _check_secret(where, secret)
            if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
                raise EventsConfigError(f"{where}: types must be a list of strings")
            for pattern in types:
                if not any(fnmatch.fnmatchcase(t, pattern) for t in EVENT_TYPES):
                    raise EventsConfigError(
                        f"{where}: type filter {pattern!r} matches no Sluice event type"
                    )
            hooks.append(WebhookSink(url, secret, tuple(types)))
        outbox = Path(data.get("outbox") or path.with_name(path.name + ".outbox"))
        return cls(tuple(hooks), outbox)


def _check_secret(where: str, secret: str) -> None:
    from standardwebhooks import Webhook

    try:
        Webhook(secret)
    except Exception as exc:
        raise EventsConfigError(f"{where}: secret is not a Standard Webhooks key: {exc}") from None


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


class EventBus:
    """Publishes events to the configured sinks through the durable outbox."""

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
        for i in range(len(config.webhooks)):
            (config.outbox / f"sink-{i}").mkdir(parents=True, exist_ok=True)

    def publish(self, event_type: str, data: dict[str, Any], subject: str = "") -> str:
        """Put the event in the outbox of every sink that wants it; returns its id."""
        event = make_event(event_type, self.source, data, subject)
        body = structured_body(event)
        event_id = event.get_id()
        for i, sink in enumerate(self.config.webhooks):
            if not sink.wants(event_type):
                continue
            entry = {"id": event_id, "body": body.decode(), "attempts": 0, "next_at": 0.0}
            directory = self.config.outbox / f"sink-{i}"
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
        return sum(
            len(list((self.config.outbox / f"sink-{i}").glob("*.json")))
            for i in range(len(self.config.webhooks))
        )

    def deliver_due(self) -> int:
        """Try every due outbox entry once, oldest first per sink; a sink stops at its
        first failure so its receiver sees events in order. Returns deliveries made."""
        from standardwebhooks import Webhook

        delivered = 0
        with self._lock:
            for i, sink in enumerate(self.config.webhooks):
                signer = Webhook(sink.secret)
                for path in sorted((self.config.outbox / f"sink-{i}").glob("*.json")):
                    entry = json.loads(path.read_text())
                    now = self._clock()
                    if entry["next_at"] > now:
                        break
                    signed_at = int(time.time())  # receivers reject stale timestamps
                    stamp = dt.datetime.fromtimestamp(signed_at, tz=dt.UTC)
                    headers = {
                        "content-type": "application/cloudevents+json",
                        "webhook-id": entry["id"],
                        "webhook-timestamp": str(signed_at),
                        "webhook-signature": signer.sign(entry["id"], stamp, entry["body"]),
                    }
                    try:
                        status = self._post(sink.url, entry["body"].encode(), headers)
                        error = "" if 200 <= status < 300 else f"HTTP {status}"
                    except Exception as exc:
                        error = f"{type(exc).__name__}: {exc}"
                    if not error:
                        path.unlink()
                        delivered += 1
                        continue
                    entry["attempts"] += 1
                    delay = min(BACKOFF_BASE_SECS * 2 ** (entry["attempts"] - 1), BACKOFF_MAX_SECS)
                    entry["next_at"] = now + delay
                    path.write_text(json.dumps(entry))
                    log.warning(
                        "webhook %s: event %s not delivered (%s); attempt %d, next in %.0fs",
                        sink.url, entry["id"], error, entry["attempts"], delay,
                    )  # fmt: skip
                    break
        return delivered

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
