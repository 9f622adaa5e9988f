"""The MQTT topics of one device, all under ``sluice/devices/{device_id}/``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

__all__ = ["DEVICE_ID", "Topics"]

DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True, slots=True)
class Topics:
    device_id: str
    prefix: str = "sluice/devices"

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.device_id}"

    @property
    def desired(self) -> str:
        """Retained JSON from the fleet side."""
        return f"{self.base}/desired"

    @property
    def reported(self) -> str:
        """Retained JSON from the device."""
        return f"{self.base}/reported"

    @property
    def status(self) -> str:
        """Retained ``online`` / ``offline``; ``offline`` is the connection's last will."""
        return f"{self.base}/status"

    @property
    def events(self) -> str:
        """QoS 1 events drained from the outbox."""
        return f"{self.base}/events"

    def collect(self, model: str, version: str) -> str:
        """QoS 1 chunks of collected Parquet files of one model version (percent-encoded:
        a model name may hold MQTT's wildcards)."""
        return f"{self.base}/collect/{quote(model, safe='')}/{quote(version, safe='')}"

    @staticmethod
    def collect_filter(prefix: str = "sluice/devices", device: str | None = None) -> str:
        """What a receiver subscribes to: every device's (or one device's) collected files."""
        return f"{prefix}/{device or '+'}/collect/#"

    @staticmethod
    def device_of(topic: str, prefix: str = "sluice/devices") -> tuple[str, str] | None:
        """``(device_id, leaf)`` of a topic under ``prefix``, or None."""
        head = prefix + "/"
        if not topic.startswith(head):
            return None
        parts = topic[len(head) :].split("/")
        if len(parts) != 2:
            return None
        return parts[0], parts[1]
