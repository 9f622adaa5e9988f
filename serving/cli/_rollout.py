"""``sluice rollout start|status|abort``: a canary rollout on a running server.

``start`` sends the rollout through the admin API (``POST /v2/models/MODEL/rollout``);
the server then steps the traffic split by itself, each interval advancing, holding or
rolling back; ``status`` prints where it is and every decision with its reason.
"""

from __future__ import annotations

import argparse
from typing import Any

from serving.cli._errors import CommandError
from serving.cli._server_http import DEFAULT_URL, request_json
from serving.settings import env_default

__all__ = ["add_commands"]


def add_commands(sub: Any) -> None:
    rollout = sub.add_parser("rollout", help="canary rollouts: start, status, abort")
    actions = rollout.add_subparsers(dest="action", required=True, metavar="ACTION")
    start = actions.add_parser("start", help="roll version --to out step by step")
    start.add_argument("model")
    start.add_argument("--to", type=int, required=True, metavar="VERSION")
    start.add_argument("--baseline", type=int, default=0, metavar="VERSION",
                       help="the version to compare with (default: the highest other ready one)")  # fmt: skip
    start.add_argument("--steps", default="5,25,50,100", help="percent at each step")
    start.add_argument("--interval", default="60s", help="time per step (60s, 2m, 500ms)")
    start.add_argument("--max-error-rate", type=float, default=0.01, metavar="R")
    start.add_argument("--max-p99-ratio", type=float, default=1.5, metavar="X")
    agreement = start.add_mutually_exclusive_group()
    agreement.add_argument("--min-agreement", type=float, metavar="A",
                           help="least argmax agreement with the baseline (needs --shadow-first)")  # fmt: skip
    agreement.add_argument("--max-output-diff", type=float, metavar="D",
                           help="largest absolute output difference (needs --shadow-first)")  # fmt: skip
    start.add_argument("--min-samples", type=int, default=50, metavar="N",
                       help="fewest candidate requests an interval needs to decide")  # fmt: skip
    start.add_argument("--shadow-first", action="store_true",
                       help="a first step of shadow copies only, comparing outputs")  # fmt: skip
    start.add_argument("--promote-alias", default="", metavar="ALIAS")
    start.add_argument("--registry", default="", metavar="URI")
    start.add_argument("--url", default=env_default("URL", DEFAULT_URL))
    start.set_defaults(run=_start)
    for name, run in (("status", _status), ("abort", _abort)):
        action = actions.add_parser(name, help=f"{name} the model's rollout")
        action.add_argument("model")
        action.add_argument("--url", default=env_default("URL", DEFAULT_URL))
        action.set_defaults(run=run)


def _start(args: argparse.Namespace) -> None:
    from serving.rollout import RolloutSpec

    body: dict[str, Any] = {
        "to": args.to,
        "baseline": args.baseline,
        "steps": args.steps,
        "interval": args.interval,
        "max_error_rate": args.max_error_rate,
        "max_p99_ratio": args.max_p99_ratio,
        "min_agreement": args.min_agreement,
        "max_output_diff": args.max_output_diff,
        "min_samples": args.min_samples,
        "shadow_first": args.shadow_first,
        "promote_alias": args.promote_alias,
        "registry": args.registry,
    }
    try:
        RolloutSpec.from_json(body)  # refuse a bad spec here, before any request
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    _print(request_json("POST", args.url, f"/v2/models/{args.model}/rollout", body))


def _status(args: argparse.Namespace) -> None:
    _print(request_json("GET", args.url, f"/v2/models/{args.model}/rollout"))


def _abort(args: argparse.Namespace) -> None:
    _print(request_json("POST", args.url, f"/v2/models/{args.model}/rollout/abort", {}))


def _print(status: dict[str, Any]) -> None:
    step = status["step"]
    where = "shadow copies" if step == "shadow" else f"{step}%"
    print(f"model {status['model']}: version {status['candidate']} against "
          f"{status['baseline']}: {status['state']} (at {where})")  # fmt: skip
    for entry in status["history"]:
        print(f"  step {entry['step']}: {entry['action']}: {entry['reason']}")
