"""``sluice serve``: its flags are the settings' (serving.settings), one per setting."""

from __future__ import annotations

import argparse
import importlib.util
import os
from typing import Any

from serving.cli._errors import CommandError
from serving.settings import add_arguments, settings_from

__all__ = ["add_commands"]

NO_RUNTIME = "no ONNX Runtime is installed: pip install 'sluice[cpu]' (or [gpu], [openvino])"


def add_commands(sub: Any) -> None:
    serve = sub.add_parser("serve", help="run the server on a model repository")
    add_arguments(serve)
    serve.set_defaults(run=_serve)


def _serve_registry(args: argparse.Namespace) -> str | None:
    """``--registry``, else (only when ``--model`` or ``$SLUICE_MODEL`` is given) the
    environment's default."""
    if args.registry or not (args.registry_models or os.environ.get("SLUICE_MODEL", "").split()):
        return args.registry or None
    from registry_client import RegistryError, default_registry_uri

    try:
        return default_registry_uri()
    except RegistryError:
        return None  # Settings says --model needs --registry


def _serve(args: argparse.Namespace) -> None:
    values = vars(args) | {"registry": _serve_registry(args)}
    try:
        settings = settings_from(values)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    # The server stacks import without it; the models would then all fail to load while
    # the server called itself ready.
    if importlib.util.find_spec("onnxruntime") is None:
        raise CommandError(NO_RUNTIME)
    try:
        if settings.workers > 1:  # a supervisor and N server processes
            from serving.workers import supervise

            supervise(settings)
        else:
            from serving.server import run

            run(settings)
    except OSError as exc:
        raise CommandError(str(exc)) from None
