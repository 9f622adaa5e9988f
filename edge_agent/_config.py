"""The agent's TOML configuration: one table of keys, each with its type, default and help.

The same table validates a file, fills in defaults and renders the reference in
docs/edge.md, so a key is declared once. A bad file is refused with the key and why.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from edge_agent._topics import DEVICE_ID

__all__ = ["AgentConfig", "ConfigError", "Key", "config_keys", "load_config"]

_REQUIRED = object()


class ConfigError(ValueError):
    """A configuration the agent refuses: ``key`` names the offending key."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Key:
    name: str  # dotted: "mqtt.url"
    kind: type  # str, int, float, bool, Path
    default: Any
    help: str
    minimum: float | None = None
    choices: tuple[str, ...] = ()

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED


_KEYS: tuple[Key, ...] = (
    Key("device_id", str, _REQUIRED, "This device's id: letters, digits, '_', '.', '-'; names its MQTT topics and client id"),
    Key("state_dir", Path, _REQUIRED, "Where the agent keeps its state database, outbox and model files"),
    Key("registry", str, _REQUIRED, "Any registry URI `sluice serve --registry` takes (file://, mlflow+http://, ...)"),
    Key("heartbeat_secs", float, 60.0, "Seconds between reported-state heartbeats", minimum=1),
    Key("mqtt.url", str, None, "Broker URL, mqtt://host:1883 or mqtts://host:8883 (TLS); at least one of mqtt.url and poll.url"),
    Key("mqtt.username", str, None, "Broker user name"),
    Key("mqtt.password", str, None, "Broker password"),
    Key("mqtt.ca_file", Path, None, "CA bundle that signed the broker's certificate (mqtts://; default: the system's)"),
    Key("mqtt.cert_file", Path, None, "Client certificate for mutual TLS"),
    Key("mqtt.key_file", Path, None, "Client certificate's private key"),
    Key("mqtt.topic_prefix", str, "sluice/devices", "Topics are {topic_prefix}/{device_id}/desired|reported|status|events|collect"),
    Key("mqtt.keepalive_secs", int, 30, "MQTT keep-alive; the broker publishes the `offline` will after 1.5x this", minimum=5),
    Key("mqtt.reconnect_min_secs", float, 1.0, "First reconnect delay (doubles up to the maximum)", minimum=0.1),
    Key("mqtt.reconnect_max_secs", float, 60.0, "Longest reconnect delay", minimum=0.1),
    Key("poll.url", str, None, "HTTP(S) URL returning the desired document (If-None-Match; header Sluice-Poll-Interval sets the next interval)"),
    Key("poll.interval_secs", float, 300.0, "Seconds between polls unless the server says otherwise", minimum=1),
    Key("poll.timeout_secs", float, 30.0, "Timeout of one poll", minimum=0.1),
    Key("serve.enabled", bool, True, "Run Sluice's serving core in the agent; false only downloads and verifies (a staging device)"),
    Key("serve.host", str, "127.0.0.1", "Address the HTTP, gRPC and metrics endpoints listen on"),
    Key("serve.http_port", int, 8000, "HTTP port (0: any free port)", minimum=0),
    Key("serve.grpc_port", int, 8001, "gRPC port (0: any free port)", minimum=0),
    Key("serve.metrics_port", int, 8002, "Prometheus metrics port (0: any free port)", minimum=0),
    Key("serve.cores", int, 0, "CPU cores for ONNX Runtime (0: what the device allows)", minimum=0),
    Key("download.retry_min_secs", float, 1.0, "First delay before retrying an interrupted pull or an unreachable registry", minimum=0.01),
    Key("download.retry_max_secs", float, 300.0, "Longest such delay", minimum=0.01),
    Key("download.min_free_bytes", int, 0, "Disk that must stay free besides the download's own size", minimum=0),
    Key("outbox.max_bytes", int, 16 * 1024 * 1024, "Byte cap of the outbox's pending messages", minimum=1024),
    Key("outbox.ttl_secs", float, 7 * 86400.0, "Pending messages older than this are dropped (counted as `expired`)", minimum=1),
    Key("outbox.policy", str, "drop_oldest", "When full: drop_oldest or reject_new (counted as `full_oldest` / `full_rejected`)", choices=("drop_oldest", "reject_new")),
    Key("outbox.drain_per_sec", float, 50.0, "Messages per second drained after a reconnect", minimum=0.1),
    Key("collect.enabled", bool, False, "Collect the served models' inputs and outputs (config.pbtxt sluice.collect.*) and send the Parquet files to the fleet over MQTT; needs serve.enabled, mqtt.url and pyarrow"),
    Key("collect.sample_rate", float, 1.0, "The rate for models that set no sluice.collect.sample_rate (0: only models that set one)", minimum=0),
    Key("collect.roll_secs", float, 60.0, "Collected records roll into a Parquet file (and go out) this long after the first one", minimum=0.1),
    Key("collect.max_bytes", int, 64 * 1024 * 1024, "Byte cap of collected files waiting for the broker; past it the oldest files are dropped (counted)", minimum=1024),
    Key("collect.chunk_bytes", int, 65536, "Largest piece of a file in one MQTT message; keep it ~1 KiB under the broker's maximum packet size", minimum=1024),
    Key("collect.scan_secs", float, 2.0, "Seconds between looks for newly rolled Parquet files", minimum=0.1),
    Key("health.golden_atol", float, 1e-4, "Absolute tolerance of golden outputs", minimum=0),
    Key("health.golden_rtol", float, 1e-3, "Relative tolerance of golden outputs", minimum=0),
    Key("health.window_requests", int, 100, "The canary ends after this many live requests...", minimum=1),
    Key("health.window_secs", float, 60.0, "...or after this many seconds, whichever comes first", minimum=0.1),
    Key("health.min_requests", int, 10, "Live requests needed before the error rate or p99 can trip the gate", minimum=1),
    Key("health.max_error_rate", float, 0.05, "Largest tolerated share of failed live requests in the window", minimum=0),
    Key("health.max_p99_ms", float, 1000.0, "Largest tolerated p99 latency of the live requests in the window", minimum=0),
)  # fmt: skip


def config_keys() -> tuple[Key, ...]:
    return _KEYS


@dataclass(frozen=True, slots=True)
class AgentConfig:
    values: dict[str, Any]
    source: Path | None = None

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    @property
    def device_id(self) -> str:
        return str(self.values["device_id"])

    @property
    def state_dir(self) -> Path:
        return Path(self.values["state_dir"])


def _flatten(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in doc.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, name + "."))
        else:
            out[name] = v
    return out


def _coerce(key: Key, value: Any, base: Path | None) -> Any:
    if key.kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(key.name, f"must be true or false, not {value!r}")
        return value
    if key.kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key.name, f"must be an integer, not {value!r}")
    elif key.kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(key.name, f"must be a number, not {value!r}")
        value = float(value)
    elif key.kind in (str, Path):
        if not isinstance(value, str) or not value:
            raise ConfigError(key.name, f"must be a non-empty string, not {value!r}")
        if key.kind is Path:
            path = Path(value).expanduser()
            return path if path.is_absolute() or base is None else base / path
    if key.minimum is not None and value < key.minimum:
        raise ConfigError(key.name, f"must be at least {key.minimum:g}, not {value!r}")
    if key.choices and value not in key.choices:
        raise ConfigError(key.name, f"must be one of {', '.join(key.choices)}, not {value!r}")
    return value


def _check_url(key: str, url: str | None, schemes: tuple[str, ...]) -> None:
    if url is None:
        return
    parts = urlsplit(url)
    if parts.scheme not in schemes or not parts.hostname:
        raise ConfigError(key, f"must be a {' or '.join(s + '://' for s in schemes)} URL with a host, not {url!r}")  # fmt: skip


def validate(raw: dict[str, Any], base: Path | None = None) -> AgentConfig:
    flat = _flatten(raw)
    table = {k.name: k for k in _KEYS}
    for name in flat:
        if name not in table:
            raise ConfigError(name, "unknown key")
    values: dict[str, Any] = {}
    for key in _KEYS:
        if key.name in flat:
            values[key.name] = _coerce(key, flat[key.name], base)
        elif key.required:
            raise ConfigError(key.name, "is required")
        else:
            values[key.name] = key.default
    if not DEVICE_ID.match(values["device_id"]):
        raise ConfigError("device_id", "letters, digits, '_', '.', '-' only (at most 128), starting with a letter or digit")  # fmt: skip
    _check_url("mqtt.url", values["mqtt.url"], ("mqtt", "mqtts"))
    _check_url("poll.url", values["poll.url"], ("http", "https"))
    if values["mqtt.url"] is None and values["poll.url"] is None:
        raise ConfigError("mqtt.url", "set mqtt.url or poll.url (or both): the agent needs a source of desired state")  # fmt: skip
    if (values["mqtt.cert_file"] is None) != (values["mqtt.key_file"] is None):
        raise ConfigError("mqtt.key_file", "mqtt.cert_file and mqtt.key_file go together")
    for name in ("mqtt.ca_file", "mqtt.cert_file", "mqtt.key_file"):
        if values[name] is not None and not Path(values[name]).is_file():
            raise ConfigError(name, f"no such file: {values[name]}")
    if values["mqtt.reconnect_max_secs"] < values["mqtt.reconnect_min_secs"]:
        raise ConfigError("mqtt.reconnect_max_secs", "must not be below mqtt.reconnect_min_secs")
    if values["download.retry_max_secs"] < values["download.retry_min_secs"]:
        raise ConfigError("download.retry_max_secs", "must not be below download.retry_min_secs")
    if values["collect.enabled"] and not (values["serve.enabled"] and values["mqtt.url"]):
        raise ConfigError("collect.enabled", "needs serve.enabled = true and mqtt.url: records are collected by the serving core and sent over MQTT")  # fmt: skip
    if values["collect.sample_rate"] > 1:
        raise ConfigError("collect.sample_rate", f"must be in 0..1, not {values['collect.sample_rate']!r}")  # fmt: skip
    prefix = values["mqtt.topic_prefix"]
    if any(c in prefix for c in "+#") or prefix.startswith("/") or prefix.endswith("/"):
        raise ConfigError("mqtt.topic_prefix", "no '+', '#', nor a leading or trailing '/'")
    for name in ("serve.http_port", "serve.grpc_port", "serve.metrics_port"):
        if values[name] > 65535:
            raise ConfigError(name, f"{values[name]} is not a port number")
    return AgentConfig(values)


def load_config(path: Path | str) -> AgentConfig:
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError("(file)", f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("(file)", f"{path} is not valid TOML: {exc}") from None
    config = validate(raw, base=path.parent.resolve())
    return AgentConfig(config.values, path)
