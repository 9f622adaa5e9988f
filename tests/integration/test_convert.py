"""Converted scikit-learn pipelines served by the real server answer as predict/predict_proba.

Each pipeline is fitted here, converted to a new model directory and served; tritonclient
sends the rows the models were never fitted on.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier, RandomForestRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from serving.convert import convert_sklearn, write_version
from tests.integration.server_process import ServerProcess

pytestmark = pytest.mark.integration

RNG = np.random.default_rng(11)
NUMBERS = RNG.standard_normal((300, 5))
COLOURS = RNG.choice(["red", "green", "blue", "grey"], size=(300, 3))


def fitted() -> dict[str, tuple[Any, np.ndarray]]:
    x_fit, x_new = NUMBERS[:200], NUMBERS[200:]
    classes = (x_fit[:, 0] - x_fit[:, 1] > 0).astype(int) + (x_fit[:, 2] > 0.8)
    gbc = make_pipeline(StandardScaler(), GradientBoostingClassifier(n_estimators=25))
    reg = RandomForestRegressor(n_estimators=10, max_depth=5, random_state=0)
    target = x_fit[:, 0] * 3 + np.sin(x_fit[:, 1]) - x_fit[:, 4]
    c_fit, c_new = COLOURS[:200], COLOURS[200:]
    onehot = make_pipeline(
        ColumnTransformer([("colours", OneHotEncoder(handle_unknown="ignore"), [0, 1, 2])]),
        LogisticRegression(max_iter=500),
    )
    return {
        "gbc": (gbc.fit(x_fit, classes), x_new),
        "forest": (reg.fit(x_fit, target), x_new),
        "onehot": (onehot.fit(c_fit, (c_fit[:, 0] == "red") | (c_fit[:, 2] == "blue")), c_new),
    }


MODELS = fitted()


@pytest.fixture(scope="module")
def converted_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = tmp_path_factory.mktemp("converted")
    for name, (model, rows) in MODELS.items():
        write_version(repo / name, convert_sklearn(model, rows).onnx_bytes, max_batch_size=128)
    server = ServerProcess(repo, log_dir=tmp_path_factory.mktemp("logs"))
    yield server
    server.stop()


def infer(server: ServerProcess, name: str, rows: np.ndarray) -> dict[str, np.ndarray]:
    client = httpclient.InferenceServerClient(server.url)
    try:
        if rows.dtype.kind == "U":
            tensor = httpclient.InferInput("X", list(rows.shape), "BYTES")
            tensor.set_data_from_numpy(np.vectorize(str.encode, otypes=[object])(rows))
        else:
            tensor = httpclient.InferInput("X", list(rows.shape), "FP32")
            tensor.set_data_from_numpy(rows.astype(np.float32))
        result = client.infer(name, [tensor])
        return {o["name"]: result.as_numpy(o["name"]) for o in result.get_response()["outputs"]}
    finally:
        client.close()


@pytest.mark.parametrize("name", ["gbc", "onehot"])
def test_served_classifier_answers_as_predict_and_predict_proba(
    converted_server: ServerProcess, name: str
) -> None:
    model, rows = MODELS[name]
    outputs = infer(converted_server, name, rows)
    np.testing.assert_array_equal(outputs["label"].ravel(), model.predict(rows).astype(np.int64))
    np.testing.assert_allclose(outputs["probabilities"], model.predict_proba(rows), atol=1e-5)


def test_served_regressor_answers_as_predict(converted_server: ServerProcess) -> None:
    model, rows = MODELS["forest"]
    outputs = infer(converted_server, "forest", rows)
    np.testing.assert_allclose(outputs["variable"].ravel(), model.predict(rows), rtol=1e-5)
