"""``sluice optimize``: ONNX Runtime graph optimization, int8 quantization and fp16 for a
model version, written as the next version only when accuracy holds on the sample.

``LEVELS`` and ``QUANTIZE_MODES`` import nothing heavy; every other name loads its module
(ONNX, protobuf, numpy) on first use, so building the ``sluice`` parser stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from serving.optimize._choices import LEVELS, QUANTIZE_MODES

if TYPE_CHECKING:
    from serving.optimize._measure import Speed, measure
    from serving.optimize._optimizer import (
        ACCURACY_RULE,
        OptimizeReport,
        OptimizeRequest,
        optimize_model,
    )
    from serving.optimize._transform import graph_optimize, quantize, to_fp16

__all__ = [
    "ACCURACY_RULE",
    "LEVELS",
    "QUANTIZE_MODES",
    "OptimizeReport",
    "OptimizeRequest",
    "Speed",
    "graph_optimize",
    "measure",
    "optimize_model",
    "quantize",
    "to_fp16",
]

_HOMES = {
    "Speed": "_measure",
    "measure": "_measure",
    "ACCURACY_RULE": "_optimizer",
    "OptimizeReport": "_optimizer",
    "OptimizeRequest": "_optimizer",
    "optimize_model": "_optimizer",
    "graph_optimize": "_transform",
    "quantize": "_transform",
    "to_fp16": "_transform",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'serving.optimize' has no attribute {name!r}")
    return getattr(importlib.import_module(f"serving.optimize.{home}"), name)
