"""Python models (``backend: "python"``): ``model.py`` run in worker processes.

Registered in ``serving.backends``; the loader calls ``create_runtime`` for a version
whose config names the Python backend. Loading one runs its code, so it is refused
unless the server runs with ``--allow-python-models`` (docs/python-models.md).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from serving.backends import BackendContext
from serving.errors import PermissionDenied, Unavailable
from serving.python_backend._env import (
    BuildFailed,
    Environment,
    build_environment,
    built_environment,
    requirements_of,
)

__all__ = [
    "BuildFailed",
    "Environment",
    "build_environment",
    "built_environment",
    "create_runtime",
    "requirements_of",
]

log = logging.getLogger("sluice.python")


def create_runtime(model_file: Path, config: Any, context: BackendContext) -> Any:
    """The ``PythonRuntime`` of one version (its workers started and loaded)."""
    from serving.python_backend._runtime import PythonRuntime

    settings = context.settings
    if not settings.allow_python_models:
        raise PermissionDenied(
            f"model '{context.name}' is a Python model: loading it runs its model.py, which "
            "Sluice does only when started with --allow-python-models"
        )
    model_dir = model_file.parent.parent
    requirements = requirements_of(model_dir, context.version)
    python = Path(sys.executable)
    parameters: dict[str, str] = {}
    if requirements is not None:
        env = built_environment(requirements, settings.cache_dir)
        if env is None:
            if settings.python_env != "auto":
                raise Unavailable(
                    f"model '{context.name}' needs the environment of {requirements}, which is "
                    f"not built: run 'sluice env build {model_dir}' or serve with "
                    "--python-env auto"
                )
            log.info(
                "model '%s': building its Python environment from %s ...",
                context.name,
                requirements,
            )
            env = build_environment(
                requirements,
                settings.cache_dir,
                lambda line: log.info("model '%s': %s", context.name, line),
            )
        python = env.python
        parameters = {"python_env": str(env.path), "python_env_lock": ",".join(env.locked())}
    return PythonRuntime(model_file, config, context, python, parameters)
