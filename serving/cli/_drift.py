"""``sluice drift`` and ``sluice drift profile``: the monitoring package's drift commands,
mounted as a command family (the parser and the run are ``serving.monitoring``'s)."""

from __future__ import annotations

import argparse
from typing import Any

from serving.cli._errors import fail

__all__ = ["add_commands"]


def add_commands(sub: Any) -> None:
    from serving.monitoring import add_drift_parser

    add_drift_parser(sub).set_defaults(run=_run)


def _run(args: argparse.Namespace) -> None:
    """Exit 0, 3 on drift with --fail-on-drift, 2 for input that cannot be compared."""
    from serving.monitoring import run_drift

    try:
        status = run_drift(args)
    except (ValueError, OSError) as exc:  # DriftInputError and EventsConfigError included
        fail(str(exc), 2)
    if status:
        raise SystemExit(status)
