"""``sluice config``: a model's complete config, derived from the ONNX graph where absent."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from serving.cli._errors import CommandError

__all__ = ["add_commands"]


def add_commands(sub: Any) -> None:
    config = sub.add_parser("config", help="print a model's complete config (derived where absent)")
    config.add_argument("model_dir", type=Path, metavar="MODEL_DIR")
    config.add_argument("--format", choices=["pbtxt", "json"], default="pbtxt")
    config.set_defaults(run=_config)


def _config(args: argparse.Namespace) -> None:
    from serving.config import describe_model_dir, format_config, padding_plan

    if not args.model_dir.is_dir():
        raise CommandError(f"{args.model_dir} is not a directory")
    config = describe_model_dir(args.model_dir)
    print(format_config(config, args.format), end="")
    # On stderr, so stdout stays a config Triton's tools parse.
    print(f"sluice: model '{config.name}' {padding_plan(config).explain()}", file=sys.stderr)
