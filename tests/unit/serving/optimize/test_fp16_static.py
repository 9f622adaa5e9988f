"""``optimize --fp16`` and ``--quantize static`` on models whose effect is known in advance.

fp16: ``y = x @ W`` with ``W = [1 + 2**-11, 0, 0, 0]``. float16 keeps 10 bits of mantissa,
so ``1 + 2**-11`` lies exactly halfway between 1 and ``1 + 2**-10`` and rounds (to even) to
1. The sample holds small integers, exact in float16, so the converted model answers
``x0`` where the original answers ``x0 * (1 + 2**-11)``: a drop of exactly
``2**-11 / (1 + 2**-11) = 1/2049``, whatever the rows.

Static int8: ``W = [1, 0, 0, 0]`` (exact in int8), activations calibrated by their min and
max. Calibrated on rows within [-1, 1], an input of 4 saturates at the top of that range, so
the answer for it is about 1 instead of 4: a drop near 0.75. Calibrated on the sample's own
range [-4, 4], input and output each move by at most half a step of 8/255, a drop of at
most 8/255/4 < 0.01.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from serving.convert import ToolError
from serving.optimize import OptimizeRequest, optimize_model
from tests.unit.serving.optimize.test_optimizer import listing, model_dir

HALFWAY = 1.0 + 2.0**-11
FP16_DROP = 2.0**-11 / HALFWAY  # 1/2049


@pytest.fixture
def integers(tmp_path: Path) -> Path:
    rows = np.zeros((64, 4), dtype=np.float32)
    rows[:, 0] = np.arange(-32, 32)  # exact in float16
    np.save(tmp_path / "ints.npy", rows)
    return tmp_path / "ints.npy"


def test_fp16_rounds_the_weight_by_the_known_amount_and_keeps_float32_io(
    tmp_path: Path, integers: Path
) -> None:
    target = model_dir(tmp_path / "repo", [HALFWAY, 0.0, 0.0, 0.0])
    report = optimize_model(
        OptimizeRequest(target, fp16=True, sample=integers, measure_seconds=0.05)
    )
    assert report.steps == ["fp16"]
    assert report.drops["OUTPUT0"] == pytest.approx(FP16_DROP, rel=1e-6)
    assert report.written is not None and report.written.version == 2
    model = onnx.load(report.written.path)
    assert {init.data_type for init in model.graph.initializer} == {onnx.TensorProto.FLOAT16}
    io = [*model.graph.input, *model.graph.output]
    assert {v.type.tensor_type.elem_type for v in io} == {onnx.TensorProto.FLOAT}
    rows = np.load(integers)
    answer = ort.InferenceSession(report.written.path.read_bytes()).run(None, {"INPUT0": rows})[0]
    np.testing.assert_array_equal(answer[:, 0], rows[:, 0])  # the weight became exactly 1


def test_fp16_over_a_tighter_limit_is_refused_and_writes_nothing(
    tmp_path: Path, integers: Path
) -> None:
    target = model_dir(tmp_path / "repo", [HALFWAY, 0.0, 0.0, 0.0])
    before = listing(target.parent)
    request = OptimizeRequest(
        target, fp16=True, sample=integers, max_accuracy_drop=1e-4, measure_seconds=0.05
    )
    with pytest.raises(ToolError) as caught:
        optimize_model(request)
    assert f"output 'OUTPUT0' dropped {FP16_DROP:.4g} > --max-accuracy-drop 0.0001" in str(
        caught.value
    )
    assert listing(target.parent) == before


def _rows(tmp_path: Path, name: str, top: float) -> Path:
    rows = np.zeros((65, 4), dtype=np.float32)
    rows[:, 0] = np.linspace(-top, top, 65)  # both ends of the range included
    np.save(tmp_path / name, rows)
    return tmp_path / name


def test_static_quantization_calibrated_on_too_narrow_a_range_saturates_and_is_refused(
    tmp_path: Path,
) -> None:
    target = model_dir(tmp_path / "repo", [1.0, 0.0, 0.0, 0.0])
    before = listing(target.parent)
    request = OptimizeRequest(
        target,
        quantize="static",
        calibration=_rows(tmp_path, "narrow.npy", 1.0),
        sample=_rows(tmp_path, "wide.npy", 4.0),
        measure_seconds=0.05,
    )
    with pytest.raises(ToolError) as caught:
        optimize_model(request)
    message = str(caught.value)
    assert "accuracy does not hold after int8:static: output 'OUTPUT0' dropped 0.7" in message
    assert listing(target.parent) == before


def test_static_quantization_calibrated_on_the_sample_range_holds_and_is_int8(
    tmp_path: Path,
) -> None:
    target = model_dir(tmp_path / "repo", [1.0, 0.0, 0.0, 0.0])
    wide = _rows(tmp_path, "wide.npy", 4.0)
    report = optimize_model(
        OptimizeRequest(
            target, quantize="static", calibration=wide, sample=wide, measure_seconds=0.05
        )
    )
    assert report.steps == ["int8:static"]
    assert 0 <= report.drops["OUTPUT0"] <= (8 / 255) / 4
    assert report.written is not None and report.written.version == 2
    model = onnx.load(report.written.path)
    ops = {node.op_type for node in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # activations fixed, not per call
    assert "DynamicQuantizeLinear" not in ops
    rows = np.load(wide)
    answer = ort.InferenceSession(report.written.path.read_bytes()).run(None, {"INPUT0": rows})[0]
    assert np.abs(answer[:, 0] - rows[:, 0]).max() <= 8 / 255
