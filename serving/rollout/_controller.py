"""Runs canary rollouts: moves a model's traffic split step by step, by itself.

Every interval it compares the candidate arm with the baseline arm over that interval
(``decide``) and advances to the next step, holds (too few samples) or rolls back to
the baseline alone, saying why in the log and in ``status``. After the last step it
promotes the candidate (all traffic) and, when asked, moves a registry alias to it.
Each rollout's state is written to ``<state_dir>/<model>.json`` after every decision,
and ``resume`` picks up the running ones after a restart, at the step they were on.

Under ``--workers N`` one process runs a rollout: the one holding the lock on
``<model>.lock`` (taken at start or resume). The splits it sets reach every worker
through the desired state; the others answer ``status`` from the state file, and an
``abort`` taken by another worker is written there, where the running one sees it
before its next decision. It judges every worker's traffic: with ``peers`` set
(``serving.rollout._peers``, by ``serving.workers``) it marks the other workers' arms
at each step and merges what they did with its own at each verdict.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serving.errors import InvalidArgument, NotFound
from serving.rollout._analysis import (
    ADVANCE,
    ROLLBACK,
    ArmSample,
    Decision,
    Snapshot,
    Window,
    decide,
)
from serving.rollout._peers import PeerArms
from serving.rollout._spec import RolloutSpec
from serving.traffic import TrafficController, TrafficSplit

__all__ = ["RolloutController", "RolloutState"]

log = logging.getLogger("sluice.rollout")

RUNNING = "running"
PROMOTED = "promoted"
ROLLED_BACK = "rolled_back"
ABORTED = "aborted"
_SHADOW_PHASE = -1


@dataclass(slots=True)
class RolloutState:
    model: str
    spec: RolloutSpec
    baseline: int
    phase: int  # -1: shadow copies only; else the index of the step in spec.steps
    state: str = RUNNING
    history: list[dict[str, Any]] = field(default_factory=list)
    baseline_p99: float | None = None
    started: float = 0.0

    def to_json(self) -> dict[str, Any]:
        step = "shadow" if self.phase == _SHADOW_PHASE else self.spec.steps[self.phase]
        return {
            "model": self.model,
            "state": self.state,
            "baseline": self.baseline,
            "candidate": self.spec.to,
            "step": step,
            "phase": self.phase,
            "spec": self.spec.to_json(),
            "history": self.history,
            "baseline_p99_ms": self.baseline_p99,
            "started": self.started,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RolloutState:
        return cls(
            model=str(data["model"]),
            spec=RolloutSpec.from_json(data["spec"]),
            baseline=int(data["baseline"]),
            phase=int(data["phase"]),
            state=str(data["state"]),
            history=list(data.get("history", [])),
            baseline_p99=data.get("baseline_p99_ms"),
            started=float(data.get("started", 0.0)),
        )


class RolloutController:
    def __init__(
        self,
        traffic: TrafficController,
        state_dir: Path | None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.traffic = traffic
        self.state_dir = state_dir
        self.clock = clock
        self._rollouts: dict[str, RolloutState] = {}
        self._marks: dict[str, tuple[Snapshot, Snapshot]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._locks: dict[str, int] = {}  # the rollouts this process runs: lock file fds
        # Told (on the loop) when a rollout ends promoted or rolled back, e.g. events.
        self.listeners: list[Callable[[RolloutState], None]] = []
        # The other workers under --workers N, whose traffic each verdict includes.
        self.peers: PeerArms | None = None

    # -- the admin surface ---------------------------------------------------

    async def start(self, name: str, spec: RolloutSpec, *, run: bool = True) -> dict[str, Any]:
        """Begin a rollout of ``spec.to``; ``run`` False leaves the stepping to
        ``evaluate`` calls (tests)."""
        current = self._rollouts.get(name)
        on_disk = self._on_disk(name)
        if any(s is not None and s.state == RUNNING for s in (current, on_disk)):
            raise InvalidArgument(f"model '{name}' already has a rollout running (abort it first)")
        manager = self.traffic.manager
        manager.get(name)
        ready = set(manager.ready(name))
        if spec.to not in ready:
            raise InvalidArgument(f"model '{name}' has no ready version {spec.to}")
        baseline = spec.baseline or max((v for v in ready if v != spec.to), default=0)
        if baseline not in ready or baseline == spec.to:
            raise InvalidArgument(
                f"model '{name}': no baseline version to compare version {spec.to} with"
            )
        if not self._claim(name):
            raise InvalidArgument(f"model '{name}' already has a rollout running in another worker")
        phase = _SHADOW_PHASE if spec.shadow_first else 0
        state = RolloutState(name, spec, baseline, phase, started=self.clock())
        self._rollouts[name] = state
        self._enter(state)
        self._note(state, "start", f"version {spec.to} against version {baseline}")
        if run:
            self._run(name)
        return state.to_json()

    def status(self, name: str) -> dict[str, Any]:
        state = self._rollouts.get(name) if self._runs(name) else None
        state = state or self._on_disk(name) or self._rollouts.get(name)
        if state is None:
            raise NotFound(f"model '{name}' has no rollout")
        return state.to_json()

    async def abort(self, name: str) -> dict[str, Any]:
        state = self._rollouts.get(name) if self._runs(name) else None
        state = state or self._on_disk(name)
        if state is None or state.state != RUNNING:
            raise InvalidArgument(f"model '{name}' has no rollout running")
        self._stop_task(name)
        self._split(state, {state.baseline: 100})
        state.state = ABORTED
        self._note(state, "abort", "aborted: all traffic back to the baseline")
        self._release(name)
        return state.to_json()

    async def resume(self) -> None:
        """Pick up the rollouts that were running when the server stopped."""
        if self.state_dir is None or not self.state_dir.is_dir():
            return
        for path in sorted(self.state_dir.glob("*.json")):
            try:
                state = RolloutState.from_json(json.loads(path.read_text()))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.error("ignoring rollout state %s: %s", path, exc)
                continue
            if state.state != RUNNING:
                self._rollouts[state.model] = state
                continue
            if not self._claim(state.model):
                continue  # another worker resumed it
            self._rollouts[state.model] = state
            try:
                self._enter(state)
            except Exception as exc:
                log.error("rollout of '%s' cannot resume: %s", state.model, exc)
                continue
            self._note(state, "resume", "resumed after a restart")
            self._run(state.model)

    async def close(self) -> None:
        for name in list(self._tasks):
            self._stop_task(name)
        for name in list(self._locks):
            self._release(name)

    # -- which process runs a rollout ------------------------------------------

    def _runs(self, name: str) -> bool:
        return self.state_dir is None or name in self._locks

    def _claim(self, name: str) -> bool:
        """Take the lock that makes this process the one running ``name``'s rollout."""
        if self._runs(name):
            return True
        assert self.state_dir is not None
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.state_dir / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            log.warning("rollout of '%s': no lock file (%s); running it here", name, exc)
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._locks[name] = fd
        return True

    def _release(self, name: str) -> None:
        fd = self._locks.pop(name, None)
        if fd is not None:
            os.close(fd)  # and the lock with it

    def _on_disk(self, name: str) -> RolloutState | None:
        if self.state_dir is None:
            return None
        try:
            return RolloutState.from_json(json.loads((self.state_dir / f"{name}.json").read_text()))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    # -- stepping ----------------------------------------------------------------

    async def evaluate(self, name: str) -> Decision:
        """Judge the interval just ended and act on it."""
        state = self._rollouts[name]
        spec = state.spec
        shadow = state.phase == _SHADOW_PHASE
        arms = self.traffic.arms
        candidate_key, baseline_key = self._keys(state)
        before_candidate, before_baseline = self._marks[name]
        candidates = [ArmSample.between(arms.arms.get(candidate_key), before_candidate)]
        baselines = [ArmSample.between(arms.arms.get(baseline_key), before_baseline)]
        if self.peers is not None:
            for other in await self.peers.collect(name, (candidate_key, baseline_key)):
                if len(other) == 2:
                    candidates.append(other[0])
                    baselines.append(other[1])
        candidate, baseline = Window.merge(candidates), Window.merge(baselines)
        decision = decide(spec, candidate, baseline, shadow=shadow, baseline_p99=state.baseline_p99)
        if baseline.requests >= spec.min_samples and baseline.p99_ms is not None:
            state.baseline_p99 = baseline.p99_ms
        promoted = False
        if decision.action == ROLLBACK:
            self._split(state, {state.baseline: 100})
            state.state = ROLLED_BACK
        elif decision.action == ADVANCE:
            if state.phase == len(spec.steps) - 1:
                promoted = True
                self._split(state, {spec.to: 100})
            else:
                state.phase += 1
                self._enter(state)
        self._note(state, decision.action, decision.reason)
        if promoted:
            await self._promote_alias(state)
            state.state = PROMOTED
            self._note(state, "promote", f"version {spec.to} takes all traffic")
        if state.state in (PROMOTED, ROLLED_BACK):
            for listener in self.listeners:
                try:
                    listener(state)
                except Exception:
                    log.exception("rollout of '%s': a listener failed", name)
        return decision

    def _run(self, name: str) -> None:
        self._stop_task(name)
        self._tasks[name] = asyncio.create_task(self._loop(name), name=f"sluice-rollout-{name}")

    async def _loop(self, name: str) -> None:
        state = self._rollouts[name]
        while state.state == RUNNING:
            await asyncio.sleep(state.spec.interval_s)
            written = self._on_disk(name)
            if written is not None and written.state != RUNNING:  # aborted by another worker
                self._rollouts[name] = written
                break
            try:
                await self.evaluate(name)
            except Exception:
                log.exception("rollout of '%s': the evaluation failed; holding", name)
        self._release(name)  # finished: another worker may start the next one

    def _stop_task(self, name: str) -> None:
        task = self._tasks.pop(name, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    def _enter(self, state: RolloutState) -> None:
        """Set the split of the current phase and mark where its interval starts."""
        spec = state.spec
        if state.phase == _SHADOW_PHASE:
            self._split(state, {state.baseline: 100}, shadow={spec.to: 100})
        else:
            percent = spec.steps[state.phase]
            self._split(state, {state.baseline: 100 - percent, spec.to: percent})
        arms = self.traffic.arms
        keys = self._keys(state)
        self._marks[state.model] = (
            Snapshot.of(arms.arms.get(keys[0])),
            Snapshot.of(arms.arms.get(keys[1])),
        )
        if self.peers is not None:
            self.peers.mark(state.model, keys)

    @staticmethod
    def _keys(state: RolloutState) -> tuple[tuple[str, int, str], tuple[str, int, str]]:
        """The arms a verdict compares: the candidate's (its shadow copies in the shadow
        phase) and the baseline's."""
        arm = "shadow" if state.phase == _SHADOW_PHASE else "primary"
        return (state.model, state.spec.to, arm), (state.model, state.baseline, "primary")

    def _split(
        self, state: RolloutState, weights: dict[int, int], shadow: dict[int, int] | None = None
    ) -> None:
        current, _ = self.traffic.split(state.model)
        sticky = current.sticky if current is not None else None
        weights = {v: w for v, w in weights.items() if w > 0}
        self.traffic.set(state.model, TrafficSplit(weights, shadow or {}, sticky))

    async def _promote_alias(self, state: RolloutState) -> None:
        spec = state.spec
        if not spec.promote_alias:
            return
        try:
            from registry_client import open_registry

            registry = open_registry(spec.registry)
            moved = registry.set_alias(state.model, spec.promote_alias, spec.to)
            if asyncio.iscoroutine(moved):
                await moved
            close = getattr(registry, "aclose", None)
            if close is not None:
                await close()
        except Exception as exc:
            self._note(state, "alias", f"moving {spec.promote_alias} failed: {exc}")
            return
        self._note(state, "alias", f"{state.model}@{spec.promote_alias} -> {spec.to}")

    def _note(self, state: RolloutState, action: str, reason: str) -> None:
        step = "shadow" if state.phase == _SHADOW_PHASE else state.spec.steps[state.phase]
        entry = {"time": round(self.clock(), 3), "step": step, "action": action, "reason": reason}
        state.history.append(entry)
        log.info(
            "rollout of '%s' to version %d (step %s): %s: %s",
            state.model, state.spec.to, step, action, reason,
        )  # fmt: skip
        self._save(state)

    def _save(self, state: RolloutState) -> None:
        if self.state_dir is None:
            return
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            path = self.state_dir / f"{state.model}.json"
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(state.to_json(), indent=1))
            tmp.replace(path)
        except OSError as exc:
            log.warning("rollout of '%s': cannot save its state: %s", state.model, exc)
