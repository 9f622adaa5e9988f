"""The routing policy of a traffic split (``serving.router.RoutingPolicy``).

A request carrying the sticky key is placed by a stable hash of the key (BLAKE2b, not
Python's per-process ``hash``), so the same key lands on the same version in every
worker and after every restart; a request without one is drawn at random. Weights of
versions that are not ready are left out and the rest renormalised; when no weighted
version is ready the highest ready version answers.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from typing import TYPE_CHECKING

from serving.traffic._split import TrafficSplit
from serving.types import InferRequest

if TYPE_CHECKING:
    from serving.model import ModelVersion

__all__ = ["SplitPolicy", "request_key", "stable_fraction"]

_SCALE = float(1 << 64)


def stable_fraction(key: str, salt: bytes = b"") -> float:
    """A number in [0, 1) that depends only on ``key`` and ``salt``."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8, salt=salt)
    return int.from_bytes(digest.digest(), "big") / _SCALE


def request_key(request: InferRequest, split: TrafficSplit) -> str | None:
    """The request's sticky key, or None (no sticky key configured, or none sent)."""
    sticky = split.sticky
    if sticky is None:
        return None
    if sticky.kind == "header":
        value = request.headers.get(sticky.name)
    else:
        value = request.parameters.get(sticky.name)
    if value is None or value == "":
        return None
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _pick(weights: Mapping[int, int], ready: Mapping[int, object], point: float) -> int | None:
    arms = [(v, w) for v, w in weights.items() if w > 0 and v in ready]
    total = sum(w for _, w in arms)
    if not total:
        return None
    target = point * total
    for version, weight in arms:
        target -= weight
        if target < 0:
            return version
    return arms[-1][0]


class SplitPolicy:
    """Routes by ``split``; shadow copies go to ``split.shadow``'s versions."""

    __slots__ = ("_random", "split")

    def __init__(self, split: TrafficSplit, rng: random.Random | None = None) -> None:
        self.split = split
        self._random = rng or random.Random()

    def choose(self, request: InferRequest, ready: Mapping[int, ModelVersion]) -> ModelVersion:
        key = request_key(request, self.split)
        point = self._random.random() if key is None else stable_fraction(key, b"arm")
        version = _pick(self.split.weights, ready, point)
        return ready[version if version is not None else max(ready)]

    def shadows(
        self, request: InferRequest, chosen: ModelVersion, ready: Mapping[int, ModelVersion]
    ) -> tuple[ModelVersion, ...]:
        if not self.split.shadow:
            return ()
        key = request_key(request, self.split)
        out = []
        for version, percent in self.split.shadow.items():
            if not percent or version not in ready or ready[version] is chosen:
                continue
            point = self._random.random() if key is None else stable_fraction(key, b"shadow")
            if point * 100 < percent:
                out.append(ready[version])
        return tuple(out)
