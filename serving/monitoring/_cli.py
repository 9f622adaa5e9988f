"""``sluice drift`` and ``sluice drift profile``: the drift commands, as one parser each
command family module can mount (``add_drift_parser``) and run (``run_drift``)."""

from __future__ import annotations

import argparse
import json
import socket
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_drift_parser", "main", "run_drift"]


def add_drift_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "drift", help="compare collected data with training data (docs/monitoring.md)"
    )
    p.add_argument("--baseline", type=Path, help="training data (.parquet, .csv, .npz) or profile .json")  # fmt: skip
    p.add_argument("--current", type=Path, help="the collection directory (--collect DEST)")
    p.add_argument("--model", help="the collected model to compare")
    p.add_argument("--version", help="only this version's data")
    p.add_argument("--since", help="ISO 8601 time (UTC unless it says); data from then on")
    p.add_argument("--until", help="ISO 8601 time; data before it")
    p.add_argument("--alpha", type=float, default=0.05, help="family-wise significance (0.05)")
    p.add_argument("--out", type=Path, help="write the JSON report here")
    p.add_argument("--html", type=Path, help="write the HTML report here")
    p.add_argument("--fail-on-drift", action="store_true", help="exit 3 when a feature drifted")
    p.add_argument("--events", type=Path, help="send io.sluice.drift.detected to these sinks")
    p.add_argument("action", nargs="*", help="'profile TRAIN -o baseline.json' writes a profile")
    p.add_argument("-o", "--output", type=Path, help="the profile file (with 'profile')")
    return p


def _profile(args: argparse.Namespace) -> int:
    from serving.monitoring._drift import profile_features
    from serving.monitoring._features import load_baseline_samples

    if len(args.action) != 2 or args.output is None:
        raise ValueError("usage: sluice drift profile TRAIN -o baseline.json")
    profile = profile_features(load_baseline_samples(Path(args.action[1])))
    args.output.write_text(json.dumps(profile, indent=1))
    print(f"{len(profile['features'])} features profiled into {args.output}")
    return 0


def run_drift(args: argparse.Namespace) -> int:
    """Returns the exit status: 0, or 3 with --fail-on-drift when a feature drifted."""
    from serving.monitoring._drift import compare, load_baseline
    from serving.monitoring._features import load_collected

    if args.action:
        if args.action[0] != "profile":
            raise ValueError(f"unknown drift action {args.action[0]!r}; did you mean 'profile'?")
        return _profile(args)
    if args.baseline is None or args.current is None:
        raise ValueError("sluice drift needs --baseline TRAIN and --current COLLECTED")
    baseline = load_baseline(args.baseline)
    current = load_collected(
        args.current, model=args.model, version=args.version, since=args.since, until=args.until
    )
    report = compare(baseline, current, alpha=args.alpha)
    report["model"], report["version"] = args.model, args.version
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=1))
    if args.html is not None:
        from serving.monitoring._html import render_html

        args.html.write_text(render_html(report, baseline, current))
    for score in report["features"]:
        verdict = "too small" if score["too_small"] else ("DRIFT" if score["drifted"] else "ok")
        stat = "" if score["statistic"] is None else f"{score['statistic']:.4g}"
        print(f"{score['name']:<24} {score['method']:<5} {stat:>10}  {verdict}")
    drifted = report["drifted_features"]
    print(f"drifted: {', '.join(drifted) if drifted else 'none'}")
    if drifted and args.events is not None:
        from serving.monitoring._events import EventBus, EventsConfig

        bus = EventBus(EventsConfig.load(args.events), f"/sluice/{socket.gethostname()}/drift")
        bus.publish(
            "io.sluice.drift.detected",
            {"model": args.model, "version": args.version, "features": drifted,
             "scores": [s for s in report["features"] if s["name"] in drifted]},
            subject=args.model or "",
        )  # fmt: skip
        bus.deliver_before_exit()
    return 3 if drifted and args.fail_on_drift else 0


def main(argv: list[str] | None = None) -> int:
    """``python -m serving.monitoring drift ...``."""
    parser = argparse.ArgumentParser(prog="sluice")
    sub = parser.add_subparsers(dest="command", required=True)
    add_drift_parser(sub)
    args = parser.parse_args(argv)
    from serving.monitoring._features import DriftInputError

    try:
        return run_drift(args)
    except (DriftInputError, ValueError, OSError) as exc:
        print(f"sluice: error: {exc}", file=sys.stderr)
        return 2
