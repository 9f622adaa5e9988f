"""Canary rollouts: a candidate version takes traffic step by step, judged each interval.

``RolloutController`` (one per core) moves the model's split through the traffic
controller (``serving.traffic``); ``decide`` is the rule for one interval.
"""

from serving.rollout._analysis import ADVANCE, HOLD, ROLLBACK, Decision, Window, decide
from serving.rollout._controller import RolloutController, RolloutState
from serving.rollout._peers import ArmRelay, ArmWindows, PeerArms, WorkerArms
from serving.rollout._spec import RolloutSpec, parse_duration

__all__ = [
    "ADVANCE",
    "HOLD",
    "ROLLBACK",
    "ArmRelay",
    "ArmWindows",
    "Decision",
    "PeerArms",
    "RolloutController",
    "RolloutSpec",
    "RolloutState",
    "Window",
    "WorkerArms",
    "decide",
    "parse_duration",
]
