"""Traffic splits: weights per version, sticky routing, shadow copies, per-arm counts.

``TrafficController`` (one per core) installs each model's ``TrafficSplit`` as the
router's policy (``SplitPolicy``) and runs the shadow copies; ``ArmObserver`` counts
what each arm answered.
"""

from serving.traffic._arms import SHADOW, ArmObserver, ArmStats, Comparison, compare
from serving.traffic._controller import DEFAULT_SHADOW_INFLIGHT, TrafficController
from serving.traffic._policy import SplitPolicy, request_key, stable_fraction
from serving.traffic._split import (
    PARAMETER_SHADOW,
    PARAMETER_STICKY,
    PARAMETER_TRAFFIC,
    StickyKey,
    TrafficSplit,
    parse_shares,
)

__all__ = [
    "DEFAULT_SHADOW_INFLIGHT",
    "PARAMETER_SHADOW",
    "PARAMETER_STICKY",
    "PARAMETER_TRAFFIC",
    "SHADOW",
    "ArmObserver",
    "ArmStats",
    "Comparison",
    "SplitPolicy",
    "StickyKey",
    "TrafficController",
    "TrafficSplit",
    "compare",
    "parse_shares",
    "request_key",
    "stable_fraction",
]
