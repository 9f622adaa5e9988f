"""Holds each model's traffic split, installs it as the router's policy, runs shadows.

Splits come from two places: a model config's parameters (``sluice.traffic``,
``sluice.shadow``, ``sluice.sticky``, read whenever a version of the model loads or
unloads) and the desired state (``ModelTarget.traffic`` / ``shadow`` / ``sticky``),
which the admin API sets (``set``) and ``--workers N`` relays to every worker; the
desired state's split wins over the config's until it is cleared. Shadow copies run as their
own tasks: at most ``max_inflight`` per shadow version at once, past that a copy is
dropped and counted, so a slow or failing shadow never holds up or fails the primary.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from serving.desired_state import ModelTarget, Source
from serving.errors import InvalidArgument
from serving.traffic._arms import SHADOW, ArmObserver, compare
from serving.traffic._policy import SplitPolicy
from serving.traffic._split import StickyKey, TrafficSplit
from serving.types import InferRequest, InferResponse

if TYPE_CHECKING:
    from serving.manager import LifecycleEvent, ModelManager
    from serving.metrics import Metrics
    from serving.model import ModelVersion
    from serving.router import Router

__all__ = ["DEFAULT_SHADOW_INFLIGHT", "TrafficController"]

log = logging.getLogger("sluice.traffic")

DEFAULT_SHADOW_INFLIGHT = 32

_Primary = asyncio.Future[InferResponse | None]


def _config_split(version: ModelVersion) -> TrafficSplit | None:
    params = {k: p.string_value for k, p in version.config.parameters.items()}
    try:
        return TrafficSplit.from_parameters(params)
    except ValueError as exc:
        log.error("model '%s': ignoring its traffic parameters: %s", version.name, exc)
        return None


class TrafficController:
    def __init__(
        self,
        router: Router,
        manager: ModelManager,
        metrics: Metrics | None = None,
        *,
        max_inflight: int = DEFAULT_SHADOW_INFLIGHT,
    ) -> None:
        self.router = router
        self.manager = manager
        self.max_inflight = max_inflight
        self.arms = ArmObserver(metrics)
        manager.observers.add(self.arms)
        manager.target_listeners.append(self._on_target)
        manager.lifecycle_listeners.append(self._on_lifecycle)
        self._set: dict[str, TrafficSplit] = {}  # the desired state's (the admin API)
        self._config: dict[str, TrafficSplit] = {}  # from config parameters
        self._inflight: dict[tuple[str, int], int] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    # -- which split is in force --------------------------------------------

    def split(self, name: str) -> tuple[TrafficSplit | None, str]:
        """The split in force for ``name`` and where it came from ("api", "config", "")."""
        if name in self._set:
            return self._set[name], "api"
        if name in self._config:
            return self._config[name], "config"
        return None, ""

    def sync(self, name: str | None = None) -> None:
        """Re-read the config parameters of ``name`` (None: every model serving)."""
        names = [name] if name else sorted({v.name for v in self.manager.serving_versions()})
        for model in names:
            ready = self.manager.ready(model)
            found = _config_split(ready[max(ready)]) if ready else None
            if found is None:
                self._config.pop(model, None)
            else:
                self._config[model] = found
            self._install(model)

    def set(self, name: str, split: TrafficSplit | None) -> None:
        """The admin API: ``split`` wins over the config (None or empty: back to the
        config). It becomes the model's desired state, so every worker takes it."""
        if split is not None and not split.empty:
            self.manager.get(name)  # NotFound / Unavailable as a client should see them
            missing = split.versions() - set(self.manager.ready(name))
            if missing:
                raise InvalidArgument(
                    f"model '{name}' has no ready version {min(missing)} "
                    f"(ready: {', '.join(self.manager.ready_versions(name)) or 'none'})"
                )
        else:
            if name not in self._set and name not in self._config:
                self.manager.get(name)
            split = TrafficSplit()
        held = self.manager.desired.target(name) or ModelTarget(name)
        try:
            target = dataclasses.replace(
                held,
                source=Source.API,
                traffic=split.weights,
                shadow=split.shadow,
                sticky=str(split.sticky or ""),
                generation=0,
            )
        except ValueError as exc:
            raise InvalidArgument(str(exc)) from None
        self.manager.set_split(target)  # tells _on_target here, and the other workers
        now, _ = self.split(name)
        log.info(
            "model '%s': traffic %s", name, now.to_json() if now else "to the highest ready version"
        )

    def _on_target(self, target: ModelTarget) -> None:
        """The desired state changed for ``target.name`` (here or relayed)."""
        split = None
        if target.traffic or target.shadow or target.sticky:
            try:
                split = TrafficSplit(
                    target.traffic,
                    target.shadow,
                    StickyKey.parse(target.sticky) if target.sticky else None,
                )
            except ValueError as exc:
                log.error("model '%s': ignoring the desired traffic split: %s", target.name, exc)
        if split is None or (split.empty and split.sticky is None):
            self._set.pop(target.name, None)
        else:
            self._set[target.name] = split
        self._install(target.name)

    def _on_lifecycle(self, event: LifecycleEvent) -> None:
        if event.kind in ("loaded", "unloaded"):
            self.sync(event.model)

    def _install(self, name: str) -> None:
        split, _ = self.split(name)
        if split is None or (split.empty and split.sticky is None):
            self.router.set_policy(name, None)
            self.arms.models.discard(name)
        else:
            self.router.set_policy(name, SplitPolicy(split))
            self.arms.models.add(name)

    def show(self, name: str) -> dict[str, Any]:
        """What ``sluice traffic show`` prints: the split, its source, the ready versions
        and the per-arm counts."""
        split, source = self.split(name)
        if split is None:
            self.manager.get(name)
        return {
            "model": name,
            "source": source,
            "split": (split or TrafficSplit()).to_json(),
            "ready": self.manager.ready_versions(name),
            "arms": self.arms.snapshot(name),
        }

    # -- shadows ----------------------------------------------------------------

    def shadow(self, request: InferRequest, chosen: ModelVersion) -> _Primary | None:
        """Start the shadow copies of ``request``; None when it has none. The caller
        hands the primary answer to ``primary`` so the copies can compare with it."""
        versions = self.router.shadows(request, chosen)
        if not versions:
            return None
        answer: _Primary = asyncio.get_running_loop().create_future()
        for version in versions:
            key = (version.name, version.version)
            stats = self.arms.stats(version.name, version.version, "shadow")
            if self._inflight.get(key, 0) >= self.max_inflight:
                self.arms.shadow_dropped(*key)
                continue
            stats.sent += 1
            self._inflight[key] = self._inflight.get(key, 0) + 1
            task = asyncio.create_task(self._run_shadow(request, version, answer))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        return answer

    async def primary(self, answer: _Primary, running: Awaitable[InferResponse]) -> InferResponse:
        """Await the primary answer and pass it to the shadows waiting on ``answer``."""
        try:
            response = await running
        except BaseException:
            answer.set_result(None)
            raise
        answer.set_result(response)
        return response

    async def _run_shadow(
        self, request: InferRequest, version: ModelVersion, answer: _Primary
    ) -> None:
        SHADOW.set(True)  # this task only: the observers count the copy as a shadow
        key = (version.name, version.version)
        try:
            shadow = await version.infer(request)
        except Exception:
            return  # counted by the observers as a shadow error; never the request's
        finally:
            self._inflight[key] -= 1
        primary = await answer
        if primary is not None:
            self.arms.shadow_compared(*key, compare(primary, shadow))

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
