"""Features for drift: each input is a feature; an input of shape [N, F] is F features
``x[0]`` ... ``x[F-1]``. Read from a training file (Parquet, CSV, .npz) or from a
collection directory (its Parquet partitions, inputs only)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DriftInputError", "load_baseline_samples", "load_collected", "split_features"]


class DriftInputError(ValueError):
    """A baseline or collection that cannot be compared, with the reason."""


def split_features(name: str, values: np.ndarray) -> dict[str, np.ndarray]:
    """One column per feature: a 1-D array stays ``name``; [N, F] becomes ``name[i]``."""
    if values.ndim <= 1:
        return {name: values.reshape(-1)}
    flat = values.reshape(values.shape[0], int(np.prod(values.shape[1:])))
    if flat.shape[1] == 1:
        return {name: flat[:, 0]}
    return {f"{name}[{i}]": flat[:, i] for i in range(flat.shape[1])}


def _column_to_array(column: Any) -> np.ndarray:
    import pyarrow as pa

    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        rows = column.to_pylist()
        return np.array([r for r in rows if r is not None])
    if pa.types.is_string(column.type) or pa.types.is_binary(column.type):
        return np.array(column.to_pylist(), dtype=object)
    return column.to_numpy(zero_copy_only=False)


def load_baseline_samples(path: Path) -> dict[str, np.ndarray]:
    """Feature samples from a training file: .npz (one array per input name), .csv
    (one column per feature) or .parquet (a column per input or per feature)."""
    if not path.exists():
        raise DriftInputError(f"baseline {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    features: dict[str, np.ndarray] = {}
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            for name in data.files:
                features.update(split_features(name, np.asarray(data[name])))
    elif suffix == ".csv":
        import pyarrow.csv as pacsv

        table = pacsv.read_csv(path)
        for name in table.column_names:
            features[name] = _column_to_array(table.column(name))
    elif suffix in (".parquet", ".pq") or path.is_dir():
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        for name in table.column_names:
            features.update(split_features(name, _column_to_array(table.column(name))))
    else:
        raise DriftInputError(
            f"baseline {str(path)!r}: expected .npz, .csv, .parquet or a baseline profile .json"
        )
    if not features:
        raise DriftInputError(f"baseline {str(path)!r} holds no features")
    return features


def _parse_time(text: str | None) -> dt.datetime | None:
    if text is None:
        return None
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise DriftInputError(f"{text!r} is not an ISO 8601 date or time") from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def load_collected(
    directory: Path,
    *,
    model: str | None = None,
    version: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> dict[str, np.ndarray]:
    """Input features of the successful requests collected under ``directory``."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    if not directory.is_dir():
        raise DriftInputError(f"collection {str(directory)!r} is not a directory")
    files = sorted(directory.glob("model=*/version=*/date=*/*.parquet"))
    if model is not None:
        files = [f for f in files if f.parts[-4] == f"model={model}"]
    if version is not None:
        files = [f for f in files if f.parts[-3] == f"version={version}"]
    if not files:
        raise DriftInputError(
            f"no collected Parquet under {str(directory)!r}"
            + (f" for model {model!r}" if model else "")
            + (f" version {version}" if version else "")
            + " (expected model=<m>/version=<v>/date=<d>/*.parquet)"
        )
    models = {f.parts[-4] for f in files}
    if len(models) > 1:
        raise DriftInputError(
            f"{str(directory)!r} holds several models ({', '.join(sorted(models))}); "
            "choose one with --model"
        )
    import pyarrow.parquet as pq

    inputs: list[str] = []
    width: dict[str, int] = {}
    for f in files:
        schema = pq.read_schema(f)
        meta = schema.metadata or {}
        if b"sluice.columns" not in meta or "status" not in schema.names:
            raise DriftInputError(
                f"{str(f)!r} is not a Sluice collection file (no sluice.columns metadata)"
            )
        for column, info in json.loads(meta[b"sluice.columns"]).items():
            if info["kind"] == "input" and info["type"] != "sha256" and column not in inputs:
                inputs.append(column)
                width[column] = int(np.prod(info["dims"])) if -1 not in info["dims"] else 1
    dataset = ds.dataset([str(f) for f in files], format="parquet")
    expr = pc.field("status") == "ok"
    start, end = _parse_time(since), _parse_time(until)
    if start is not None:
        expr = expr & (pc.field("timestamp") >= start)
    if end is not None:
        expr = expr & (pc.field("timestamp") < end)
    table = dataset.to_table(columns=inputs, filter=expr)
    features: dict[str, np.ndarray] = {}
    for name in inputs:
        values = _column_to_array(table.column(name))
        if values.size == 0:  # nothing in the window: still one (empty) column per feature
            values = values.reshape(0, width[name])
        features.update(split_features(name, values))
    return features
