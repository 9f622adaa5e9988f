"""``sluice profile MODEL_DIR|--url ...``: parse, sweep with a progress line, print the
table and the recommendation, point at the files written."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["add_commands"]


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def _seconds(text: str) -> float:
    return float(text[:-1]) if text.endswith("s") else float(text)


def add_commands(sub: Any) -> None:
    prof = sub.add_parser(
        "profile",
        help="sweep configurations x loads on a real server; recommend CPU, memory and config",
    )
    prof.add_argument("source", nargs="?", metavar="MODEL_DIR|REF",
                      help="a model directory, or a registry reference to pull and profile")  # fmt: skip
    prof.add_argument("--input", type=Path, metavar="FILE.npz|.json|.npy",
                      help="request rows (default: random rows from the config)")  # fmt: skip
    prof.add_argument("--slo-p99-ms", type=float, help="p99 latency objective")
    prof.add_argument("--instances", type=_ints, default=[1], metavar="1,2")
    prof.add_argument("--max-batch-sizes", type=_ints, default=[1, 8, 32], metavar="1,8,32")
    prof.add_argument("--queue-delays-us", type=_ints, default=[0, 500, 2000], metavar="0,500")
    prof.add_argument("--concurrency", type=_ints, default=None, metavar="1,2,4",
                      help="closed-loop points (default 1,2,4,8,16,32 without --rates)")  # fmt: skip
    prof.add_argument("--rates", type=_floats, default=[], metavar="100,200",
                      help="open-loop points, requests/s (Poisson arrivals)")  # fmt: skip
    prof.add_argument("--duration", type=_seconds, default=10.0, metavar="10s",
                      help="measured seconds per point (default %(default)s)")  # fmt: skip
    prof.add_argument("--warmup", type=_seconds, default=1.0, metavar="1s",
                      help="unmeasured seconds before each point (default %(default)s)")  # fmt: skip
    prof.add_argument("--url", help="measure this running server instead of starting one")
    prof.add_argument("--model", dest="model_name", help="with --url: the model to measure")
    prof.add_argument("--server-pid", type=int, help="with --url: read its CPU and RSS")
    prof.add_argument("--registry", metavar="URI",
                      help="record the result as sluice.profile.* tags on the version profiled "
                      "(REF is pulled from here; without it from $SLUICE_REGISTRY)")  # fmt: skip
    prof.add_argument("--out", type=Path, default=Path("profile"), metavar="DIR",
                      help="where profile.json/.csv/.png and config.pbtxt go (default %(default)s)")  # fmt: skip
    prof.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from rich.console import Console

    from serving.convert import ToolError
    from serving.profile import ProfileRequest, print_table, profile_source, run_profile

    console = Console(stderr=True)
    concurrency = args.concurrency
    if concurrency is None:
        concurrency = [] if args.rates else [1, 2, 4, 8, 16, 32]
    request = ProfileRequest(
        model_dir=None,
        out=args.out,
        instances=args.instances,
        max_batch_sizes=args.max_batch_sizes,
        queue_delays_us=args.queue_delays_us,
        concurrency=concurrency,
        rates=args.rates,
        duration=args.duration,
        warmup=args.warmup,
        slo_p99_ms=args.slo_p99_ms,
        input_path=args.input,
        url=args.url,
        model_name=args.model_name,
        server_pid=args.server_pid,
    )
    if args.url and (args.source or args.registry):
        raise ToolError("--url measures a running server: give no MODEL_DIR|REF or --registry")
    if not args.url and not args.source:
        raise ToolError("give a model directory, a registry reference or --url")
    with console.status("profiling") as status:
        step = lambda text: status.update(f"profiling {text}")  # noqa: E731
        if args.url:
            report = run_profile(request, step)
        else:
            report = profile_source(request, args.source, args.registry, step)
    out = Console()
    print_table(report, out)
    for warning in report["warnings"]:
        out.print(f"warning: {warning}")
    rec = report["recommendation"]
    best = report["points"][rec["point"]]
    out.print(f"rule: {report['rule']}")
    if rec["throughput_per_core"] is None:
        asked = "CPU and memory not measured: no pod request"
    else:
        asked = (f"{rec['throughput_per_core']:.1f}/s per core; request cpu "
                 f"{rec['cpu_request_cores']}, memory {rec['memory_request']}")  # fmt: skip
    out.print(
        f"recommended: {best['configuration'] or 'as running'} at {best['load']}: "
        f"{best['throughput']:.1f}/s, p99 {best['latency_ms']['p99']:.3f} ms, {asked}"
    )
    if "rerun" in report:
        rerun = report["rerun"]
        held = report["rerun_slo_held"]
        verdict = "" if held is None else (" - SLO held" if held else " - SLO NOT held")
        out.print(f"re-run: {rerun['throughput']:.1f}/s, p99 "
                  f"{rerun['latency_ms']['p99']:.3f} ms{verdict}")  # fmt: skip
    for kind, path in report["outputs"].items():
        if path:
            out.print(f"{kind}: {path}")
    if "registry_tags" in report:
        where = report["registry_tags"]
        out.print(f"tagged {where['name']} version {where['version']} in {where['registry']}: "
                  f"{len(where['tags'])} sluice.profile.* tags")  # fmt: skip
