"""The transformations ``sluice optimize`` applies, each ONNX bytes in, ONNX bytes out.

- Graph optimization: ONNX Runtime's offline optimizer at ``basic``, ``extended`` or ``all``
  saved as a model. ``all`` adds layout changes for the CPU it ran on: serve the result on
  the same kind of machine.
- int8 quantization (onnxruntime.quantization): ``dynamic`` quantizes weights ahead and
  activations per call; ``static`` also fixes activation ranges from calibration rows.
- fp16 (onnxconverter-common): weights and compute in float16 with float32 inputs and
  outputs kept, for GPU targets (on a CPU it is usually slower).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from serving.convert import ToolError
from serving.optimize._choices import LEVELS, QUANTIZE_MODES

__all__ = ["LEVELS", "QUANTIZE_MODES", "graph_optimize", "quantize", "to_fp16"]


def graph_optimize(onnx_bytes: bytes, level: str) -> bytes:
    import onnxruntime as ort

    if level not in LEVELS:
        raise ToolError(f"unknown optimization level {level!r}; expected one of {LEVELS}")
    levels = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    with tempfile.TemporaryDirectory(prefix="sluice-optimize-") as tmp:
        out = Path(tmp) / "optimized.onnx"
        options = ort.SessionOptions()
        options.graph_optimization_level = levels[level]
        options.optimized_model_filepath = str(out)
        options.log_severity_level = 3  # the report carries the 'all' level's warning
        ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
        return out.read_bytes()


def quantize(
    onnx_bytes: bytes, mode: str, calibration: dict[str, np.ndarray] | None = None
) -> bytes:
    try:
        from onnxruntime import quantization as q
    except ImportError as exc:
        raise ToolError(f"onnxruntime.quantization is not available: {exc}") from None
    if mode not in QUANTIZE_MODES:
        raise ToolError(f"unknown quantization {mode!r}; expected one of {QUANTIZE_MODES}")
    if mode == "static" and not calibration:
        raise ToolError("static quantization needs calibration rows: --calibration X.npy")
    with tempfile.TemporaryDirectory(prefix="sluice-quantize-") as tmp:
        source, out = Path(tmp) / "source.onnx", Path(tmp) / "quantized.onnx"
        source.write_bytes(onnx_bytes)
        try:
            if mode == "dynamic":
                q.quantize_dynamic(source, out, weight_type=q.QuantType.QInt8)
            else:
                assert calibration is not None
                reader = _Calibration(calibration)
                q.quantize_static(
                    source,
                    out,
                    reader,
                    quant_format=q.QuantFormat.QDQ,
                    activation_type=q.QuantType.QInt8,
                    weight_type=q.QuantType.QInt8,
                )
        except ToolError:
            raise
        except Exception as exc:
            raise ToolError(f"{mode} quantization failed: {type(exc).__name__}: {exc}") from None
        return out.read_bytes()


class _Calibration:
    """onnxruntime's CalibrationDataReader: one row at a time, batch dimension kept."""

    def __init__(self, inputs: dict[str, np.ndarray]) -> None:
        self._rows: Iterator[dict[str, np.ndarray]] = (
            {name: value[i : i + 1] for name, value in inputs.items()}
            for i in range(len(next(iter(inputs.values()))))
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._rows, None)


def to_fp16(onnx_bytes: bytes) -> bytes:
    import onnx

    try:
        from onnxconverter_common import float16
    except ImportError:
        raise ToolError(
            "--fp16 needs onnxconverter-common: pip install 'sluice[convert]'"
        ) from None
    model: Any = onnx.load_from_string(onnx_bytes)
    try:
        converted = float16.convert_float_to_float16(model, keep_io_types=True)
    except Exception as exc:
        raise ToolError(f"fp16 conversion failed: {type(exc).__name__}: {exc}") from None
    return converted.SerializeToString()
