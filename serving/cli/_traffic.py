"""``sluice traffic set|show``: a model's traffic split on a running server.

``sluice traffic set MODEL 1=80 2=20 [--shadow 3=10] [--sticky header:x-user-id]`` sends
the split through the admin API (``POST /v2/models/MODEL/traffic``, admin scope);
``sluice traffic set MODEL --clear`` goes back to the config's split (or the highest
version); ``sluice traffic show MODEL`` prints the split in force and the per-arm counts.
"""

from __future__ import annotations

import argparse
from typing import Any

from serving.cli._errors import CommandError
from serving.cli._server_http import DEFAULT_URL, request_json
from serving.settings import env_default

__all__ = ["add_commands"]


def add_commands(sub: Any) -> None:
    traffic = sub.add_parser("traffic", help="show or set a model's traffic split")
    actions = traffic.add_subparsers(dest="action", required=True, metavar="ACTION")
    set_ = actions.add_parser("set", help="weights per version, shadows, the sticky key")
    set_.add_argument("model")
    set_.add_argument("weights", nargs="*", metavar="VERSION=WEIGHT")
    set_.add_argument("--shadow", action="append", default=[], metavar="VERSION=PERCENT",
                      help="copy PERCENT%% of requests to VERSION, answers discarded; repeatable")  # fmt: skip
    set_.add_argument("--sticky", default="", metavar="header:NAME|parameter:NAME",
                      help="keep each value of this request key on one version")  # fmt: skip
    set_.add_argument("--clear", action="store_true",
                      help="drop the split set here: back to the config's (or the highest version)")  # fmt: skip
    set_.add_argument("--url", default=env_default("URL", DEFAULT_URL))
    set_.set_defaults(run=_set)
    show = actions.add_parser("show", help="the split in force and per-arm counts")
    show.add_argument("model")
    show.add_argument("--url", default=env_default("URL", DEFAULT_URL))
    show.set_defaults(run=_show)


def _set(args: argparse.Namespace) -> None:
    from serving.traffic import StickyKey, TrafficSplit, parse_shares

    if args.clear:
        if args.weights or args.shadow or args.sticky:
            raise CommandError("--clear takes no weights, --shadow or --sticky")
        body: dict[str, Any] = {}
    else:
        try:
            split = TrafficSplit(
                parse_shares(args.weights, "weights"),
                parse_shares(args.shadow, "--shadow"),
                StickyKey.parse(args.sticky) if args.sticky else None,
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if split.empty:
            raise CommandError("give weights (1=80 2=20), --shadow, or --clear")
        body = split.to_json()
    _print(request_json("POST", args.url, f"/v2/models/{args.model}/traffic", body))


def _show(args: argparse.Namespace) -> None:
    _print(request_json("GET", args.url, f"/v2/models/{args.model}/traffic"))


def _print(shown: dict[str, Any]) -> None:
    split = shown["split"]
    weights = " ".join(f"{v}={w}" for v, w in split["traffic"].items()) or "highest ready version"
    print(f"model {shown['model']}: {weights}  (source: {shown['source'] or 'default'})")
    if split["shadow"]:
        print("shadow: " + " ".join(f"{v}={p}%" for v, p in split["shadow"].items()))
    if split["sticky"]:
        print(f"sticky: {split['sticky']}")
    print(f"ready: {', '.join(shown['ready']) or 'none'}")
    print("ARM      VERSION  REQUESTS  ERRORS  P99_MS    SHADOW")
    for arm in ("primary", "shadow"):
        for version, counts in shown["arms"][arm].items():
            extra = ""
            if arm == "shadow":
                extra = f"sent={counts.get('sent', 0)} dropped={counts.get('dropped', 0)}"
                if "agreement" in counts:
                    extra += f" agreement={counts['agreement']:.4f}"
                if "max_abs_diff" in counts:
                    extra += f" max_abs_diff={counts['max_abs_diff']:.3g}"
            p99 = counts.get("p99_ms")
            print(f"{arm:<8} {version:<8} {counts['requests']:<9} {counts['errors']:<7} "
                  f"{'' if p99 is None else f'{p99:.3f}':<9} {extra}")  # fmt: skip
