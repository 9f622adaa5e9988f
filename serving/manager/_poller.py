"""Poll mode: rescan the repository and reconcile what changed on disk.

A version's files must look the same on two scans in a row before it is loaded, so
a model still being copied in is never loaded.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from serving.manager._loader import disk_state
from serving.manager._records import ModelRecord

__all__ = ["RepositoryPoller"]

log = logging.getLogger("sluice.manager")


class RepositoryPoller:
    """Tells the manager which models changed on disk (settled) and which are gone."""

    def __init__(
        self,
        repository: Path,
        records: Mapping[str, ModelRecord],
        changed: Callable[[str], Awaitable[None]],
        gone: Callable[[str], Awaitable[None]],
        *,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.repository = repository
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._records = records
        self._changed = changed
        self._gone = gone
        self._pending: dict[str, tuple] = {}  # fingerprints seen once

    async def poll_forever(self, interval: float) -> None:
        """Scan every ``interval`` seconds +-20%, the first time after a random part of
        one interval (``registry_client.PollSchedule``), so pods do not scan in step."""
        from registry_client import PollSchedule

        schedule = PollSchedule(interval, rng=self._rng, sleep=self._sleep)
        delay = schedule.first()
        while True:
            await schedule.wait(delay)
            delay = schedule.delay()
            try:
                await self.poll_once()
            except Exception:
                log.exception("repository poll failed")

    async def poll_once(self) -> None:
        """Rescan the repository: load what is new or changed, unload what is gone."""
        from serving.repository import scan_repository

        on_disk = scan_repository(self.repository)
        for name in list(self._records):
            if name not in on_disk and self._records[name].serving:
                await self._gone(name)
        for name, directory in sorted(on_disk.items()):
            state = disk_state(directory.path, directory.versions)
            record = self._records.get(name)
            if record is not None and record.disk_state == state:
                self._pending.pop(name, None)
                continue
            if self._pending.get(name) != state:
                self._pending[name] = state  # changed since the last scan: wait until it settles
                log.info(
                    "model %r changed on disk; it reloads once two scans see the same files", name
                )
                continue
            del self._pending[name]
            await self._changed(name)
