"""Ensembles (Triton's ``platform: "ensemble"``): a DAG of other models, served as one.

``serving.backends`` selects this package for a config with ``platform: "ensemble"``;
``create_runtime`` validates the steps (``build_steps``) and returns the runtime that
runs them (``EnsembleRuntime``). A version directory of an ensemble holds no file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from serving.ensemble._graph import Spec, Step, build_steps, specs_of
from serving.ensemble._runtime import EnsembleRuntime
from serving.errors import NotFound

__all__ = ["EnsembleRuntime", "Spec", "Step", "build_steps", "create_runtime", "specs_of"]


def create_runtime(path: Path, config: Any, context: Any) -> EnsembleRuntime:
    """The runtime of one ensemble version; refuses an invalid ensemble naming the step
    and tensor. Composing models are looked up loaded, else in the repository."""
    from serving.ensemble._runtime import create

    repository = Path(context.settings.model_repository)

    def composing(name: str, version: int) -> Any:
        if context.models is not None:
            try:
                return context.models(name, str(version) if version > 0 else "").config
            except Exception:
                pass  # not loaded (yet): its config from the repository
        from serving.config import describe_model_dir

        if not (repository / name).is_dir():
            raise NotFound(f"unknown model '{name}'")
        return describe_model_dir(repository / name, context.settings.default_max_batch_size)

    steps = build_steps(config, composing)
    max_inflight = int(config.ensemble_scheduling.max_inflight_requests)
    return create(config.name, steps, context, max_inflight)
