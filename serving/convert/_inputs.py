"""Inputs for a served model: from a file the user gives, or made from its config.

Random inputs follow the config's dims and datatypes; they are valid tensors, but only
the user knows a model's valid range (token ids, categories, images), so the warnings
say which inputs were guessed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from serving.config.model_config_pb2 import ModelConfig
from serving.convert._refusal import ToolError
from serving.convert._sample import load_sample
from serving.datatypes import by_config_name

__all__ = ["ModelInputs", "model_inputs"]

VARIABLE_DIM = 8  # the length given to a -1 dim that is not the batch


class ModelInputs:
    """Named arrays, batch first, plus what had to be guessed."""

    __slots__ = ("arrays", "warnings")

    def __init__(self, arrays: dict[str, np.ndarray], warnings: list[str]) -> None:
        self.arrays = arrays
        self.warnings = warnings

    @property
    def rows(self) -> int:
        return len(next(iter(self.arrays.values())))


def model_inputs(
    config: ModelConfig, path: Path | None = None, *, rows: int = 64, seed: int = 0
) -> ModelInputs:
    """The model's inputs from ``path`` (.npz named per input; .npy/.json/.csv for a
    single-input model) or, without it, ``rows`` random rows from the config."""
    if not config.input:
        raise ToolError(f"model {config.name!r} declares no inputs")
    if path is not None:
        return ModelInputs(_from_file(config, Path(path)), [])
    return _random(config, rows, seed)


def _from_file(config: ModelConfig, path: Path) -> dict[str, np.ndarray]:
    names = [i.name for i in config.input]
    if path.suffix.lower() == ".npz":
        if not path.is_file():
            raise ToolError(f"input file {path} does not exist")
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: np.asarray(archive[name]) for name in archive.files}
        if len(names) == 1 and len(arrays) == 1 and names[0] not in arrays:
            arrays = {names[0]: next(iter(arrays.values()))}
        missing = [n for n in names if n not in arrays]
        if missing:
            raise ToolError(f"{path} has no array for input(s) {missing}; it has {list(arrays)}")
    elif len(names) == 1:
        arrays = {names[0]: load_sample(path)}
    else:
        raise ToolError(f"model {config.name!r} has {len(names)} inputs {names}: give an .npz "
                        "with one array per input name")  # fmt: skip
    result: dict[str, np.ndarray] = {}
    for spec in config.input:
        array = arrays[spec.name]
        datatype = by_config_name(model_type(spec.data_type))
        expected = len(spec.dims) + (1 if config.max_batch_size > 0 else 0)
        if array.ndim == expected - 1 and config.max_batch_size > 0:
            array = array[np.newaxis]
        if array.ndim != expected or len(array) == 0:
            raise ToolError(
                f"{path}: input {spec.name!r} has shape {list(array.shape)}; the model takes "
                f"{_shape_text(config, list(spec.dims))}"
            )
        try:
            result[spec.name] = array.astype(datatype.numpy)
        except (ValueError, TypeError) as exc:
            raise ToolError(f"{path}: input {spec.name!r} is not {datatype.name}: {exc}") from None
    return result


def _random(config: ModelConfig, rows: int, seed: int) -> ModelInputs:
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}
    warnings: list[str] = []
    for spec in config.input:
        datatype = by_config_name(model_type(spec.data_type))
        dims = [VARIABLE_DIM if d < 0 else d for d in spec.dims]
        if any(d < 0 for d in spec.dims):
            warnings.append(f"input {spec.name!r}: variable dims set to {VARIABLE_DIM}")
        shape = ([rows] if config.max_batch_size > 0 else []) + dims
        if datatype.is_bytes:
            words = rng.integers(0, 1000, size=shape)
            arrays[spec.name] = np.vectorize(lambda w: f"w{w}".encode())(words).astype(object)
            warnings.append(f"input {spec.name!r} is BYTES: random words, unlikely to be valid")
        elif datatype.numpy.kind == "f" and datatype.name != "BF16":
            arrays[spec.name] = rng.standard_normal(shape).astype(datatype.numpy)
        elif datatype.numpy.kind == "b":
            arrays[spec.name] = rng.integers(0, 2, size=shape).astype(bool)
        else:
            arrays[spec.name] = rng.integers(0, 10, size=shape).astype(datatype.numpy)
            warnings.append(
                f"input {spec.name!r} is {datatype.name}: random values 0-9, its valid range "
                "is unknown (give --input)"
            )
    return ModelInputs(arrays, warnings)


def model_type(data_type: int) -> str:
    from serving.config.model_config_pb2 import DataType

    return DataType.Name(data_type)  # type: ignore[arg-type]


def _shape_text(config: ModelConfig, dims: list[int]) -> str:
    return str((["batch"] if config.max_batch_size > 0 else []) + dims)
