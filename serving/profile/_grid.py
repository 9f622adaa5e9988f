"""The configurations a profile sweeps, and the config.pbtxt each one is served with."""

from __future__ import annotations

import itertools
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from serving.config import format_config, load_model_config
from serving.config.model_config_pb2 import ModelConfig
from serving.convert import ToolError
from serving.errors import SluiceError

__all__ = ["Configuration", "LoadPoint", "base_config", "expand", "variant_config", "write_variant"]


@dataclass(frozen=True, slots=True, order=True)
class Configuration:
    instances: int
    max_batch_size: int
    queue_delay_us: int

    def label(self) -> str:
        return f"i{self.instances}-b{self.max_batch_size}-d{self.queue_delay_us}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class LoadPoint:
    """Closed loop at ``concurrency`` or open loop at ``rate`` requests per second."""

    mode: str  # "closed" | "open"
    value: float

    def label(self) -> str:
        return f"c{int(self.value)}" if self.mode == "closed" else f"r{self.value:g}"

    def to_json(self) -> dict[str, Any]:
        key = "concurrency" if self.mode == "closed" else "rate"
        return {"mode": self.mode, key: int(self.value) if self.mode == "closed" else self.value}


def base_config(model_dir: Path) -> tuple[ModelConfig, Path]:
    """The model's complete config and the newest version's model file."""
    versions = sorted(
        (int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()),
    ) if model_dir.is_dir() else []  # fmt: skip
    if not versions:
        raise ToolError(f"{model_dir} is not a model directory with a numeric version")
    onnx_path = model_dir / str(versions[-1]) / "model.onnx"
    try:
        return load_model_config(model_dir, onnx_path), onnx_path
    except SluiceError as exc:
        raise ToolError(f"{model_dir}: {exc.message}") from None


def expand(
    base: ModelConfig, instances: list[int], batches: list[int], delays: list[int]
) -> tuple[list[Configuration], list[str]]:
    """Every combination; a model that cannot batch is swept at max_batch_size 0 only."""
    notes: list[str] = []
    if base.max_batch_size == 0:
        if any(b > 0 for b in batches):
            notes.append("the model does not batch (max_batch_size 0): batch sizes not swept")
        batches, delays = [0], [0]
    bad = [n for n in instances if n < 1] + [b for b in batches if b < 0]
    bad += [d for d in delays if d < 0]
    if bad:
        raise ToolError(f"sweep values must be positive (instances) or >= 0, got {bad}")
    grid = [Configuration(*combo) for combo in itertools.product(instances, batches, delays)]
    return sorted(set(grid)), notes


def variant_config(base: ModelConfig, configuration: Configuration) -> ModelConfig:
    cfg = ModelConfig()
    cfg.CopyFrom(base)
    del cfg.instance_group[:]
    cfg.instance_group.add(count=configuration.instances, kind=base.instance_group[0].kind
                           if base.instance_group else 0)  # fmt: skip
    cfg.max_batch_size = configuration.max_batch_size
    if configuration.max_batch_size > 0:
        cfg.dynamic_batching.max_queue_delay_microseconds = configuration.queue_delay_us
        del cfg.dynamic_batching.preferred_batch_size[:]
    else:
        cfg.ClearField("dynamic_batching")
    for warmup in cfg.model_warmup:  # a warm-up may not outgrow the variant's batches
        warmup.batch_size = min(warmup.batch_size, max(configuration.max_batch_size, 1))
    return cfg


def write_variant(
    root: Path, base: ModelConfig, onnx_path: Path, configuration: Configuration
) -> Path:
    """A one-model repository under ``root`` serving ``onnx_path`` with the variant config."""
    repo = root / configuration.label()
    model_dir = repo / base.name
    (model_dir / "1").mkdir(parents=True)
    os.symlink(onnx_path.resolve(), model_dir / "1" / "model.onnx")
    cfg = variant_config(base, configuration)
    (model_dir / "config.pbtxt").write_text(format_config(cfg, "pbtxt"))
    try:
        load_model_config(model_dir, model_dir / "1" / "model.onnx")
    except SluiceError as exc:
        raise ToolError(f"configuration {configuration.label()}: {exc.message}") from None
    return repo
