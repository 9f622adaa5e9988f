"""Which batching models pad, and how each output is cut back to a request's own shape."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from google.protobuf import text_format

from serving.config import OutputCut, load_model_config, model_config_pb2, padding_plan
from serving.errors import InvalidArgument
from tests.unit.serving.config.tiny_onnx import FLOAT, INT64, write_onnx

ENCODER = """
name: "m" max_batch_size: 8
input [ {{ name: "ids" data_type: TYPE_INT64 dims: {ids} }},
        {{ name: "mask" data_type: TYPE_INT64 dims: {ids} }} ]
output [ {{ name: "emb" data_type: TYPE_FP32 dims: {emb} }},
         {{ name: "pooled" data_type: TYPE_FP32 dims: [ 384 ] }} ]
dynamic_batching {{ }}
parameters [ {{ key: "sluice.pad.ids" value: {{ string_value: "0" }} }},
             {{ key: "sluice.pad.mask" value: {{ string_value: "0" }} }} ]
"""


def _config(ids: str = "[ -1 ]", emb: str = "[ -1, 384 ]", text: str = ENCODER):
    return text_format.Parse(text.format(ids=ids, emb=emb), model_config_pb2.ModelConfig())


def test_an_encoder_output_is_cut_back_to_the_padded_input_length():
    plan = padding_plan(_config())

    assert plan.pads and plan.padded == ("ids", "mask")
    assert plan.cuts == {"emb": OutputCut("ids", (0,), (-1, 384)), "pooled": None}
    assert plan.cuts["emb"] is not None and plan.cuts["emb"].shape((7,)) == (7, 384)
    assert plan.explain() == (
        "pads inputs 'ids', 'mask'; output 'emb' [-1, 384] is cut back to input 'ids''s "
        "length; output 'pooled' is taken whole"
    )


@pytest.mark.parametrize(
    ("ids", "emb", "request_shape", "cut_shape"),
    [
        ("[ -1 ]", "[ -1 ]", (5,), (5,)),  # same dims as the input
        ("[ 3, -1 ]", "[ 3, -1 ]", (3, 5), (3, 5)),  # same dims, a fixed one first
        ("[ -1, 3 ]", "[ -1, 16 ]", (5, 3), (5, 16)),  # the variable dims, then fixed ones
        ("[ -1, -1 ]", "[ -1, -1, 2, 2 ]", (5, 6), (5, 6, 2, 2)),
        ("[ 3, -1 ]", "[ -1, 3 ]", (3, 5), (5, 3)),  # e.g. transposed
    ],
)
def test_outputs_that_follow_the_padded_input(ids, emb, request_shape, cut_shape):
    cut = padding_plan(_config(ids, emb)).cuts["emb"]

    assert cut is not None and cut.shape(request_shape) == cut_shape


@pytest.mark.parametrize(
    ("ids", "emb"),
    [
        ("[ -1 ]", "[ -1, -1 ]"),  # a second variable dim nothing tells
        ("[ -1 ]", "[ 384, -1 ]"),  # the variable dim not leading
        ("[ -1, -1 ]", "[ -1, 384 ]"),  # fewer variable dims than the input
    ],
)
def test_outputs_that_follow_no_padded_input_turn_padding_off(ids, emb):
    plan = padding_plan(_config(ids, emb))

    assert not plan.pads and plan.asked
    assert plan.explain().startswith(
        f"does not pad: output 'emb' dims {emb.replace('[ ', '[').replace(' ]', ']')}"
    )
    assert "an output is cut back per request only when its dims equal" in plan.explain()


def test_without_pad_parameters_the_plan_says_how_requests_batch():
    text = ENCODER.split("parameters")[0]

    plan = padding_plan(_config(text=text))

    assert not plan.pads and not plan.asked
    assert plan.explain() == (
        "does not pad: no sluice.pad.<input> parameter; requests batch only with others of "
        "the same shape"
    )


def test_a_model_without_a_batcher_does_not_pad():
    plan = padding_plan(_config(text=ENCODER.replace("max_batch_size: 8", "max_batch_size: 0")))

    assert plan.explain() == "does not pad: the model has no dynamic batcher"


def test_a_pad_parameter_for_no_input_is_refused():
    text = ENCODER.replace("sluice.pad.mask", "sluice.pad.masks")

    with pytest.raises(
        InvalidArgument,
        match=r"^config of model 'm': parameter sluice\.pad\.masks names no input of the model "
        r"\(its inputs: 'ids', 'mask'\)",
    ):
        padding_plan(_config(text=text))


def _encoder_repository(model_dir: Path, emb_dims: list[str | int | None]) -> None:
    write_onnx(
        model_dir / "1" / "model.onnx",
        [("ids", INT64, ["batch", "seq"]), ("mask", INT64, ["batch", "seq"])],
        [("emb", FLOAT, emb_dims), ("pooled", FLOAT, ["batch", 384])],
        weight_as_input=False,
    )
    params = "".join(
        f'parameters {{ key: "sluice.pad.{name}" value: {{ string_value: "0" }} }}\n'
        for name in ("ids", "mask")
    )
    (model_dir / "config.pbtxt").write_text("max_batch_size: 8\ndynamic_batching { }\n" + params)


@pytest.mark.parametrize("emb_dims", [["batch", "seq", 384], ["batch", None, 384]])
def test_a_graph_whose_dim_names_agree_or_are_absent_loads_and_pads(model_dir, emb_dims):
    _encoder_repository(model_dir, emb_dims)

    cfg = load_model_config(model_dir, model_dir / "1" / "model.onnx")

    assert padding_plan(cfg).cuts["emb"] == OutputCut("ids", (0,), (-1, 384))


def test_a_graph_whose_dim_names_contradict_the_cut_is_refused(model_dir):
    _encoder_repository(model_dir, ["batch", "tokens_out", 384])

    with pytest.raises(
        InvalidArgument,
        match=re.escape(
            f"{model_dir / 'config.pbtxt'}: parameter sluice.pad.ids pads input 'ids' and output "
            "'emb' [-1, 384] would be cut back to that input's length, but the ONNX graph names "
            "that output dim 'tokens_out' and the input's 'seq'"
        ),
    ):
        load_model_config(model_dir, model_dir / "1" / "model.onnx")
