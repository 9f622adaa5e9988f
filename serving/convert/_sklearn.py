"""scikit-learn estimators and pipelines to ONNX (skl2onnx), checked against ``predict``.

Classifiers export tensors (``label`` and ``probabilities``), never skl2onnx's ZipMap of
dictionaries, which no Triton client can read. The graph takes one 2-D input ``X`` of the
sample's kind (FP32 for numbers, BYTES for strings) with a dynamic batch dimension.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from serving.convert._compare import OutputDifference, compare_outputs
from serving.convert._refusal import ToolError

__all__ = ["PICKLE_WARNING", "SklearnConversion", "Tolerance", "convert_sklearn", "load_pickle"]

# Opsets onnxruntime 1.18 (Sluice's oldest) runs; TreeEnsemble* of ai.onnx.ml 3.
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
INPUT_NAME = "X"
PICKLE_WARNING = (
    "loading a pickle runs the code inside it: convert only files you trust, "
    "and say so with --trust-pickle"
)


@dataclass(frozen=True, slots=True)
class Tolerance:
    """Outputs must satisfy ``|onnx - sklearn| <= atol + rtol * |sklearn|`` elementwise,
    and labels must agree on at least ``min_label_agreement`` of the sample's rows."""

    atol: float = 1e-4
    rtol: float = 1e-3
    min_label_agreement: float = 0.99


@dataclass(frozen=True, slots=True)
class SklearnConversion:
    onnx_bytes: bytes
    estimator: str  # the estimator's class name (the last step of a pipeline)
    differences: tuple[OutputDifference, ...]
    rows: int


def load_pickle(path: Path, *, trust_pickle: bool) -> Any:
    """Unpickle an estimator (joblib or plain pickle); refused without ``trust_pickle``."""
    path = Path(path)
    if not trust_pickle:
        raise ToolError(f"{path}: {PICKLE_WARNING}")
    if not path.is_file():
        raise ToolError(f"{path} does not exist")
    try:
        import joblib

        return joblib.load(path)
    except ImportError:
        pass
    except Exception as exc:
        if path.suffix.lower() == ".joblib":
            raise ToolError(f"{path} could not be loaded: {type(exc).__name__}: {exc}") from None
    try:
        with path.open("rb") as handle:
            return pickle.load(handle)
    except Exception as exc:
        raise ToolError(f"{path} could not be loaded: {type(exc).__name__}: {exc}") from None


def convert_sklearn(
    estimator: Any, sample: np.ndarray, tolerance: Tolerance | None = None
) -> SklearnConversion:
    """Convert ``estimator`` and check it against ``predict``/``predict_proba`` on ``sample``."""
    tolerance = tolerance or Tolerance()
    name = _final_name(estimator)
    if not hasattr(estimator, "predict") and not hasattr(estimator, "transform"):
        raise ToolError(f"{name} is not a scikit-learn estimator (it has no predict or transform)")
    if sample.ndim != 2:
        raise ToolError(f"the sample must be 2-D rows x features, not shape {list(sample.shape)}")
    feed = _feed(sample)
    model = _to_onnx(estimator, name, feed)
    actual = _run(model, feed)
    expected = _expected(estimator, sample, name, list(actual))
    differences = tuple(_check(expected, actual, tolerance))
    return SklearnConversion(model.SerializeToString(), name, differences, len(sample))


def _final_step(estimator: Any) -> Any:
    steps = getattr(estimator, "steps", None)
    return _final_step(steps[-1][1]) if steps else estimator


def _final_name(estimator: Any) -> str:
    steps = getattr(estimator, "steps", None)
    if steps:
        return f"{type(estimator).__name__}({', '.join(type(s).__name__ for _, s in steps)})"
    return type(estimator).__name__


def _feed(sample: np.ndarray) -> np.ndarray:
    if sample.dtype.kind in "fiub":
        return np.ascontiguousarray(sample, dtype=np.float32)
    if sample.dtype.kind in "US":
        return sample.astype(str)
    raise ToolError(f"sample dtype {sample.dtype} is neither numbers nor strings")


def _to_onnx(estimator: Any, name: str, feed: np.ndarray) -> Any:
    import onnx
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    kind = FloatTensorType if feed.dtype == np.float32 else StringTensorType
    initial = [(INPUT_NAME, kind([None, feed.shape[1]]))]
    final = _final_step(estimator)
    options = {id(final): {"zipmap": False}} if hasattr(final, "predict_proba") else None
    try:
        model = to_onnx(
            estimator,
            initial_types=initial,
            options=options,
            target_opset=TARGET_OPSET,
        )
    except RuntimeError as exc:
        if "shape calculator" in str(exc) or "converter" in str(exc).lower():
            raise ToolError(_unsupported(estimator, name, str(exc))) from None
        raise ToolError(f"skl2onnx could not convert {name}: {exc}") from None
    except Exception as exc:
        raise ToolError(f"skl2onnx could not convert {name}: {type(exc).__name__}: {exc}") from None
    for value in (*model.graph.input, *model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value") and not dims[0].dim_param:
            dims[0].dim_param = "batch"
    model.producer_name = "sluice convert sklearn"
    onnx.checker.check_model(model)
    return model


def _unsupported(estimator: Any, name: str, detail: str) -> str:
    from skl2onnx import supported_converters

    culprit = _culprit(estimator, detail)
    families = sorted({c.replace("Sklearn", "") for c in supported_converters()})
    return (
        f"{culprit} has no ONNX converter (skl2onnx), so {name} cannot be converted. "
        f"Supported include scalers, encoders, imputers, linear models, SVMs, k-NN, "
        f"trees and tree ensembles; all {len(families)}: {', '.join(families)}"
    )


def _culprit(estimator: Any, detail: str) -> str:
    parts = [estimator, *(s for _, s in getattr(estimator, "steps", []))]
    for part in parts:
        if f".{type(part).__name__}'" in detail:
            return type(part).__name__
    return type(parts[-1]).__name__


def _expected(
    estimator: Any, sample: np.ndarray, name: str, outputs: list[str]
) -> dict[str, np.ndarray]:
    """What the original answers, under the names skl2onnx gave the same answers."""
    try:
        if outputs == ["label", "probabilities"]:
            return {
                "label": np.asarray(estimator.predict(sample)),
                "probabilities": np.asarray(estimator.predict_proba(sample)),
            }
        if outputs == ["label", "scores"]:  # clusterers: distances; classifiers: margins
            scores = (
                estimator.transform
                if hasattr(estimator, "transform")
                else estimator.decision_function
            )
            return {
                "label": np.asarray(estimator.predict(sample)),
                "scores": np.asarray(scores(sample)),
            }
        if len(outputs) == 1:
            answer = estimator.predict if hasattr(estimator, "predict") else estimator.transform
            return {outputs[0]: np.asarray(answer(sample))}
    except Exception as exc:
        raise ToolError(
            f"{name} failed on the sample itself ({type(exc).__name__}: {exc}); "
            "give rows it was fitted for"
        ) from None
    raise ToolError(f"{name}: cannot tell which method answers ONNX outputs {outputs}")


def _run(model: Any, feed: np.ndarray) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {INPUT_NAME: feed}), strict=True))


def _check(
    expected: dict[str, np.ndarray], actual: dict[str, np.ndarray], tol: Tolerance
) -> list[OutputDifference]:
    differences: list[OutputDifference] = []
    failures: list[str] = []
    for name, old in expected.items():
        new = actual[name]
        diff = compare_outputs(name, old, new)
        differences.append(diff)
        if diff.kind == "labels":
            if (diff.label_agreement or 0.0) < tol.min_label_agreement:
                failures.append(f"{diff.describe()} < {tol.min_label_agreement:.4%}")
        else:
            old64 = old.astype(np.float64)
            limit = tol.atol + tol.rtol * np.abs(old64)
            over = np.abs(new.reshape(old.shape).astype(np.float64) - old64) > limit
            if over.any():
                failures.append(
                    f"{diff.describe()}; {int(over.sum())} of {over.size} values over "
                    f"atol {tol.atol:g} + rtol {tol.rtol:g} x |expected|"
                )
    if failures:
        raise ToolError("the converted model disagrees with the original: " + "; ".join(failures))
    return differences
