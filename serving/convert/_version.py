"""Writing a model as a new version of a Triton-layout model directory, all or nothing.

The version (and, for a new model, the whole model directory with its config.pbtxt) is
built in a hidden directory beside its destination, loaded back through
``load_model_config`` exactly as the server would, and only then renamed into place.
The repository scan skips hidden entries, so a polling server never sees half a version.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from serving.config import format_config, load_model_config
from serving.config.model_config_pb2 import ModelConfig
from serving.convert._refusal import ToolError
from serving.errors import SluiceError

__all__ = ["WrittenVersion", "next_version", "write_version"]

MODEL_FILENAME = "model.onnx"
CONFIG_FILENAME = "config.pbtxt"


@dataclass(frozen=True, slots=True)
class WrittenVersion:
    model_dir: Path
    version: int
    config: ModelConfig
    wrote_config: bool  # False when the model directory already had its config.pbtxt

    @property
    def path(self) -> Path:
        return self.model_dir / str(self.version) / MODEL_FILENAME


def next_version(model_dir: Path) -> int:
    """One more than the highest numeric version directory (1 for a new model)."""
    if not model_dir.is_dir():
        return 1
    versions = [int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()]
    return max(versions, default=0) + 1


def write_version(
    model_dir: Path, onnx_bytes: bytes, *, max_batch_size: int | None = None
) -> WrittenVersion:
    """Add ``onnx_bytes`` as the next version of ``model_dir``.

    A new model directory gets a complete config.pbtxt derived from the graph (with
    ``max_batch_size`` when given); an existing one keeps its config, and the new
    version must load under it.
    """
    model_dir = Path(model_dir)
    if model_dir.exists() and not model_dir.is_dir():
        raise ToolError(f"{model_dir} exists and is not a model directory")
    parent = model_dir.parent
    if not parent.is_dir():
        raise ToolError(f"repository {parent} does not exist")
    if model_dir.is_dir():
        return _add_version(model_dir, onnx_bytes)
    return _new_model(model_dir, onnx_bytes, max_batch_size)


def _add_version(model_dir: Path, onnx_bytes: bytes) -> WrittenVersion:
    version = next_version(model_dir)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=model_dir))
    try:
        (staging / MODEL_FILENAME).write_bytes(onnx_bytes)
        config = _load(model_dir, staging / MODEL_FILENAME, None)
        os.rename(staging, model_dir / str(version))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return WrittenVersion(model_dir, version, config, wrote_config=False)


def _new_model(model_dir: Path, onnx_bytes: bytes, max_batch_size: int | None) -> WrittenVersion:
    staging = Path(tempfile.mkdtemp(prefix=f".{model_dir.name}.", dir=model_dir.parent))
    try:
        staged_model = staging / model_dir.name
        (staged_model / "1").mkdir(parents=True)
        onnx_path = staged_model / "1" / MODEL_FILENAME
        onnx_path.write_bytes(onnx_bytes)
        config = _load(staged_model, onnx_path, max_batch_size)
        config.name = model_dir.name
        (staged_model / CONFIG_FILENAME).write_text(format_config(config, "pbtxt"))
        _load(staged_model, onnx_path, None)  # what the server will read back
        os.rename(staged_model, model_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return WrittenVersion(model_dir, 1, config, wrote_config=True)


def _load(model_dir: Path, onnx_path: Path, max_batch_size: int | None) -> ModelConfig:
    try:
        if max_batch_size is None:
            return load_model_config(model_dir, onnx_path)
        return load_model_config(model_dir, onnx_path, default_max_batch_size=max_batch_size)
    except SluiceError as exc:
        raise ToolError(f"the result does not load as a Sluice model: {exc.message}") from None
