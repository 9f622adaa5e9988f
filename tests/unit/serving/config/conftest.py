from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.unit.serving.config.tiny_onnx import FLOAT, INT64, write_onnx


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """An empty model directory named "tiny" inside a repository."""
    path = tmp_path / "repo" / "tiny"
    path.mkdir(parents=True)
    return path


@pytest.fixture
def batchable_onnx(model_dir: Path) -> Path:
    """x: FP32 [batch, 3], ids: INT64 [N, 2, seq] -> y: FP32 [batch, 3], n: INT64 [batch]."""
    return write_onnx(
        model_dir / "1" / "model.onnx",
        [("x", FLOAT, ["batch", 3]), ("ids", INT64, [None, 2, "seq"])],
        [("y", FLOAT, ["batch", 3]), ("n", INT64, ["batch"])],
    )


@pytest.fixture
def fixed_onnx(model_dir: Path) -> Path:
    """x: FP32 [1, 3] -> y: FP32 [1, 3]: a graph that cannot batch."""
    return write_onnx(
        model_dir / "1" / "model.onnx", [("x", FLOAT, [1, 3])], [("y", FLOAT, [1, 3])]
    )


@pytest.fixture
def write_config(model_dir: Path) -> Callable[[str], Path]:
    def write(text: str) -> Path:
        path = model_dir / "config.pbtxt"
        path.write_text(text)
        return path

    return write
