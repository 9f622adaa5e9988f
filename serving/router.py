"""Which model version answers an inference request.

``InferenceCore.infer`` asks the router, and only the router, for the version that
serves each request. A request that names a version gets that version; otherwise the
model's policy picks one of its ready versions. The default policy picks the highest
ready version (what Sluice has always done); a traffic split, sticky routing on a
request key and shadow copies plug in as other policies (``set_policy``) without the
core, the front ends or the manager changing.

Metadata, config, statistics and readiness calls never pass through a policy: they
ask the manager for the highest ready version, so a weighted split cannot make two
metadata calls in a row disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from serving.types import InferRequest

if TYPE_CHECKING:
    from serving.model import ModelVersion

__all__ = ["HighestReady", "Router", "RoutingPolicy", "VersionSource"]


class VersionSource(Protocol):
    """What the router needs from the manager: the ready versions of a model."""

    def get(self, name: str, version: str = "") -> ModelVersion:
        """An explicit version (``version`` non-empty) or the highest ready one; raises
        NotFound / Unavailable / InvalidArgument as a client should see them."""
        ...

    def ready(self, name: str) -> Mapping[int, ModelVersion]:
        """The versions of ``name`` that serve now, by number (may be empty)."""
        ...


class RoutingPolicy(Protocol):
    """Picks the version for a request that names none.

    ``ready`` is never empty. ``choose`` runs on the event loop for every request:
    it must not block, and should not allocate where it can avoid it.
    """

    def choose(self, request: InferRequest, ready: Mapping[int, ModelVersion]) -> ModelVersion: ...

    def shadows(
        self, request: InferRequest, chosen: ModelVersion, ready: Mapping[int, ModelVersion]
    ) -> tuple[ModelVersion, ...]:
        """Versions that get a copy of ``request`` whose answers are discarded."""
        ...


class HighestReady:
    """The default policy: the highest ready version, no shadows."""

    __slots__ = ()

    def choose(self, request: InferRequest, ready: Mapping[int, ModelVersion]) -> ModelVersion:
        return ready[max(ready)]

    def shadows(
        self, request: InferRequest, chosen: ModelVersion, ready: Mapping[int, ModelVersion]
    ) -> tuple[ModelVersion, ...]:
        return ()


_DEFAULT = HighestReady()


class Router:
    """One per core: the explicit version, else the model's policy (``HighestReady``)."""

    def __init__(self, versions: VersionSource) -> None:
        self._versions = versions
        self._policies: dict[str, RoutingPolicy] = {}

    @property
    def has_policies(self) -> bool:
        """Whether any model routes through a policy (else nothing is ever shadowed)."""
        return bool(self._policies)

    def set_policy(self, name: str, policy: RoutingPolicy | None) -> None:
        """Route requests for ``name`` that name no version through ``policy``
        (None: back to the highest ready version)."""
        if policy is None:
            self._policies.pop(name, None)
        else:
            self._policies[name] = policy

    def policy(self, name: str) -> RoutingPolicy:
        return self._policies.get(name, _DEFAULT)

    def route(self, request: InferRequest) -> ModelVersion:
        """The version that answers ``request``; errors are the manager's (unknown model,
        not ready, bad or unavailable version)."""
        if request.model_version:
            return self._versions.get(request.model_name, request.model_version)
        policy = self._policies.get(request.model_name)
        if policy is None:
            return self._versions.get(request.model_name)
        ready = self._versions.ready(request.model_name)
        if not ready:
            return self._versions.get(request.model_name)  # raises why it is not ready
        return policy.choose(request, ready)

    def shadows(self, request: InferRequest, chosen: ModelVersion) -> tuple[ModelVersion, ...]:
        """Versions that get a discarded copy of ``request`` (none unless a policy says)."""
        if request.model_version:
            return ()
        policy = self._policies.get(request.model_name)
        if policy is None:
            return ()
        return policy.shadows(request, chosen, self._versions.ready(request.model_name))
