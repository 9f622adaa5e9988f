"""The device's MQTT connection: persistent session, QoS 1, last will, reconnect with backoff.

paho-mqtt runs its network loop in a thread; everything it reports is handed to the
asyncio loop. On every (re)connect the link subscribes to ``desired`` first: the
broker then delivers the retained document, which is the full fetch of the reconnect
rule. A publish counts as delivered only on PUBACK (``on_acked``).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from edge_agent._config import AgentConfig
from edge_agent._topics import Topics

__all__ = ["MqttLink", "make_client"]

log = logging.getLogger("sluice.edge.mqtt")


def make_client(url: str, client_id: str, *, clean: bool, config: AgentConfig | None = None) -> Any:  # fmt: skip
    """A paho client for ``url`` (mqtt:// or mqtts://), not yet connected."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=clean,
        protocol=mqtt.MQTTv311,
    )
    parts = urlsplit(url)
    if parts.username or (config and config["mqtt.username"]):
        user = config["mqtt.username"] if config and config["mqtt.username"] else parts.username
        password = config["mqtt.password"] if config and config["mqtt.password"] else parts.password
        client.username_pw_set(user, password)
    if parts.scheme == "mqtts":
        ca = str(config["mqtt.ca_file"]) if config and config["mqtt.ca_file"] else None
        cert = str(config["mqtt.cert_file"]) if config and config["mqtt.cert_file"] else None
        key = str(config["mqtt.key_file"]) if config and config["mqtt.key_file"] else None
        client.tls_set(ca_certs=ca, certfile=cert, keyfile=key, tls_version=ssl.PROTOCOL_TLS_CLIENT)
    return client


def broker_address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    default = 8883 if parts.scheme == "mqtts" else 1883
    return parts.hostname or "localhost", parts.port or default


class MqttLink:
    def __init__(
        self,
        config: AgentConfig,
        topics: Topics,
        *,
        on_desired: Callable[[bytes], None],
        on_connected: Callable[[bool], None],
        on_acked: Callable[[int], None],
    ) -> None:
        self._config = config
        self._topics = topics
        self._on_desired = on_desired
        self._on_connected = on_connected
        self._on_acked = on_acked
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: Any = None
        self.connected = False
        self.last_error = ""  # why the last connection attempt failed ("" once connected)

    def start(self) -> None:
        """Connect in the background; returns at once (the network may be down)."""
        self._loop = asyncio.get_running_loop()
        url = self._config["mqtt.url"]
        client = make_client(url, f"sluice-edge-{self._topics.device_id}", clean=False, config=self._config)  # fmt: skip
        client.will_set(self._topics.status, b"offline", qos=1, retain=True)
        client.reconnect_delay_set(
            min_delay=max(1, round(self._config["mqtt.reconnect_min_secs"])),
            max_delay=max(1, round(self._config["mqtt.reconnect_max_secs"])),
        )
        client.max_inflight_messages_set(20)
        client.on_connect = self._connected
        client.on_connect_fail = self._connect_failed
        client.on_disconnect = self._disconnected
        client.on_message = self._message
        client.on_publish = self._published
        host, port = broker_address(url)
        client.connect_async(host, port, keepalive=self._config["mqtt.keepalive_secs"])
        client.loop_start()
        self._client = client

    def stop(self) -> None:
        """Mark the device offline on purpose and close the connection."""
        client = self._client
        if client is None:
            return
        if self.connected:
            info = client.publish(self._topics.status, b"offline", qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=2.0)
            except (RuntimeError, ValueError):
                pass
        client.disconnect()
        client.loop_stop()
        self._client = None

    def publish(self, topic: str, payload: bytes, *, retain: bool) -> int | None:
        """QoS 1; returns the message id whose PUBACK ``on_acked`` will report, or None."""
        if self._client is None or not self.connected:
            return None
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        return int(info.mid) if info.rc == 0 else None

    # -- paho's thread ----------------------------------------------------------

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(fn, *args)

    def _connected(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:  # fmt: skip
        if reason_code.is_failure:
            self._failed(f"the broker refused the connection: {reason_code}")
            return
        self.last_error = ""
        client.subscribe(self._topics.desired, qos=1)  # subscribe first: retained doc follows
        client.publish(self._topics.status, b"online", qos=1, retain=True)
        self.connected = True
        log.info("connected to the broker (session present: %s)", flags.session_present)
        self._call(self._on_connected, True)

    def _connect_failed(self, client: Any, userdata: Any) -> None:
        # paho calls this inside its ``except OSError``: the exception says why (a TLS
        # certificate that does not verify, a refused or unreachable address).
        exc = sys.exc_info()[1]
        self._failed(f"cannot connect to {self._config['mqtt.url']}: {exc or 'connection failed'}")

    def _failed(self, reason: str) -> None:
        if reason != self.last_error:  # once per distinct reason, not on every retry
            log.warning("%s", reason)
        self.last_error = reason

    def _disconnected(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:  # fmt: skip
        if self.connected:
            log.warning("lost the broker: %s", reason_code)
        self.connected = False
        self._call(self._on_connected, False)

    def _message(self, client: Any, userdata: Any, message: Any) -> None:
        if message.topic == self._topics.desired:
            self._call(self._on_desired, bytes(message.payload))

    def _published(self, client: Any, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:  # fmt: skip
        self._call(self._on_acked, mid)
