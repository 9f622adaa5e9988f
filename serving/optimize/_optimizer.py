"""``sluice optimize``: transform a version, check it on the sample, measure both, write.

The accuracy rule, stated in every report: for each output, the *drop* is
``1 - top-1 agreement`` for class scores ([N, C>=2] floats), ``1 - label agreement`` for
labels, and otherwise the largest absolute difference over the largest ``|original|``
(the error in units of the output's range). Accuracy holds when every drop is at most
``--max-accuracy-drop``; only then is the new version written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serving.config import load_model_config
from serving.convert import (
    OutputDifference,
    ToolError,
    WrittenVersion,
    compare_outputs,
    model_inputs,
    write_version,
)
from serving.errors import SluiceError
from serving.optimize._measure import Speed, measure
from serving.optimize._transform import graph_optimize, quantize, to_fp16

__all__ = ["ACCURACY_RULE", "OptimizeReport", "OptimizeRequest", "optimize_model"]

ACCURACY_RULE = (
    "drop per output = 1 - top-1 agreement for class scores, 1 - label agreement for labels, "
    "else max |new - original| / max |original|; accuracy holds when every drop <= the limit"
)
MEASURE_BATCHES = [1, 8, 32]


@dataclass(frozen=True, slots=True)
class OptimizeRequest:
    model_dir: Path
    version: int | None = None  # None: the highest on disk
    level: str | None = None
    quantize: str | None = None
    calibration: Path | None = None
    fp16: bool = False
    sample: Path | None = None
    max_accuracy_drop: float = 0.01
    measure_seconds: float = 1.0


@dataclass(slots=True)
class OptimizeReport:
    model: str
    source_version: int
    steps: list[str]
    rows: int
    differences: list[OutputDifference]
    drops: dict[str, float]
    max_accuracy_drop: float
    original: Speed
    optimized: Speed
    written: WrittenVersion | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def accuracy_holds(self) -> bool:
        return all(d <= self.max_accuracy_drop for d in self.drops.values())

    @property
    def speedup_batch1(self) -> float:
        return self.optimized.batch1_rows_per_s / self.original.batch1_rows_per_s

    @property
    def speedup_best(self) -> float:
        return self.optimized.best_rows_per_s / self.original.best_rows_per_s

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "source_version": self.source_version,
            "steps": self.steps,
            "sample_rows": self.rows,
            "accuracy_rule": ACCURACY_RULE,
            "max_accuracy_drop": self.max_accuracy_drop,
            "drops": self.drops,
            "accuracy_holds": self.accuracy_holds,
            "outputs": [d.to_json() for d in self.differences],
            "original": self.original.to_json(),
            "optimized": self.optimized.to_json(),
            "speedup_batch1": self.speedup_batch1,
            "speedup_best_batch": self.speedup_best,
            "written_version": self.written.version if self.written else None,
            "warnings": self.warnings,
        }


def optimize_model(request: OptimizeRequest) -> OptimizeReport:
    """Run the request; raise ``ToolError`` (nothing written) when accuracy does not hold."""
    import onnxruntime as ort

    model_dir = Path(request.model_dir)
    version = request.version or _latest(model_dir)
    source = model_dir / str(version) / "model.onnx"
    if not source.is_file():
        raise ToolError(f"{source} does not exist")
    if not (request.level or request.quantize or request.fp16):
        raise ToolError("nothing to do: give --level, --quantize and/or --fp16")
    if not 0 <= request.max_accuracy_drop < 1:
        raise ToolError(f"--max-accuracy-drop must be in [0, 1), not {request.max_accuracy_drop}")
    try:
        config = load_model_config(model_dir, source)
    except SluiceError as exc:
        raise ToolError(f"{model_dir}: {exc.message}") from None
    inputs = model_inputs(config, request.sample, rows=64)
    warnings = list(inputs.warnings)
    if request.sample is None:
        warnings.append("no --sample: accuracy is checked on random inputs from the config")
    original = source.read_bytes()
    candidate, steps = original, []
    if request.level:
        candidate, steps = graph_optimize(candidate, request.level), [f"graph:{request.level}"]
        if request.level == "all":
            warnings.append(
                "level 'all' adds layouts for this machine's CPU: serve it on the same kind"
            )
    if request.quantize:
        calibration = None
        if request.calibration is not None:
            calibration = model_inputs(config, request.calibration).arrays
        elif request.quantize == "static":
            calibration = inputs.arrays
            warnings.append("static quantization calibrated on the sample (no --calibration)")
        candidate = quantize(candidate, request.quantize, calibration)
        steps.append(f"int8:{request.quantize}")
    if request.fp16:
        candidate = to_fp16(candidate)
        steps.append("fp16")
    old_session = _session(ort, original)
    try:
        new_session = _session(ort, candidate)
    except Exception as exc:
        raise ToolError(f"the optimized model does not load: {type(exc).__name__}: {exc}") from None
    names = [o.name for o in old_session.get_outputs()]
    before = old_session.run(names, inputs.arrays)
    after = new_session.run(names, inputs.arrays)
    differences = [compare_outputs(n, b, a) for n, b, a in zip(names, before, after, strict=True)]
    limit = max(config.max_batch_size, 1)
    batches = sorted({b for b in (*MEASURE_BATCHES, limit) if b <= limit})
    report = OptimizeReport(
        model=config.name,
        source_version=version,
        steps=steps,
        rows=inputs.rows,
        differences=differences,
        drops={d.name: _drop(d) for d in differences},
        max_accuracy_drop=request.max_accuracy_drop,
        original=measure(old_session, inputs.arrays, batches, request.measure_seconds),
        optimized=measure(new_session, inputs.arrays, batches, request.measure_seconds),
        warnings=warnings,
    )
    if not report.accuracy_holds:
        worst = max(report.drops, key=report.drops.__getitem__)
        raise ToolError(
            f"accuracy does not hold after {'+'.join(steps)}: output {worst!r} dropped "
            f"{report.drops[worst]:.4g} > --max-accuracy-drop {request.max_accuracy_drop:g} "
            f"({'; '.join(d.describe() for d in differences)}); nothing written. "
            f"Rule: {ACCURACY_RULE}"
        )
    report.written = write_version(model_dir, candidate)
    return report


def _latest(model_dir: Path) -> int:
    if not model_dir.is_dir():
        raise ToolError(f"{model_dir} is not a model directory")
    versions = [int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()]
    if not versions:
        raise ToolError(f"{model_dir} has no numeric version directory")
    return max(versions)


def _session(ort: Any, onnx_bytes: bytes) -> Any:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])


def _drop(diff: OutputDifference) -> float:
    if diff.kind == "labels":
        return 1.0 - (diff.label_agreement or 0.0)
    if diff.top1_agreement is not None:
        return 1.0 - diff.top1_agreement
    return float(diff.scaled_max_abs or 0.0)
