"""The limit: in-process ONNX Runtime on the same model, no server, at its best batch size.

A server can only approach this; the wide-MLP scenario reports Sluice's inferences per
second as a fraction of it. Beside it, the same on one intra-op thread (``one_thread``):
what one single-threaded instance could do at each batch size, the yardstick for an
execution's compute time when instances get one thread each.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks.models import MODELS

__all__ = ["BATCH_SIZES", "LimitResult", "measure_limit"]

BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256)


@dataclass(frozen=True, slots=True)
class LimitResult:
    model: str
    by_batch: dict[int, float]  # batch size -> inferences (rows) per second
    one_thread: dict[int, float] = field(default_factory=dict)  # the same, intra_op 1

    @property
    def best_batch(self) -> int:
        return max(self.by_batch, key=self.by_batch.__getitem__)

    @property
    def best(self) -> float:
        return self.by_batch[self.best_batch]

    def to_json(self) -> dict[str, object]:
        return {
            "model": self.model,
            "by_batch": {str(k): v for k, v in self.by_batch.items()},
            "best_batch": self.best_batch,
            "inferences_per_s": self.best,
            "one_thread_by_batch": {str(k): v for k, v in self.one_thread.items()},
        }


def measure_limit(
    key: str,
    onnx_path: Path,
    seconds_per_size: float,
    sizes: tuple[int, ...] = BATCH_SIZES,
    *,
    threads: int = 0,
) -> LimitResult:
    """Rows per second of ``session.run`` for each batch size, default session options
    (``threads``: intra-op threads instead of ONNX Runtime's default)."""
    import onnxruntime as ort

    model = MODELS[key]
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(11)
    dims = tuple(32 if d < 0 else d for d in model.input_dims)
    by_batch: dict[int, float] = {}
    for size in sizes:
        feed = {model.input_name: rng.standard_normal((size, *dims)).astype(np.float32)}
        outputs = [model.output_name]
        for _ in range(3):
            session.run(outputs, feed)
        runs = 0
        start = time.perf_counter()
        deadline = start + seconds_per_size
        while True:
            session.run(outputs, feed)
            runs += 1
            now = time.perf_counter()
            if now >= deadline:
                break
        by_batch[size] = runs * size / (now - start)
    return LimitResult(key, by_batch)
