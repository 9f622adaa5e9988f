"""``python -m benchmarks run|list``."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from benchmarks.scenarios import SCENARIOS

__all__ = ["main"]

DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Sluice's benchmark suite: Sluice beside MLServer, a fixed-answer gRPC "
        "ceiling and in-process ONNX Runtime; native codecs beside pure Python.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the scenarios")
    run = sub.add_parser("run", help="run scenarios (all by default)")
    run.add_argument(
        "--scenario", action="append", choices=sorted(SCENARIOS), metavar="NAME",
        help="a scenario to run (repeatable; default: all; see `list`)",
    )  # fmt: skip
    run.add_argument("--duration", type=float, default=None, help="seconds measured per load (15)")
    run.add_argument("--warmup", type=float, default=None, help="seconds of warm-up per load (3)")
    run.add_argument(
        "--out", type=Path, default=None,
        help="run directory (default: benchmarks/results/<timestamp>)",
    )  # fmt: skip
    run.add_argument(
        "--peers", nargs="*", default=["mlserver", "triton"],
        choices=["mlserver", "triton", "none"],
        help="peers to run beside Sluice (default: mlserver and triton; `--peers none` for "
        "Sluice alone)",
    )  # fmt: skip
    run.add_argument(
        "--client", action="append", choices=["own", "wrk", "h2load"], dest="clients",
        help="load generators (default: own; wrk for HTTP and h2load for gRPC when installed)",
    )  # fmt: skip
    run.add_argument(
        "--quick", action="store_true",
        help="a smoke run: 3 s loads, short warm-up and sweeps, 2 of MLServer's 4 configurations",
    )  # fmt: skip
    run.add_argument(
        "--mlserver-venv", type=Path, default=None,
        help="MLServer's virtualenv (default: benchmarks/.venv-mlserver, created on demand)",
    )  # fmt: skip
    run.add_argument(
        "--triton-venv", type=Path, default=None,
        help="Triton's virtualenv, on /usr/bin/python3.11 (default: benchmarks/.venv-triton, "
        "created on demand)",
    )  # fmt: skip
    return parser


def _list() -> int:
    width = max(len(n) for n in SCENARIOS)
    for name, s in SCENARIOS.items():
        print(f"{name.ljust(width)}  {s.description}")
    return 0


def _run(args: argparse.Namespace, argv: list[str]) -> int:
    from benchmarks.mlserver_peer import DEFAULT_VENV
    from benchmarks.plot import plot_latency_throughput
    from benchmarks.progress import Progress
    from benchmarks.report import (
        RATIO_HEADER,
        SCENARIO_HEADER,
        format_table,
        ratio_rows,
        render_markdown,
        scenario_rows,
    )
    from benchmarks.runner import Runner, RunOptions
    from benchmarks.triton_peer import DEFAULT_VENV as TRITON_VENV

    duration = args.duration if args.duration is not None else (3.0 if args.quick else 15.0)
    warmup = args.warmup if args.warmup is not None else (0.5 if args.quick else 3.0)
    # Absolute: peers run with their own working directories.
    out = (args.out or DEFAULT_OUT / time.strftime("%Y%m%d-%H%M%S")).resolve()
    options = RunOptions(
        scenarios=args.scenario or list(SCENARIOS),
        duration=duration,
        warmup=warmup,
        out=out,
        peers=[p for p in args.peers if p != "none"],
        clients=args.clients or ["own", "wrk", "h2load"],
        quick=args.quick,
        mlserver_venv=args.mlserver_venv or DEFAULT_VENV,
        triton_venv=args.triton_venv or TRITON_VENV,
        command="python -m benchmarks " + shlex.join(argv),
    )
    progress = Progress()
    report = Runner(options, progress).run()

    json_path = report.write_json(out / "results.json")
    md_path = out / "results.md"
    md_path.write_text(render_markdown(report))
    plot_path = plot_latency_throughput(report, out / "latency_throughput.png")

    print()
    if report.measurements:
        print(format_table(scenario_rows(report), SCENARIO_HEADER))
        print()
    print(format_table(ratio_rows(report), RATIO_HEADER))
    if report.skipped:
        print("\nskipped:")
        for line in report.skipped:
            print(f"  - {line}")
    print(f"\nwrote {json_path}\n      {md_path} (RESULTS.md-ready)")
    if plot_path:
        print(f"      {plot_path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    if args.command == "list":
        return _list()
    return _run(args, argv)
