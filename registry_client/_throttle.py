"""An optional bandwidth cap shared by every file of one pull."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

__all__ = ["Throttle"]


class Throttle:
    """Sleeps just enough that the bytes passed so far never run ahead of ``rate`` per second.

    The budget is measured from the first byte, so a burst after a stall cannot exceed
    the average; ``rate=None`` makes it a no-op.
    """

    def __init__(
        self,
        rate: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate is not None and rate <= 0:
            raise ValueError("bandwidth cap must be positive")
        self.rate = rate
        self._clock = clock
        self._sleep = sleep
        self._start: float | None = None
        self._bytes = 0

    async def consume(self, count: int) -> None:
        if self.rate is None:
            return
        now = self._clock()
        if self._start is None:
            self._start = now
        self._bytes += count
        ahead = self._bytes / self.rate - (now - self._start)
        if ahead > 0:
            await self._sleep(ahead)
