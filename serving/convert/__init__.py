"""``sluice convert``: scikit-learn and PyTorch models to ONNX, checked, as a new version.

Needs ``pip install 'sluice[convert]'`` (skl2onnx, scikit-learn); torch only for
``convert torch``. Heavy imports load when a conversion runs, never at import.
"""

from serving.convert._compare import OutputDifference, compare_outputs
from serving.convert._inputs import ModelInputs, model_inputs
from serving.convert._refusal import ToolError
from serving.convert._sample import load_sample
from serving.convert._sklearn import (
    PICKLE_WARNING,
    SklearnConversion,
    Tolerance,
    convert_sklearn,
    load_pickle,
)
from serving.convert._torch import TorchConversion, convert_torch, load_factory
from serving.convert._version import WrittenVersion, next_version, write_version

__all__ = [
    "PICKLE_WARNING",
    "ModelInputs",
    "OutputDifference",
    "SklearnConversion",
    "Tolerance",
    "ToolError",
    "TorchConversion",
    "WrittenVersion",
    "compare_outputs",
    "convert_sklearn",
    "convert_torch",
    "load_factory",
    "load_pickle",
    "load_sample",
    "model_inputs",
    "next_version",
    "write_version",
]
