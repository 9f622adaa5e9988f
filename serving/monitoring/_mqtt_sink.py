"""Delivering events to an ``[[mqtt]]`` sink: one broker connection, kept between sends.

The CloudEvents MQTT protocol binding in structured content mode: the payload is the
event in the JSON event format (``application/cloudevents+json``), the same bytes a
webhook gets; over MQTT 5 the PUBLISH also carries that media type in its Content Type
property (MQTT 3.1.1 has no such property, and the binding allows only structured mode
there). A send counts only once the broker took the message: PUBACK at QoS 1, PUBCOMP
at QoS 2, written to the socket at QoS 0. Anything else is a reason the caller logs
while the entry stays in the outbox.
"""

from __future__ import annotations

import threading
from typing import Any

from serving.monitoring._events_config import MqttSink

__all__ = ["CONTENT_TYPE", "MqttPublisher"]

CONTENT_TYPE = "application/cloudevents+json"
KEEPALIVE_SECS = 60


class MqttPublisher:
    """Publishes to one sink's broker; connects when there is something to send."""

    def __init__(self, sink: MqttSink, timeout: float) -> None:
        self.sink = sink
        self.timeout = timeout
        self._client: Any = None
        self._answered = threading.Event()  # CONNACK came (or the connection closed first)
        self._refused = ""  # why the broker refused the connection, from its CONNACK
        self._lost = False
        self._acks: dict[int, Any] = {}  # message id -> reason code of its PUBACK/PUBCOMP

    def send(self, topic: str, payload: bytes, timeout: float | None = None) -> str:
        """Publishes ``payload`` and waits for the acknowledgement the QoS asks for, at
        most ``timeout`` seconds for each of connecting, CONNACK and the acknowledgement
        (default: the publisher's). Returns "" once the broker has it, else why not."""
        timeout = self.timeout if timeout is None else timeout
        if self._client is None or self._lost:
            self.close()
            error = self._connect(timeout)
            if error:
                self.close()
                return error
        import paho.mqtt.client as mqtt

        properties = None
        if self.sink.protocol == "5":
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties

            properties = Properties(PacketTypes.PUBLISH)
            properties.ContentType = CONTENT_TYPE
        qos, retain = self.sink.qos, self.sink.retain
        info = self._client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        try:
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                raise RuntimeError(f"publish failed: {mqtt.error_string(info.rc)}")
            info.wait_for_publish(timeout)
            if not info.is_published():
                ack = ("", "PUBACK", "PUBCOMP")[qos]
                raise RuntimeError(f"the broker sent no {ack} within {timeout:g}s")
        except (RuntimeError, ValueError) as exc:
            self.close()  # the next send starts on a fresh connection
            return str(exc)
        reason = self._acks.pop(info.mid, None)
        if reason is not None and reason.is_failure:
            return f"the broker refused the message: {reason}"
        return ""

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()
        self._acks.clear()

    def _connect(self, timeout: float) -> str:
        import paho.mqtt.client as mqtt

        sink = self.sink
        v5 = sink.protocol == "5"
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=sink.client_id,
            clean_session=None if v5 else True,  # the outbox, not the broker, keeps state
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        )
        client.connect_timeout = timeout
        if sink.username is not None:
            client.username_pw_set(sink.username, sink.password)
        if sink.tls:
            client.tls_set(
                ca_certs=None if sink.ca_file is None else str(sink.ca_file),
                certfile=None if sink.cert_file is None else str(sink.cert_file),
                keyfile=None if sink.key_file is None else str(sink.key_file),
            )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        self._answered.clear()
        self._refused = ""
        self._lost = False
        self._client = client
        try:
            client.connect(sink.host, sink.port, keepalive=KEEPALIVE_SECS)
        except OSError as exc:  # refused, unreachable, a certificate that does not verify
            return f"cannot connect to {sink.host}:{sink.port}: {exc}"
        client.loop_start()
        if not self._answered.wait(timeout):
            return f"{sink.host}:{sink.port} sent no CONNACK within {timeout:g}s"
        if self._refused:
            return f"the broker refused the connection: {self._refused}"
        if self._lost:
            return f"{sink.host}:{sink.port} closed the connection before its CONNACK"
        return ""

    # -- paho's network thread ------------------------------------------------------

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:  # fmt: skip
        if reason_code.is_failure:
            self._refused = str(reason_code)
        self._answered.set()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:  # fmt: skip
        self._lost = True
        self._answered.set()

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:  # fmt: skip
        self._acks[mid] = reason_code
