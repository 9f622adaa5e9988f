"""HTTP polling for the desired document, where MQTT is blocked.

GET with ``If-None-Match`` (304: nothing new); the answer may set the next interval
with a ``Sluice-Poll-Interval: <seconds>`` header, as hawkBit's DDI ``sleep`` does, and
``Retry-After`` on 429/503 is honoured. Failures back off up to the configured interval.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from edge_agent._config import AgentConfig

__all__ = ["next_interval", "poll_forever"]

log = logging.getLogger("sluice.edge.poll")


def next_interval(headers: dict[str, str] | object, default: float) -> float:
    get = getattr(headers, "get", None)
    if get is None:
        return default
    for name in ("sluice-poll-interval", "retry-after"):
        value = get(name)
        if value is not None:
            try:
                return max(1.0, float(value))
            except ValueError:
                continue
    return default


async def poll_forever(config: AgentConfig, on_desired: Callable[[bytes], None]) -> None:
    import httpx

    url = config["poll.url"]
    interval = config["poll.interval_secs"]
    etag: str | None = None
    failure_delay = 1.0
    async with httpx.AsyncClient(timeout=config["poll.timeout_secs"]) as client:
        while True:
            headers = {"If-None-Match": etag} if etag else {}
            try:
                response = await client.get(url, headers=headers)
            except httpx.HTTPError as exc:
                log.warning("polling %s failed: %s", url, exc)
                await asyncio.sleep(failure_delay)
                failure_delay = min(failure_delay * 2, interval)
                continue
            failure_delay = 1.0
            if response.status_code == 200:
                etag = response.headers.get("etag")
                on_desired(response.content)
            elif response.status_code != 304:
                log.warning("polling %s: HTTP %d", url, response.status_code)
            await asyncio.sleep(next_interval(response.headers, interval))
