"""How far a converted or optimized model's outputs are from the original's, on a sample."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["OutputDifference", "compare_outputs"]


@dataclass(frozen=True, slots=True)
class OutputDifference:
    """One output compared: numbers for scores and values, agreement for labels.

    ``max_rel`` is the largest ``|new - old| / max(|old|, 1e-12)``; ``scaled_max_abs``
    is ``max_abs`` over the largest ``|old|`` (the error in units of the output's range).
    ``top1_agreement`` is the share of rows whose arg-max agrees, for [N, C>=2] scores;
    ``label_agreement`` the share of equal labels, for label outputs.
    """

    name: str
    kind: str  # "values" | "labels"
    max_abs: float | None = None
    max_rel: float | None = None
    scaled_max_abs: float | None = None
    top1_agreement: float | None = None
    label_agreement: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def describe(self) -> str:
        if self.kind == "labels":
            return f"{self.name}: label agreement {self.label_agreement:.4%}"
        text = f"{self.name}: max abs diff {self.max_abs:.3g}, max rel diff {self.max_rel:.3g}"
        if self.top1_agreement is not None:
            text += f", top-1 agreement {self.top1_agreement:.4%}"
        return text


def compare_outputs(name: str, old: np.ndarray, new: np.ndarray) -> OutputDifference:
    """Compare one output of the original (``old``) with the candidate's (``new``)."""
    old, new = np.asarray(old), np.asarray(new)
    if old.size != new.size:
        raise ValueError(f"output {name!r}: shapes {list(old.shape)} and {list(new.shape)} differ")
    new = new.reshape(old.shape)
    if not (_numeric(old) and _numeric(new)) or _is_label(old):
        if _numeric(old) and _numeric(new):  # bool labels come back as 0/1
            agree = old.astype(np.float64) == new.astype(np.float64)
        else:
            agree = old.astype(str) == new.astype(str)
        return OutputDifference(name, "labels", label_agreement=float(agree.mean()))
    old64, new64 = old.astype(np.float64), new.astype(np.float64)
    diff = np.abs(new64 - old64)
    scale = float(np.abs(old64).max()) if old64.size else 0.0
    top1 = None
    if old64.ndim == 2 and old64.shape[1] >= 2:
        top1 = float((old64.argmax(axis=1) == new64.argmax(axis=1)).mean())
    return OutputDifference(
        name,
        "values",
        max_abs=float(diff.max()) if diff.size else 0.0,
        max_rel=float((diff / np.maximum(np.abs(old64), 1e-12)).max()) if diff.size else 0.0,
        scaled_max_abs=float(diff.max() / scale) if diff.size and scale > 0 else 0.0,
        top1_agreement=top1,
    )


def _numeric(array: np.ndarray) -> bool:
    return array.dtype.kind in "fiub"


def _is_label(array: np.ndarray) -> bool:
    return array.dtype.kind in "iub" and array.ndim <= 1
