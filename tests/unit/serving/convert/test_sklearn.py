"""Converting scikit-learn models: the checks against the original and the refusals."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from sklearn.cluster import Birch, KMeans
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from serving.convert import Tolerance, ToolError, convert_sklearn, load_pickle

RNG = np.random.default_rng(7)
X = RNG.standard_normal((120, 4))
Y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int) + (X[:, 2] > 1)


def run(onnx_bytes: bytes, feed: np.ndarray) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {"X": feed}), strict=True))


def test_classifier_exports_tensors_that_match_predict_and_proba() -> None:
    model = make_pipeline(StandardScaler(), GradientBoostingClassifier(n_estimators=15)).fit(X, Y)
    result = convert_sklearn(model, X)
    assert result.estimator == "Pipeline(StandardScaler, GradientBoostingClassifier)"
    outputs = run(result.onnx_bytes, X.astype(np.float32))
    assert set(outputs) == {"label", "probabilities"}  # tensors, not a ZipMap
    np.testing.assert_array_equal(outputs["label"], model.predict(X))
    np.testing.assert_allclose(outputs["probabilities"], model.predict_proba(X), atol=1e-5)
    labels, scores = result.differences
    assert labels.label_agreement == 1.0
    assert scores.max_abs is not None and scores.max_abs < 1e-5


def test_string_categories_become_a_bytes_input() -> None:
    cats = RNG.choice(["red", "green", "blue"], size=(80, 2))
    target = (cats[:, 0] == "red") * 2.0 + (cats[:, 1] == "blue") * 1.0
    model = make_pipeline(OneHotEncoder(handle_unknown="ignore"), LinearRegression())
    model.fit(cats, target)
    result = convert_sklearn(model, cats)
    outputs = run(result.onnx_bytes, cats)
    np.testing.assert_allclose(outputs["variable"].ravel(), model.predict(cats), atol=1e-5)


def test_clusterer_answers_predict_and_transform() -> None:
    model = make_pipeline(StandardScaler(), KMeans(n_clusters=3, n_init=2, random_state=0))
    model.fit(X)
    result = convert_sklearn(model, X)
    outputs = run(result.onnx_bytes, X.astype(np.float32))
    np.testing.assert_array_equal(outputs["label"], model.predict(X))
    np.testing.assert_allclose(outputs["scores"], model.transform(X), rtol=1e-4, atol=1e-4)
    assert [d.name for d in result.differences] == ["label", "scores"]


def test_unsupported_estimator_is_named_with_what_is_supported() -> None:
    model = make_pipeline(StandardScaler(), Birch(n_clusters=2)).fit(X)
    with pytest.raises(ToolError) as caught:
        convert_sklearn(model, X)
    message = str(caught.value)
    assert message.startswith("Birch has no ONNX converter")
    assert "GradientBoostingClassifier" in message and "StandardScaler" in message


def test_a_conversion_outside_the_tolerance_is_refused_with_its_figures() -> None:
    scaled = X * 1e6  # float32 rounding of inputs this large moves the linear output
    model = LinearRegression().fit(scaled, X[:, 0] * 3e6 + 0.123456)
    convert_sklearn(model, scaled, Tolerance(atol=1.0, rtol=1e-3))
    with pytest.raises(ToolError, match=r"disagrees with the original: variable: max abs diff"):
        convert_sklearn(model, scaled, Tolerance(atol=1e-9, rtol=1e-12))


def test_a_pickle_is_not_loaded_without_trust(tmp_path: Path) -> None:
    path = tmp_path / "model.pkl"
    marker = tmp_path / "ran"
    path.write_bytes(pickle.dumps(_Touch(marker)))
    with pytest.raises(ToolError, match="loading a pickle runs the code inside it"):
        load_pickle(path, trust_pickle=False)
    assert not marker.exists()
    load_pickle(path, trust_pickle=True)
    assert marker.exists()


class _Touch:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (self.path,))
