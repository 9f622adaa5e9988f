"""PyTorch modules to ONNX (torch.onnx.export with a dynamic batch), checked on the sample.

torch is optional: nothing imports it until ``sluice convert torch`` runs, and the server
never needs it.
"""

from __future__ import annotations

import importlib.util
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from serving.convert._compare import OutputDifference, compare_outputs
from serving.convert._refusal import ToolError

__all__ = ["TorchConversion", "convert_torch", "load_factory"]

OPSET = 17


@dataclass(frozen=True, slots=True)
class TorchConversion:
    onnx_bytes: bytes
    module: str
    differences: tuple[OutputDifference, ...]
    rows: int


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise ToolError(
            "sluice convert torch needs PyTorch, which is not installed: pip install torch"
        ) from None
    return torch


def load_factory(spec: str) -> Any:
    """Call ``factory`` of ``module.py:factory``; it returns the ``torch.nn.Module``.

    Importing the file runs its code, as ``python module.py`` would.
    """
    torch = _torch()
    path_text, sep, factory_name = spec.rpartition(":")
    if not sep or not path_text or not factory_name:
        raise ToolError(f"{spec!r}: expected FILE.py:FACTORY, e.g. model.py:build")
    path = Path(path_text)
    if not path.is_file():
        raise ToolError(f"{path} does not exist")
    module_spec = importlib.util.spec_from_file_location(f"_sluice_convert_{path.stem}", path)
    if module_spec is None or module_spec.loader is None:
        raise ToolError(f"{path} is not an importable Python file")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise ToolError(f"{path} has no callable {factory_name!r}")
    built = factory()
    if not isinstance(built, torch.nn.Module):
        raise ToolError(f"{spec} returned {type(built).__name__}, not a torch.nn.Module")
    return built


def convert_torch(
    module: Any, sample: np.ndarray, *, atol: float = 1e-4, rtol: float = 1e-3
) -> TorchConversion:
    """Export ``module`` with input ``INPUT0`` and outputs ``OUTPUT0...``, batch dynamic."""
    torch = _torch()
    import onnxruntime as ort

    module.eval()
    example = torch.from_numpy(np.ascontiguousarray(sample, dtype=np.float32))
    with torch.no_grad():
        expected = module(example)
    expected_list = list(expected) if isinstance(expected, tuple | list) else [expected]
    outputs = [f"OUTPUT{i}" for i in range(len(expected_list))]
    buffer = io.BytesIO()
    try:
        torch.onnx.export(
            module,
            (example,),
            buffer,
            input_names=["INPUT0"],
            output_names=outputs,
            dynamic_axes={name: {0: "batch"} for name in ["INPUT0", *outputs]},
            opset_version=OPSET,
            dynamo=False,
        )
    except Exception as exc:
        raise ToolError(f"torch.onnx.export failed: {type(exc).__name__}: {exc}") from None
    onnx_bytes = buffer.getvalue()
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    actual = session.run(outputs, {"INPUT0": example.numpy()})
    differences, failures = [], []
    for name, old, new in zip(outputs, expected_list, actual, strict=True):
        old_np = old.detach().numpy()
        diff = compare_outputs(name, old_np, new)
        differences.append(diff)
        if not np.allclose(new.reshape(old_np.shape), old_np, atol=atol, rtol=rtol):
            failures.append(diff.describe())
    if failures:
        raise ToolError("the exported model disagrees with the module: " + "; ".join(failures))
    return TorchConversion(onnx_bytes, type(module).__name__, tuple(differences), len(sample))
