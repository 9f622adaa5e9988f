"""Open-loop send schedules: the intended send times, fixed before the run starts.

Latency is measured from these times, not from when a connection got free, so a
server that stalls is charged for every request it kept waiting (no coordinated
omission).
"""

from __future__ import annotations

import numpy as np

__all__ = ["constant_schedule", "poisson_schedule"]


def constant_schedule(rate: float, duration: float) -> np.ndarray:
    """Send offsets in seconds, evenly spaced at ``rate`` per second over ``duration``."""
    if rate <= 0 or duration <= 0:
        raise ValueError("rate and duration must be positive")
    return np.arange(int(rate * duration), dtype=np.float64) / rate


def poisson_schedule(rate: float, duration: float, seed: int) -> np.ndarray:
    """Send offsets of a Poisson process at ``rate`` per second over ``duration``.

    Exponential gaps from a seeded generator, so a run is reproducible.
    """
    if rate <= 0 or duration <= 0:
        raise ValueError("rate and duration must be positive")
    rng = np.random.default_rng(seed)
    expected = int(rate * duration)
    chunk = max(16, int(expected * 1.2) + 64)
    gaps = rng.exponential(1.0 / rate, size=chunk)
    offsets = np.cumsum(gaps)
    while offsets[-1] < duration:
        more = np.cumsum(rng.exponential(1.0 / rate, size=chunk)) + offsets[-1]
        offsets = np.concatenate([offsets, more])
    return offsets[offsets < duration]
