"""Reading the sample a conversion or an optimization is checked on (.npy, .npz, .csv, .json)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from serving.convert._refusal import ToolError

__all__ = ["load_sample"]


def load_sample(path: Path) -> np.ndarray:
    """The rows in ``path`` as one 2-D (or wider) array.

    ``.npy`` as saved; ``.npz`` its only array; ``.json`` a list of rows; ``.csv`` numbers
    (float64) or, when any cell is not a number, strings. A first CSV row with no number in
    it is a header and skipped.
    """
    path = Path(path)
    if not path.is_file():
        raise ToolError(f"sample {path} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            sample = np.load(path, allow_pickle=False)
        elif suffix == ".npz":
            sample = _only_array(path)
        elif suffix == ".json":
            sample = np.asarray(json.loads(path.read_text(encoding="utf-8")))
        elif suffix == ".csv":
            sample = _read_csv(path)
        else:
            raise ToolError(f"sample {path}: expected .npy, .npz, .csv or .json, not {suffix!r}")
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise ToolError(f"sample {path} could not be read: {exc}") from None
    if sample.ndim == 1:
        sample = sample.reshape(-1, 1) if suffix == ".csv" else sample.reshape(1, -1)
    if sample.ndim < 2 or sample.shape[0] == 0 or sample.size == 0:
        raise ToolError(f"sample {path} has no rows (shape {list(sample.shape)})")
    if sample.dtype == object:
        raise ToolError(f"sample {path} mixes types or has ragged rows; give one array")
    return sample


def _only_array(path: Path) -> np.ndarray:
    with np.load(path, allow_pickle=False) as archive:
        names = list(archive.files)
        if len(names) != 1:
            raise ToolError(f"sample {path} holds {len(names)} arrays ({names}); give one")
        return np.asarray(archive[names[0]])


def _read_csv(path: Path) -> np.ndarray:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.reader(handle) if row]
    if rows and not any(_is_number(cell) for cell in rows[0]):
        rows = rows[1:]
    widths = {len(row) for row in rows}
    if len(widths) > 1:
        raise ToolError(f"sample {path} has rows of different lengths {sorted(widths)}")
    if all(_is_number(cell) for row in rows for cell in row):
        return np.asarray(rows, dtype=np.float64)
    return np.asarray(rows, dtype=str)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True
