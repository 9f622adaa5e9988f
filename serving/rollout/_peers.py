"""A canary judged on every worker's traffic under ``--workers N``.

One worker runs a rollout (``RolloutController``), but the kernel spreads connections
over all of them, so its own arms hold only its share. At the start of each step the
judging worker has every other worker mark its arms (``ArmWindows.mark``); at each
verdict it asks them what their arms did since (``PeerArms.collect``) and merges their
samples with its own (``Window.merge``). The questions and answers travel on the pipes
of ``serving.workers`` and the supervisor relays them (``ArmRelay``), as it relays
desired state.

Messages: worker -> supervisor ``("arms-mark", model, keys)``, ``("arms-ask", ask,
model, keys)`` and ``("arms-reply", ask, samples)``; supervisor -> worker the same
``arms-mark`` and ``arms-ask`` (``ask`` then names the asking worker too), and
``("arms-reply", ask, [samples of each other worker])`` to the one that asked. Keys are
``(model, version, arm)``; samples are ``ArmSample.to_wire`` tuples, one per key.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from serving.rollout._analysis import ArmSample, Snapshot

if TYPE_CHECKING:
    from serving.traffic import ArmObserver

__all__ = ["MESSAGES", "ArmRelay", "ArmWindows", "PeerArms", "WorkerArms"]

log = logging.getLogger("sluice.rollout")

MESSAGES = ("arms-mark", "arms-ask", "arms-reply")
ArmKey = tuple[str, int, str]
Send = Callable[[tuple[Any, ...]], None]
# How long the judge waits for the other workers' samples; past it, it judges on those in.
ANSWER_TIMEOUT_SECS = 5.0


class ArmWindows:
    """One worker's arms since the judge's last mark, per model."""

    def __init__(self, arms: ArmObserver) -> None:
        self.arms = arms
        self._marks: dict[str, dict[ArmKey, Snapshot]] = {}

    def mark(self, model: str, keys: Iterable[ArmKey]) -> None:
        self._marks[model] = {k: Snapshot.of(self.arms.arms.get(k)) for k in keys}

    def sample(self, model: str, keys: Iterable[ArmKey]) -> list[tuple[Any, ...]]:
        """Since the mark; a worker that never saw one (it started later) counts from 0."""
        marks = self._marks.get(model, {})
        return [
            ArmSample.between(self.arms.arms.get(k), marks.get(k, Snapshot())).to_wire()
            for k in keys
        ]


class PeerArms:
    """The judging worker's side: mark the others' arms, collect their samples."""

    def __init__(self, send: Send, timeout: float = ANSWER_TIMEOUT_SECS) -> None:
        self._send = send
        self.timeout = timeout
        self._asks = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[list[Any]]] = {}

    def mark(self, model: str, keys: Sequence[ArmKey]) -> None:
        self._send(("arms-mark", model, tuple(keys)))

    async def collect(self, model: str, keys: Sequence[ArmKey]) -> list[list[ArmSample]]:
        """Each other worker's samples of ``keys``; those that did not answer in time are
        left out (and logged)."""
        ask = next(self._asks)
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._waiting[ask] = future
        self._send(("arms-ask", ask, model, tuple(keys)))
        try:
            answers = await asyncio.wait_for(future, self.timeout)
        except TimeoutError:
            log.warning(
                "rollout of '%s': the other workers' traffic did not arrive within %.0fs; "
                "judging on this worker's alone", model, self.timeout,
            )  # fmt: skip
            return []
        finally:
            self._waiting.pop(ask, None)
        return [[ArmSample.from_wire(s) for s in answer] for answer in answers]

    def replied(self, ask: int, answers: list[Any]) -> None:
        future = self._waiting.get(ask)
        if future is not None and not future.done():
            future.set_result(answers)


class WorkerArms:
    """A worker's end of the exchange: answers marks and questions, and, when it judges
    a rollout, asks (``peers``)."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.windows: ArmWindows | None = None  # once the core exists
        self.peers = PeerArms(send)

    def received(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "arms-mark":
            if self.windows is not None:
                self.windows.mark(message[1], message[2])
        elif kind == "arms-ask":
            _, ask, model, keys = message
            samples = self.windows.sample(model, keys) if self.windows is not None else []
            self._send(("arms-reply", ask, samples))
        elif kind == "arms-reply":
            self.peers.replied(message[1], message[2])


@dataclass(slots=True)
class _Ask:
    origin: int
    ask: int
    waiting: set[int]
    answers: list[Any] = field(default_factory=list)


class ArmRelay:
    """The supervisor's side: fan marks and questions out to the other workers, gather
    the answers, and hand them to the asking worker once all live ones answered."""

    def __init__(self) -> None:
        self._asks: dict[tuple[int, int], _Ask] = {}

    def received(
        self,
        origin: int,
        message: tuple[Any, ...],
        live: Iterable[int],
        send: Callable[[int, tuple[Any, ...]], None],
    ) -> None:
        """``message`` from worker ``origin``; ``live``: the workers that run now;
        ``send(worker, message)`` writes to one worker's pipe."""
        kind = message[0]
        others = [w for w in live if w != origin]
        if kind == "arms-mark":
            for worker in others:
                send(worker, message)
        elif kind == "arms-ask":
            _, ask, model, keys = message
            pending = _Ask(origin, ask, set(others))
            self._asks[(origin, ask)] = pending
            for worker in others:
                send(worker, ("arms-ask", (origin, ask), model, keys))
            self._finish_if_done(pending, send)
        elif kind == "arms-reply":
            _, (asker, ask), samples = message
            found = self._asks.get((asker, ask))
            if found is not None and origin in found.waiting:
                found.waiting.discard(origin)
                found.answers.append(samples)
                self._finish_if_done(found, send)

    def gone(self, worker: int, send: Callable[[int, tuple[Any, ...]], None]) -> None:
        """``worker`` exited: nobody waits for its answers, and its own questions lapse."""
        for key, pending in list(self._asks.items()):
            if pending.origin == worker:
                del self._asks[key]
            elif worker in pending.waiting:
                pending.waiting.discard(worker)
                self._finish_if_done(pending, send)

    def _finish_if_done(self, pending: _Ask, send: Callable[[int, tuple[Any, ...]], None]) -> None:
        if pending.waiting:
            return
        self._asks.pop((pending.origin, pending.ask), None)
        send(pending.origin, ("arms-reply", pending.ask, pending.answers))
