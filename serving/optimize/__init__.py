"""``sluice optimize``: ONNX Runtime graph optimization, int8 quantization and fp16 for a
model version, written as the next version only when accuracy holds on the sample."""

from serving.optimize._measure import Speed, measure
from serving.optimize._optimizer import (
    ACCURACY_RULE,
    OptimizeReport,
    OptimizeRequest,
    optimize_model,
)
from serving.optimize._transform import LEVELS, QUANTIZE_MODES, graph_optimize, quantize, to_fp16

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
