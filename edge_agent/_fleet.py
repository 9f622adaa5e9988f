"""Fleet-side tools: publish a desired document, and read every device's reported state."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from edge_agent._document import parse_document
from edge_agent._link import broker_address, make_client
from edge_agent._topics import Topics

__all__ = ["DeviceView", "collect_status", "publish_desired", "render_table"]


def publish_desired(broker: str, devices: list[str], document: bytes, *, prefix: str = "sluice/devices", timeout: float = 10.0) -> int:  # fmt: skip
    """Publish ``document`` (validated first) retained with QoS 1 to each device; returns
    its version once every PUBACK arrived."""
    doc = parse_document(document)
    payload = json.dumps(doc.to_json(), separators=(",", ":")).encode()
    client = make_client(broker, f"sluice-fleet-{time.monotonic_ns()}", clean=True)
    host, port = broker_address(broker)
    client.connect(host, port, keepalive=30)
    client.loop_start()
    try:
        infos = [client.publish(Topics(d, prefix).desired, payload, qos=1, retain=True) for d in devices]  # fmt: skip
        for info in infos:
            info.wait_for_publish(timeout=timeout)
            if not info.is_published():
                raise TimeoutError(f"no PUBACK from {broker} within {timeout:g}s")
    finally:
        client.disconnect()
        client.loop_stop()
    return doc.version


@dataclass(slots=True)
class DeviceView:
    device: str
    status: str = "unknown"
    reported: dict[str, Any] = field(default_factory=dict)
    desired: dict[str, Any] = field(default_factory=dict)


def collect_status(broker: str, *, device: str | None = None, prefix: str = "sluice/devices", settle_secs: float = 0.5, timeout: float = 5.0) -> dict[str, DeviceView]:  # fmt: skip
    """Read the retained status, reported and desired topics; stop once nothing new came
    for ``settle_secs`` after the subscription was acknowledged."""
    views: dict[str, DeviceView] = {}
    last = [time.monotonic()]
    subscribed = threading.Event()
    client = make_client(broker, f"sluice-fleet-{time.monotonic_ns()}", clean=True)

    def on_message(client: Any, userdata: Any, message: Any) -> None:
        where = Topics.device_of(message.topic, prefix)
        if where is None:
            return
        dev, leaf = where
        view = views.setdefault(dev, DeviceView(dev))
        try:
            if leaf == "status":
                view.status = message.payload.decode()
            elif leaf == "reported":
                view.reported = json.loads(message.payload)
            elif leaf == "desired":
                view.desired = json.loads(message.payload)
        except ValueError:
            pass
        last[0] = time.monotonic()

    def on_subscribe(*args: Any) -> None:
        last[0] = time.monotonic()
        subscribed.set()

    client.on_message = on_message
    client.on_subscribe = on_subscribe
    host, port = broker_address(broker)
    client.connect(host, port, keepalive=30)
    target = device or "+"
    client.subscribe([(f"{prefix}/{target}/{leaf}", 1) for leaf in ("status", "reported", "desired")])  # fmt: skip
    client.loop_start()
    try:
        deadline = time.monotonic() + timeout
        subscribed.wait(timeout)
        while time.monotonic() < deadline and time.monotonic() - last[0] < settle_secs:
            time.sleep(0.05)
    finally:
        client.disconnect()
        client.loop_stop()
    return views


def render_table(views: dict[str, DeviceView]) -> str:
    header = ("DEVICE", "STATUS", "MODEL", "APPLIED", "STATE", "DESIRED", "LAST ERROR")
    rows: list[tuple[str, ...]] = []
    for name in sorted(views):
        v = views[name]
        desired_models = v.desired.get("models", {})
        models = v.reported.get("models", {})
        names = sorted(set(models) | set(desired_models)) or ["-"]
        for model in names:
            m = models.get(model, {})
            want = desired_models.get(model, {}).get("ref", m.get("desired_ref", "-"))
            error = m.get("error") or v.reported.get("desired_error") or ""
            rows.append((
                name, v.status, model, str(m.get("applied") if m.get("applied") is not None else "-"),
                m.get("state", "-"), f"{want} (doc {v.desired.get('version', '-')})", error,
            ))  # fmt: skip
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows])  # fmt: skip
