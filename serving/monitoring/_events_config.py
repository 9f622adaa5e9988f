"""The events file (``--events FILE``): which sinks Sluice's CloudEvents go to.

One TOML file, validated once when it is read; a bad file is refused with the sink
(``webhook #2``, ``mqtt #1``) and the field at fault. docs/monitoring.md, section 5,
is the reference. ``max_outbox_bytes`` and ``max_event_age`` bound each sink's outbox,
so a receiver that is down for weeks cannot fill the disk.
"""

from __future__ import annotations

import fnmatch
import re
import string
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "EVENT_TYPES",
    "MQTT_TOPIC_FIELDS",
    "EventsConfig",
    "EventsConfigError",
    "MqttSink",
    "WebhookSink",
]

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
MQTT_TOPIC_FIELDS = ("type", "source", "subject")  # the placeholders of an [[mqtt]] topic
MQTT_DEFAULT_TOPIC = "sluice/events/{type}"
_TOP_KEYS = ("max_event_age", "max_outbox_bytes", "mqtt", "outbox", "webhook")
_WEBHOOK_KEYS = ("secret", "types", "url")
DEFAULT_MAX_OUTBOX_BYTES = 256 * 1024**2  # per sink
DEFAULT_MAX_EVENT_AGE_SECS = 7 * 86400.0
_BYTE_UNITS = {"": 1, "b": 1, "kib": 1024, "mib": 1024**2, "gib": 1024**3,
               "kb": 1000, "mb": 1000**2, "gb": 1000**3}  # fmt: skip
_AGE_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_MQTT_KEYS = (
    "host", "port", "topic", "qos", "client_id", "username", "password", "password_file",
    "tls", "ca_file", "cert_file", "key_file", "types", "retain", "protocol",
)  # fmt: skip
_MQTT_PROTOCOLS = ("5", "3.1.1")


class EventsConfigError(ValueError):
    """An events file that cannot be used, with the reason."""


def _matches(types: tuple[str, ...], event_type: str) -> bool:
    return not types or any(fnmatch.fnmatchcase(event_type, p) for p in types)


@dataclass(frozen=True, slots=True)
class WebhookSink:
    url: str
    secret: str = field(repr=False)
    types: tuple[str, ...] = ()  # fnmatch patterns; empty: every type

    @property
    def name(self) -> str:
        return f"webhook {self.url}"

    def wants(self, event_type: str) -> bool:
        return _matches(self.types, event_type)


@dataclass(frozen=True, slots=True)
class MqttSink:
    """One broker and topic template; events go as structured CloudEvents."""

    host: str
    port: int = 1883
    topic: str = MQTT_DEFAULT_TOPIC
    qos: int = 1
    client_id: str = ""  # "": the client library or broker picks one per connection
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    ca_file: Path | None = None  # None with tls: the system's CA bundle
    cert_file: Path | None = None
    key_file: Path | None = None
    types: tuple[str, ...] = ()
    retain: bool = False
    protocol: str = "5"  # "5" or "3.1.1"

    @property
    def name(self) -> str:
        return f"mqtt {self.host}:{self.port}"

    def wants(self, event_type: str) -> bool:
        return _matches(self.types, event_type)

    def topic_for(self, event_type: str, source: str, subject: str) -> str:
        """The topic template filled in; a wildcard or NUL in a value becomes ``_``, since
        a broker refuses a publish whose topic holds one."""
        values = {"type": event_type, "source": source, "subject": subject}
        clean = {k: v.translate(_NOT_IN_TOPICS) for k, v in values.items()}
        return self.topic.format_map(clean)


_NOT_IN_TOPICS = str.maketrans({"+": "_", "#": "_", "\0": "_"})


@dataclass(frozen=True, slots=True)
class EventsConfig:
    webhooks: tuple[WebhookSink, ...]
    outbox: Path
    mqtt: tuple[MqttSink, ...] = ()
    # Each sink's outbox, at most: past either, its oldest entries are dropped and counted.
    max_outbox_bytes: int = DEFAULT_MAX_OUTBOX_BYTES
    max_event_age_secs: float = DEFAULT_MAX_EVENT_AGE_SECS

    @classmethod
    def load(cls, path: Path) -> EventsConfig:
        try:
            data = tomllib.loads(path.read_text())
        except OSError as exc:
            raise EventsConfigError(f"events file {str(path)!r}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise EventsConfigError(f"events file {str(path)!r}: {exc}") from None
        where = f"events file {str(path)!r}"
        unknown = sorted(set(data) - set(_TOP_KEYS))
        if unknown:
            raise EventsConfigError(
                f"{where}: unknown key {unknown[0]!r} (known: {', '.join(_TOP_KEYS)})"
            )
        hooks = [
            _webhook(f"{where}: webhook #{i + 1}", entry)
            for i, entry in enumerate(_tables(where, data, "webhook"))
        ]
        base = path.parent.resolve()
        brokers = [
            _mqtt(f"{where}: mqtt #{i + 1}", entry, base)
            for i, entry in enumerate(_tables(where, data, "mqtt"))
        ]
        outbox = Path(data.get("outbox") or path.with_name(path.name + ".outbox"))
        max_bytes = _byte_size(where, data.get("max_outbox_bytes", DEFAULT_MAX_OUTBOX_BYTES))
        max_age = _age(where, data.get("max_event_age", DEFAULT_MAX_EVENT_AGE_SECS))
        return cls(tuple(hooks), outbox, tuple(brokers), max_bytes, max_age)


def _byte_size(where: str, value: Any) -> int:
    """``max_outbox_bytes``: a positive integer of bytes, or ``"256MiB"``, ``"1GB"``..."""
    size = None
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str):
        found = re.fullmatch(r"\s*(\d+)\s*([a-z]*)\s*", value.lower())
        if found and found[2] in _BYTE_UNITS:
            size = int(found[1]) * _BYTE_UNITS[found[2]]
    if size is None or size <= 0:
        raise EventsConfigError(
            f"{where}: max_outbox_bytes must be a positive number of bytes "
            f'(an integer, or a string such as "256MiB" or "1GB"), not {value!r}'
        )
    return size


def _age(where: str, value: Any) -> float:
    """``max_event_age``: ``"7d"``, ``"12h"``, ``"30m"``, ``"90s"`` or seconds."""
    secs = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        secs = float(value)
    elif isinstance(value, str):
        found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", value.lower())
        if found:
            secs = float(found[1]) * _AGE_UNITS[found[2]]
    if secs is None or not secs > 0:
        raise EventsConfigError(
            f"{where}: max_event_age must be a positive duration "
            f'("7d", "12h", "30m", "90s" or seconds), not {value!r}'
        )
    return secs


def _tables(where: str, data: dict[str, Any], key: str) -> list[dict[str, Any]]:
    tables = data.get(key, [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise EventsConfigError(f"{where}: {key} must be [[{key}]] tables")
    return tables


def _types(where: str, entry: dict[str, Any]) -> tuple[str, ...]:
    types = entry.get("types", [])
    if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
        raise EventsConfigError(f"{where}: types must be a list of strings")
    for pattern in types:
        if not any(fnmatch.fnmatchcase(t, pattern) for t in EVENT_TYPES):
            raise EventsConfigError(
                f"{where}: type filter {pattern!r} matches no Sluice event type"
            )
    return tuple(types)


def _webhook(where: str, entry: dict[str, Any]) -> WebhookSink:
    unknown = sorted(set(entry) - set(_WEBHOOK_KEYS))
    if unknown:
        raise EventsConfigError(
            f"{where}: unknown key {unknown[0]!r} (known: {', '.join(_WEBHOOK_KEYS)})"
        )
    url, secret = entry.get("url"), entry.get("secret")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise EventsConfigError(f"{where}: url must be an http(s) URL, not {url!r}")
    if not isinstance(secret, str) or not secret:
        raise EventsConfigError(f"{where}: secret (a Standard Webhooks whsec_ key) is missing")
    _check_secret(where, secret)
    return WebhookSink(url, secret, _types(where, entry))


def _check_secret(where: str, secret: str) -> None:
    from standardwebhooks import Webhook

    try:
        Webhook(secret)
    except Exception as exc:
        raise EventsConfigError(f"{where}: secret is not a Standard Webhooks key: {exc}") from None


def _mqtt(where: str, entry: dict[str, Any], base: Path) -> MqttSink:
    unknown = sorted(set(entry) - set(_MQTT_KEYS))
    if unknown:
        raise EventsConfigError(
            f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(_MQTT_KEYS))})"
        )

    def text(key: str, default: str | None = None) -> str | None:
        value = entry.get(key, default)
        if value is not None and (not isinstance(value, str) or not value):
            raise EventsConfigError(f"{where}: {key} must be a non-empty string, not {value!r}")
        return value

    def flag(key: str) -> bool:
        value = entry.get(key, False)
        if not isinstance(value, bool):
            raise EventsConfigError(f"{where}: {key} must be true or false, not {value!r}")
        return value

    def file(key: str) -> Path | None:
        name = text(key)
        if name is None:
            return None
        found = Path(name).expanduser()
        found = found if found.is_absolute() else base / found
        if not found.is_file():
            raise EventsConfigError(f"{where}: {key}: no such file: {found}")
        return found

    host = text("host")
    if host is None:
        raise EventsConfigError(f"{where}: host (the broker's name or address) is missing")
    tls = flag("tls")
    port = entry.get("port", 8883 if tls else 1883)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise EventsConfigError(f"{where}: port must be an integer 1-65535, not {port!r}")
    qos = entry.get("qos", 1)
    if isinstance(qos, bool) or qos not in (0, 1, 2):
        raise EventsConfigError(f"{where}: qos must be 0, 1 or 2, not {qos!r}")
    protocol = entry.get("protocol", "5")
    if protocol not in _MQTT_PROTOCOLS:
        raise EventsConfigError(f'{where}: protocol must be "5" or "3.1.1", not {protocol!r}')
    topic = text("topic", MQTT_DEFAULT_TOPIC)
    assert topic is not None
    _check_topic(where, topic)
    username, password = text("username"), text("password")
    password_file = file("password_file")
    if password is not None and password_file is not None:
        raise EventsConfigError(f"{where}: password and password_file: give one, not both")
    if password_file is not None:
        password = password_file.read_text().rstrip("\r\n")
    if password is not None and username is None:
        raise EventsConfigError(f"{where}: a password needs a username")
    ca_file, cert_file, key_file = file("ca_file"), file("cert_file"), file("key_file")
    if not tls and (ca_file or cert_file or key_file):
        raise EventsConfigError(f"{where}: ca_file, cert_file and key_file need tls = true")
    if (cert_file is None) != (key_file is None):
        raise EventsConfigError(f"{where}: cert_file and key_file go together")
    return MqttSink(
        host=host, port=port, topic=topic, qos=qos, client_id=text("client_id") or "",
        username=username, password=password, tls=tls, ca_file=ca_file, cert_file=cert_file,
        key_file=key_file, types=_types(where, entry), retain=flag("retain"), protocol=protocol,
    )  # fmt: skip


def _check_topic(where: str, topic: str) -> None:
    try:
        parts = list(string.Formatter().parse(topic))
    except ValueError as exc:
        raise EventsConfigError(f"{where}: topic {topic!r}: {exc}") from None
    for literal, name, spec, conversion in parts:
        if any(c in literal for c in "+#\0"):
            raise EventsConfigError(
                f"{where}: topic {topic!r}: '+' and '#' are subscription wildcards, "
                "not allowed in a topic Sluice publishes to"
            )
        if name is not None and (spec or conversion):
            raise EventsConfigError(
                f"{where}: topic {topic!r}: a placeholder takes no format spec or conversion"
            )
        if name is not None and name not in MQTT_TOPIC_FIELDS:
            raise EventsConfigError(
                f"{where}: topic {topic!r}: unknown placeholder {{{name}}} "
                f"(known: {', '.join('{' + f + '}' for f in MQTT_TOPIC_FIELDS)})"
            )
    if topic.startswith("$"):
        raise EventsConfigError(f"{where}: topic {topic!r}: topics starting with '$' are the broker's")  # fmt: skip
