"""Warmup samples: the synthetic requests a model runs before it is marked ready.

With ``model_warmup`` in the config, each entry becomes one sample, as Triton builds them:
``zero_data``, ``random_data`` (BYTES treated as zero data) or ``input_data_file`` read from the
model's ``warmup/`` directory (raw row-major bytes; BYTES elements as 4-byte little-endian length
plus bytes). One sample has shape ``dims``; when ``max_batch_size > 0`` it is repeated
``batch_size`` times along a leading batch dimension. ``count`` 0 means once.

Without ``model_warmup`` one zero sample is derived from the config inputs: batch 1, every
variable dimension 1, and BYTES elements ``b"0"`` (a non-empty string that tokenizers and
string-to-number ops both accept).
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np

from serving.datatypes import BF16_DTYPE, DataType, by_config_name
from serving.errors import InvalidArgument

__all__ = ["WarmupSample", "warmup_samples"]

WarmupSample = tuple[str, int, dict[str, np.ndarray]]

DERIVED_NAME = "sluice_zero_sample"
DERIVED_BYTES = b"0"
_SEED = 0


def warmup_samples(config: Any, model_dir: Path | None = None) -> list[WarmupSample]:
    """``(name, count, inputs)`` for each warmup sample of ``config``.

    ``model_dir`` is needed only for ``input_data_file`` samples.
    """
    if not config.model_warmup:
        return [(DERIVED_NAME, 1, _derived_inputs(config))]
    known = {i.name: i for i in config.input}
    rng = np.random.default_rng(_SEED)
    samples: list[WarmupSample] = []
    for warmup in config.model_warmup:
        inputs: dict[str, np.ndarray] = {}
        for name, spec in sorted(warmup.inputs.items()):
            where = f"warmup sample {warmup.name!r} input {name!r}"
            dtype = _datatype(spec, where)
            if known and name not in known:
                raise InvalidArgument(f"{where}: the model has no such input")
            if known and known[name].data_type != spec.data_type:
                raise InvalidArgument(f"{where}: data_type differs from the model config")
            dims = tuple(int(d) for d in spec.dims)
            if any(d < 0 for d in dims):
                raise InvalidArgument(f"{where}: dims must be fully specified, got {list(dims)}")
            sample = _sample(spec, dtype, dims, rng, model_dir, where)
            if config.max_batch_size > 0:
                batch = max(1, warmup.batch_size)
                sample = np.repeat(sample[np.newaxis, ...], batch, axis=0)
            inputs[name] = sample
        samples.append((warmup.name, max(1, warmup.count), inputs))
    return samples


def _datatype(spec: Any, where: str) -> DataType:
    enum = spec.DESCRIPTOR.fields_by_name["data_type"].enum_type
    name = enum.values_by_number[spec.data_type].name
    if name == "TYPE_INVALID":
        raise InvalidArgument(f"{where}: data_type is missing")
    try:
        return by_config_name(name)
    except InvalidArgument as exc:
        raise InvalidArgument(f"{where}: {exc.message}") from None


def _derived_inputs(config: Any) -> dict[str, np.ndarray]:
    inputs = {}
    for spec in config.input:
        dtype = _datatype(spec, f"input {spec.name!r}")
        dims = tuple(1 if d < 0 else int(d) for d in spec.dims)
        if config.max_batch_size > 0:
            dims = (1, *dims)
        if dtype.is_bytes:
            inputs[spec.name] = _filled(dims, DERIVED_BYTES)
        else:
            inputs[spec.name] = np.zeros(dims, dtype=dtype.numpy)
    return inputs


def _sample(
    spec: Any,
    dtype: DataType,
    dims: tuple[int, ...],
    rng: np.random.Generator,
    model_dir: Path | None,
    where: str,
) -> np.ndarray:
    choice = spec.WhichOneof("input_data_type")
    if choice == "input_data_file":
        return _from_file(spec.input_data_file, dtype, dims, model_dir, where)
    if choice == "random_data" and spec.random_data and not dtype.is_bytes:
        return _random(dtype, dims, rng)
    if choice not in ("zero_data", "random_data"):
        raise InvalidArgument(f"{where}: set one of zero_data, random_data or input_data_file")
    if dtype.is_bytes:
        return _filled(dims, b"")
    return np.zeros(dims, dtype=dtype.numpy)


def _filled(dims: tuple[int, ...], value: bytes) -> np.ndarray:
    array = np.empty(dims, dtype=object)
    array.fill(value)
    return array


def _random(dtype: DataType, dims: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    if dtype.name == "BOOL":
        return rng.integers(0, 2, size=dims).astype(bool)
    if dtype.name == "BF16":
        words = rng.random(dims, dtype=np.float32).view(np.uint32) >> 16
        return words.astype(BF16_DTYPE)
    if dtype.numpy.kind == "f":
        return rng.random(dims).astype(dtype.numpy)
    return rng.integers(0, 100, size=dims).astype(dtype.numpy)


def _from_file(
    relative: str, dtype: DataType, dims: tuple[int, ...], model_dir: Path | None, where: str
) -> np.ndarray:
    if model_dir is None:
        raise InvalidArgument(f"{where}: input_data_file needs the model directory")
    base = (Path(model_dir) / "warmup").resolve()
    path = (base / relative).resolve()
    if not path.is_relative_to(base):
        raise InvalidArgument(f"{where}: input_data_file {relative!r} is outside warmup/")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidArgument(f"{where}: cannot read {path}: {exc.strerror}") from None
    count = int(np.prod(dims, dtype=np.int64))
    if dtype.is_bytes:
        return _parse_bytes(data, count, where).reshape(dims)
    expected = count * dtype.itemsize
    if len(data) != expected:
        raise InvalidArgument(f"{where}: {path} holds {len(data)} bytes, expected {expected}")
    return np.frombuffer(data, dtype=dtype.numpy).reshape(dims).copy()


def _parse_bytes(data: bytes, count: int, where: str) -> np.ndarray:
    out = np.empty(count, dtype=object)
    offset = 0
    for i in range(count):
        if offset + 4 > len(data):
            raise InvalidArgument(f"{where}: file ends before element {i} of {count}")
        (length,) = struct.unpack_from("<I", data, offset)
        offset += 4
        if offset + length > len(data):
            raise InvalidArgument(f"{where}: element {i} runs past the end of the file")
        out[i] = data[offset : offset + length]
        offset += length
    if offset != len(data):
        raise InvalidArgument(f"{where}: {len(data) - offset} bytes left after {count} elements")
    return out
