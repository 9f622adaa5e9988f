"""``sluice edge ...``: the edge agent's commands (``sluice-edge``), from the main command.

The arguments go to ``edge_agent`` as they are (docs/edge.md); nothing of it loads until
the command runs.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_commands"]


def add_commands(sub: Any) -> None:
    edge = sub.add_parser(
        "edge",
        help="the edge agent: run, publish, status, keys, check-config (docs/edge.md)",
        add_help=False,
    )
    edge.add_argument("edge_args", nargs=argparse.REMAINDER, metavar="ARGS")
    edge.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> None:
    from edge_agent import main

    code = main(args.edge_args or ["--help"])
    if code:
        raise SystemExit(code)
