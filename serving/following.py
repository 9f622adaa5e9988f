"""Serving from a registry: the server's side of ``registry_client.Follower``.

The follower resolves references, pulls and retains versions; what it decides reaches
the manager only as desired-state targets (``Source.REGISTRY``), so every later load
of the model (start-up, poll mode, the repository API) keeps to the followed version
while ``config.pbtxt`` is still read from disk.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from serving.desired_state import ModelTarget, Source
from serving.errors import SluiceError
from serving.settings import Settings

if TYPE_CHECKING:
    from registry_client import Follower
    from serving.manager import ModelManager

__all__ = ["ManagerTarget", "follower_from_settings"]


class ManagerTarget:
    """A ``registry_client.ServingTarget`` over the manager's desired state."""

    def __init__(self, manager: ModelManager) -> None:
        self.manager = manager

    @property
    def repository(self) -> Path:
        return self.manager.repository

    def serving(self, name: str) -> tuple[int, ...]:
        return tuple(sorted(self.manager.ready(name)))

    def _target(self, name: str, versions: tuple[int, ...]) -> ModelTarget:
        held = self.manager.desired.target(name)
        if held is None:
            return ModelTarget(name, Source.REGISTRY, versions=versions)
        return dataclasses.replace(
            held, source=Source.REGISTRY, serve=True, versions=versions, config=None, generation=0
        )

    def hold(self, name: str, versions: tuple[int, ...]) -> None:
        held = self.manager.desired.target(name)
        target = self._target(name, versions)
        if held is not None and not held.serve:
            target = dataclasses.replace(target, serve=False)  # unloaded on purpose: stays so
        self.manager.hold(target)

    async def follow(self, name: str, versions: tuple[int, ...]) -> None:
        from registry_client import LoadRefused

        try:
            await self.manager.apply(self._target(name, versions))
        except SluiceError as exc:
            raise LoadRefused(exc.message) from None


def follower_from_settings(settings: Settings, manager: ModelManager, deployment: str) -> Follower:
    """The follower ``--registry URI --model REF...`` asks for."""
    from registry_client import Follower

    assert settings.registry is not None
    return Follower(
        ManagerTarget(manager),
        settings.registry,
        settings.registry_models,
        deployment=deployment,
        poll_secs=settings.registry_poll_secs,
        retention=settings.registry_retention,
    )
