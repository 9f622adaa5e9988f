"""``sluice convert sklearn|torch ...``: parse, convert, check, write, report."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_commands"]


def add_commands(sub: Any) -> None:
    convert = sub.add_parser(
        "convert",
        help="convert a scikit-learn or PyTorch model to ONNX, checked, as a new model version",
    )
    kinds = convert.add_subparsers(dest="framework", required=True, metavar="FRAMEWORK")
    sk = kinds.add_parser("sklearn", help="a pickled estimator or pipeline (skl2onnx)")
    sk.add_argument("model", type=Path, metavar="MODEL.joblib|.pkl")
    sk.add_argument("--trust-pickle", action="store_true",
                    help="load the pickle (it runs the code inside it): required")  # fmt: skip
    th = kinds.add_parser("torch", help="FILE.py:FACTORY returning a torch.nn.Module")
    th.add_argument("model", metavar="FILE.py:FACTORY")
    for parser in (sk, th):
        parser.add_argument("--sample", type=Path, required=True, metavar="X.npy|.csv",
                            help="rows the original is run on and compared with")  # fmt: skip
        parser.add_argument("--out", type=Path, required=True, metavar="REPO/NAME",
                            help="model directory; the result is its next version")  # fmt: skip
        parser.add_argument("--atol", type=float, default=1e-4,
                            help="absolute tolerance (default %(default)s)")  # fmt: skip
        parser.add_argument("--rtol", type=float, default=1e-3,
                            help="relative tolerance (default %(default)s)")  # fmt: skip
        parser.add_argument("--max-batch-size", type=int, default=64,
                            help="for a new model's config (default %(default)s)")  # fmt: skip
        parser.add_argument("--json", action="store_true", help="print the report as JSON")
    sk.add_argument("--min-label-agreement", type=float, default=0.99,
                    help="share of equal labels for classifiers (default %(default)s)")  # fmt: skip
    convert.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from serving.convert import (
        Tolerance,
        convert_sklearn,
        convert_torch,
        load_factory,
        load_pickle,
        load_sample,
        write_version,
    )

    if args.framework == "sklearn":
        estimator = load_pickle(args.model, trust_pickle=args.trust_pickle)
        sample = load_sample(args.sample)
        tolerance = Tolerance(args.atol, args.rtol, args.min_label_agreement)
        result = convert_sklearn(estimator, sample, tolerance)
        source = result.estimator
    else:
        sample = load_sample(args.sample)
        result = convert_torch(load_factory(args.model), sample, atol=args.atol, rtol=args.rtol)  # type: ignore[assignment]
        source = result.module  # type: ignore[attr-defined]
    written = write_version(args.out, result.onnx_bytes, max_batch_size=args.max_batch_size)
    report = {
        "source": source,
        "sample_rows": result.rows,
        "outputs": [d.to_json() for d in result.differences],
        "model_dir": str(written.model_dir),
        "version": written.version,
        "path": str(written.path),
        "wrote_config": written.wrote_config,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"converted {source}: checked on {result.rows} rows")
    for diff in result.differences:
        print(f"  {diff.describe()}")
    print(f"wrote {written.path} (version {written.version} of {written.model_dir.name})")
    if not written.wrote_config:
        print(f"  kept {written.model_dir / 'config.pbtxt'}", file=sys.stderr)
