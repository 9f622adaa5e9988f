"""The ``sluice`` command: its parser, assembled from the command families, and ``main``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from serving.cli import (
    _client,
    _config,
    _convert,
    _drift,
    _edge,
    _env,
    _health,
    _optimize,
    _profile,
    _registry,
    _rollout,
    _serve,
    _traffic,
)
from serving.cli._errors import CommandError, explain, fail

__all__ = ["main"]


def _version() -> str:
    from serving import __version__

    return __version__


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sluice",
        description="Serve ONNX models over the Open Inference Protocol (KServe V2), "
        "compatible with Triton clients and tools.",
    )
    parser.add_argument("--version", action="version", version=f"sluice {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for family in (_serve, _config, _client, _registry, _convert, _optimize, _profile, _traffic):
        family.add_commands(sub)
    _drift.add_commands(sub)
    _edge.add_commands(sub)
    _env.add_commands(sub)
    _health.add_commands(sub)
    _rollout.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    from serving.errors import SluiceError

    try:
        args.run(args)
    except CommandError as exc:
        fail(str(exc))
    except SluiceError as exc:
        fail(exc.message)
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except Exception as exc:  # a network failure, say: one line, not a traceback
        if (line := explain(exc, getattr(args, "url", "?"))) is not None:
            fail(line)
        raise
