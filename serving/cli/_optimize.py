"""``sluice optimize MODEL_DIR ...``: parse, optimize, check, measure, write, report."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

__all__ = ["add_commands"]


def add_commands(sub: Any) -> None:
    from serving.optimize import LEVELS, QUANTIZE_MODES

    opt = sub.add_parser(
        "optimize",
        help="graph-optimize, quantize or fp16 a model version; written only if accuracy holds",
    )
    opt.add_argument("model_dir", type=Path, metavar="MODEL_DIR")
    opt.add_argument("--version", type=int, help="the version to start from (default: newest)")
    opt.add_argument("--level", choices=LEVELS, help="ONNX Runtime graph optimization level")
    opt.add_argument("--quantize", choices=QUANTIZE_MODES, help="int8 quantization")
    opt.add_argument("--calibration", type=Path, metavar="X.npy",
                     help="rows that fix activation ranges (static)")  # fmt: skip
    opt.add_argument("--fp16", action="store_true", help="float16 weights (GPU targets)")
    opt.add_argument("--sample", type=Path, metavar="X.npy",
                     help="rows both models run on (default: random rows from the config)")  # fmt: skip
    opt.add_argument("--max-accuracy-drop", type=float, default=0.01,
                     help="largest drop allowed (default %(default)s; the rule is printed)")  # fmt: skip
    opt.add_argument("--measure-secs", type=float, default=1.0,
                     help="seconds per speed measurement (default %(default)s)")  # fmt: skip
    opt.add_argument("--json", action="store_true", help="print the report as JSON")
    opt.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from serving.optimize import OptimizeRequest, optimize_model

    report = optimize_model(
        OptimizeRequest(
            model_dir=args.model_dir,
            version=args.version,
            level=args.level,
            quantize=args.quantize,
            calibration=args.calibration,
            fp16=args.fp16,
            sample=args.sample,
            max_accuracy_drop=args.max_accuracy_drop,
            measure_seconds=args.measure_secs,
        )
    )
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
        return
    o, n = report.original, report.optimized
    print(f"{report.model} v{report.source_version} -> {'+'.join(report.steps)}")
    for diff in report.differences:
        print(f"  {diff.describe()} (drop {report.drops[diff.name]:.4g})")
    print(f"  batch 1: p50 {o.batch1_p50_ms:.3f} -> {n.batch1_p50_ms:.3f} ms, "
          f"speedup x{report.speedup_batch1:.2f}")  # fmt: skip
    print(f"  best batch: {o.best_rows_per_s:.0f} (batch {o.best_batch}) -> "
          f"{n.best_rows_per_s:.0f} rows/s (batch {n.best_batch}), "
          f"speedup x{report.speedup_best:.2f}")  # fmt: skip
    for warning in report.warnings:
        print(f"  warning: {warning}")
    assert report.written is not None
    print(f"wrote {report.written.path} (version {report.written.version})")
