"""``optimize`` on models whose int8 quantization effect is known in advance.

``y = x @ W`` with W [4, 1]. Dynamic int8 quantization scales W by max|W| / 127 per
tensor. With W = [0.1, 0.1, 0.1, 127] the step is 1.0, so the three small weights round
to 0; the sample's last column is 0, so the original output is 0.1 * (x0 + x1 + x2) and
the quantized one exactly 0: a drop of 1.0, whatever the rows. With W = [0.5, -0.25, 1,
0.75] each weight moves by at most half a step (1/254), well inside a 1% drop.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from serving.convert import ToolError
from serving.optimize import OptimizeRequest, optimize_model

OUTLIER = [0.1, 0.1, 0.1, 127.0]
BENIGN = [0.5, -0.25, 1.0, 0.75]


def matmul_model(weights: list[float]) -> bytes:
    w = np.asarray(weights, dtype=np.float32).reshape(4, 1)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["INPUT0", "W"], ["OUTPUT0"])],
        "matmul",
        [helper.make_tensor_value_info("INPUT0", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("OUTPUT0", TensorProto.FLOAT, ["batch", 1])],
        initializer=[numpy_helper.from_array(w, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    rows = np.random.default_rng(3).standard_normal((64, 4)).astype(np.float32)
    rows[:, 3] = 0.0
    np.save(tmp_path / "x.npy", rows)
    return tmp_path / "x.npy"


def model_dir(root: Path, weights: list[float]) -> Path:
    (root / "m" / "1").mkdir(parents=True)
    (root / "m" / "1" / "model.onnx").write_bytes(matmul_model(weights))
    return root / "m"


def listing(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def test_quantization_that_zeroes_the_weights_is_refused_and_writes_nothing(
    tmp_path: Path, sample: Path
) -> None:
    target = model_dir(tmp_path / "repo", OUTLIER)
    before = listing(target.parent)
    request = OptimizeRequest(target, quantize="dynamic", sample=sample, measure_seconds=0.05)
    with pytest.raises(ToolError) as caught:
        optimize_model(request)
    message = str(caught.value)
    assert "output 'OUTPUT0' dropped 1 > --max-accuracy-drop 0.01" in message
    assert "nothing written" in message
    assert listing(target.parent) == before


def test_quantization_within_the_limit_writes_the_next_version(
    tmp_path: Path, sample: Path
) -> None:
    target = model_dir(tmp_path / "repo", BENIGN)
    request = OptimizeRequest(target, quantize="dynamic", sample=sample, measure_seconds=0.05)
    report = optimize_model(request)
    assert report.written is not None and report.written.version == 2
    assert 0 < report.drops["OUTPUT0"] <= 0.01
    rows = np.load(sample)
    session = ort.InferenceSession(report.written.path.read_bytes())
    quantized = session.run(None, {"INPUT0": rows})[0]
    expected = rows @ np.asarray(BENIGN, dtype=np.float32).reshape(4, 1)
    scaled = np.abs(quantized - expected).max() / np.abs(expected).max()
    assert scaled == pytest.approx(report.drops["OUTPUT0"], rel=1e-4)
    body = report.to_json()
    assert body["written_version"] == 2 and body["steps"] == ["int8:dynamic"]
    assert body["speedup_batch1"] == pytest.approx(
        body["optimized"]["batch1_rows_per_s"] / body["original"]["batch1_rows_per_s"]
    )


def test_graph_optimization_keeps_the_outputs(tmp_path: Path, sample: Path) -> None:
    target = model_dir(tmp_path / "repo", OUTLIER)
    report = optimize_model(
        OptimizeRequest(target, level="extended", sample=sample, measure_seconds=0.05)
    )
    assert report.drops == {"OUTPUT0": 0.0}
    assert (target / "2" / "model.onnx").is_file()


def test_nothing_to_do_and_a_missing_version_are_refused(tmp_path: Path, sample: Path) -> None:
    target = model_dir(tmp_path / "repo", BENIGN)
    with pytest.raises(ToolError, match="nothing to do"):
        optimize_model(OptimizeRequest(target, sample=sample))
    with pytest.raises(ToolError, match=r"7/model.onnx does not exist"):
        optimize_model(OptimizeRequest(target, version=7, level="basic", sample=sample))
