"""Sluice: inference serving for ONNX models over the Open Inference Protocol."""

__all__ = ["__version__"]

__version__ = "0.1.0"
