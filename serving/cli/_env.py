"""``sluice env build``: a Python model's environment, from its requirements.txt."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from serving.cli._errors import CommandError

__all__ = ["add_commands"]


def add_commands(sub: Any) -> None:
    env = sub.add_parser("env", help="Python model environments (docs/python-models.md)")
    actions = env.add_subparsers(dest="env_command", required=True, metavar="ACTION")
    build = actions.add_parser(
        "build", help="build the virtual environment of a model's requirements.txt (cached)"
    )
    build.add_argument("model_dir", type=Path, metavar="MODEL_DIR")
    build.add_argument(
        "--cache-dir",
        type=Path,
        default=os.environ.get("SLUICE_CACHE_DIR") or None,
        metavar="DIR",
        help="the server's --cache-dir (environments go under DIR/python-envs; "
        "default $SLUICE_CACHE_DIR, else ~/.cache/sluice)",
    )
    build.set_defaults(run=_build)


def _build(args: argparse.Namespace) -> None:
    from serving.python_backend import build_environment, requirements_of
    from serving.repository import scan_model_dir

    model_dir: Path = args.model_dir
    if not model_dir.is_dir():
        raise CommandError(f"{model_dir} is not a directory")
    found = {requirements_of(model_dir, v) for v in scan_model_dir(model_dir).versions}
    found.add(requirements_of(model_dir))
    files = sorted(str(f) for f in found if f is not None)
    if not files:
        raise CommandError(f"{model_dir} has no requirements.txt (in it or a version directory)")
    for requirements in files:
        env = build_environment(Path(requirements), args.cache_dir, print)
        print(f"{env.path}\n{env.lock}")
