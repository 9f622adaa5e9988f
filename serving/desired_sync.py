"""Desired-state changes under ``--workers N``: every worker converges.

Each worker has its own models, so a load or unload through the repository API must
reach all of them, whichever worker's connection it arrived on. The worker that gets
the call applies it at once (the API answers when that worker has loaded) and sends
the target to the supervisor. The supervisor is the one sequencer: it stamps each
target with the next number of one sequence, keeps the latest target per model, and
sends it to every worker, the sender included. A worker applies a relayed target when
its number is above the last it applied for that model; it skips its own echo when it
has sent nothing newer for that model since, so the sender does not load twice. Two
workers taking calls for one model at once both end on the one the supervisor
numbered last. A worker that starts (or restarts) gets every kept target first.

Messages on the worker pipes: worker -> supervisor ``("desired", nonce, target)``;
supervisor -> worker ``("desired", sequence, origin, nonce, target)`` (targets as
``ModelTarget.to_json``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from serving.desired_state import ModelTarget
from serving.errors import SluiceError

if TYPE_CHECKING:
    from serving.manager import ModelManager

__all__ = ["DesiredRelay", "WorkerDesiredState"]

log = logging.getLogger("sluice")

Send = Callable[[tuple[Any, ...]], None]


class DesiredRelay:
    """The supervisor's side: number, keep and fan out the targets workers send."""

    def __init__(self) -> None:
        self._sequence = 0
        self._kept: dict[str, tuple[Any, ...]] = {}  # model -> the last message relayed

    def received(self, origin: int, nonce: int, target: dict[str, Any]) -> tuple[Any, ...]:
        """The message to send every worker for ``target``, from worker ``origin``."""
        self._sequence += 1
        message = ("desired", self._sequence, origin, nonce, target)
        self._kept[str(target.get("name", ""))] = message
        return message

    def backlog(self) -> list[tuple[Any, ...]]:
        """What a starting worker must apply first, in sequence order."""
        return sorted(self._kept.values(), key=lambda m: m[1])


class WorkerDesiredState:
    """A worker's side: send API targets up, apply relayed ones."""

    def __init__(self, manager: ModelManager, index: int, send: Send) -> None:
        self.manager = manager
        self.index = index
        self._send = send
        self._nonce = 0
        self._sent: dict[str, int] = {}  # model -> the nonce of the last target sent
        self._applied: dict[str, int] = {}  # model -> the last relayed sequence applied
        self._tasks: set[asyncio.Task[None]] = set()
        self._order: dict[str, asyncio.Lock] = {}
        manager.api_listeners.append(self._from_api)

    def _from_api(self, target: ModelTarget) -> None:
        self._nonce += 1
        self._sent[target.name] = self._nonce
        self._send(("desired", self._nonce, target.to_json()))

    def relayed(self, sequence: int, origin: int, nonce: int, data: dict[str, Any]) -> None:
        """A target the supervisor numbered ``sequence``; applied in the background."""
        try:
            target = ModelTarget.from_json(data)
        except ValueError as exc:
            log.error("ignoring a desired-state message: %s", exc)
            return
        name = target.name
        if sequence <= self._applied.get(name, 0):
            return  # a duplicate or a late delivery
        self._applied[name] = sequence
        if origin == self.index and self._sent.get(name) == nonce:
            return  # our own change, already applied, and nothing applied over it since
        self._sent.pop(name, None)  # our next echo for this model must apply again
        if not self.manager.started:  # a starting worker: its first load keeps to it
            self.manager.hold(dataclasses.replace(target, generation=0))
            return
        lock = self._order.setdefault(name, asyncio.Lock())
        task = asyncio.create_task(self._apply(lock, target))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _apply(self, lock: asyncio.Lock, target: ModelTarget) -> None:
        async with lock:  # one model's targets apply in the order they were numbered
            try:
                await self.manager.apply(dataclasses.replace(target, generation=0))
            except SluiceError as exc:
                log.error(
                    "model '%s' (from another worker's request): %s", target.name, exc.message
                )
            except Exception:
                log.exception("applying a desired-state change for '%s' failed", target.name)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
