"""On-disk cache of ONNX Runtime's optimized models.

ONNX Runtime writes the optimized graph to ``SessionOptions.optimized_model_filepath`` while it
builds a session. Sluice points that at a private temporary name and renames it into place only
after the session built, so a reader never sees a half-written file. The key is the model file's
content digest plus everything that shapes the optimized graph: providers, optimization level and
the ONNX Runtime version.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Sequence
from pathlib import Path

__all__ = ["OptimizedModelCache", "file_digest"]

# Providers that compile nodes cannot serialize an optimized model; they are never cached.
_UNCACHEABLE = {"OpenVINOExecutionProvider", "TensorrtExecutionProvider"}


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class OptimizedModelCache:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    @staticmethod
    def cacheable(providers: Sequence[str]) -> bool:
        return not _UNCACHEABLE.intersection(providers)

    def path_for(
        self, model_path: Path, providers: Sequence[str], graph_level: str, ort_version: str
    ) -> Path:
        tag = "+".join(p.removesuffix("ExecutionProvider").lower() for p in providers)
        level = graph_level.removeprefix("ORT_").lower()
        key = f"{file_digest(model_path)[:32]}-{tag}-{level}-ort{ort_version}.onnx"
        return self.directory / key

    def temp_path(self, final: Path) -> Path:
        """A private name beside ``final``; ONNX Runtime needs the .onnx suffix."""
        self.directory.mkdir(parents=True, exist_ok=True)
        return final.with_name(f".{final.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp.onnx")

    @staticmethod
    def publish(temp: Path, final: Path) -> None:
        """Move a finished file into place (atomic on one filesystem)."""
        os.replace(temp, final)

    @staticmethod
    def discard(path: Path) -> None:
        path.unlink(missing_ok=True)
