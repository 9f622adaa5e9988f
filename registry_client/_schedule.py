"""When a poller polls next, with jitter, so a fleet started together does not poll in step.

Pods that start together (a rollout, one autoscaler step) would otherwise resolve a
reference at the same moment every interval, and all pull a moved alias at once. Each
poller therefore waits a random fraction of one interval before its first poll, then
``interval x uniform(1 - jitter, 1 + jitter)`` between polls (20%: a fleet's polls
spread over 40% of the interval, and a change is seen within 1.2 intervals). After
failures it backs off: from ``min(1, interval)`` seconds doubling up to ``max_backoff``,
each wait drawn from the upper half of that ceiling.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

__all__ = ["POLL_JITTER", "PollSchedule"]

POLL_JITTER = 0.2  # each interval is drawn from [0.8, 1.2] x the interval

Sleep = Callable[[float], Awaitable[None]]


@dataclass(slots=True)
class PollSchedule:
    """The waits of one poller. ``rng`` and ``sleep`` are injectable (tests seed the one
    and record the other); each poller gets its own ``random.Random`` by default."""

    interval: float
    jitter: float = POLL_JITTER
    max_backoff: float = 60.0
    rng: random.Random = field(default_factory=random.Random)
    sleep: Sleep = asyncio.sleep

    def __post_init__(self) -> None:
        if not self.interval > 0:
            raise ValueError(f"poll interval must be above 0 seconds, not {self.interval!r}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"poll jitter must be in [0, 1), not {self.jitter!r}")

    def first(self) -> float:
        """The wait before the first poll: anywhere in one interval."""
        return self.rng.uniform(0.0, self.interval)

    def delay(self, failures: int = 0) -> float:
        """The wait before the next poll, after ``failures`` failed polls in a row."""
        if failures <= 0:
            return self.interval * self.rng.uniform(1.0 - self.jitter, 1.0 + self.jitter)
        ceiling = min(self.max_backoff, min(1.0, self.interval) * 2 ** (failures - 1))
        return self.rng.uniform(ceiling / 2, ceiling)

    async def wait(self, seconds: float) -> None:
        await self.sleep(seconds)
