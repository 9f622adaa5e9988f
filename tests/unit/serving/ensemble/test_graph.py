"""Ensemble validation at load: every refusal names the step and the tensor."""

from __future__ import annotations

import pytest
from google.protobuf import text_format

from serving.config import model_config_pb2 as pb
from serving.ensemble import build_steps
from serving.errors import InvalidArgument, NotFound

_TENSOR = '{{ name: "{}" data_type: {} dims: [ {} ] }}'


def _model(
    name: str, inputs: dict[str, str], outputs: dict[str, str], batch: int = 8
) -> pb.ModelConfig:
    def tensors(kind: str, spec: dict[str, str]) -> str:
        items = []
        for tensor, desc in spec.items():
            dtype, dims = desc.split(":")
            items.append(_TENSOR.format(tensor, dtype, dims))
        return f"{kind} [ {', '.join(items)} ]"

    text = f'name: "{name}" max_batch_size: {batch} {tensors("input", inputs)} {tensors("output", outputs)}'
    return text_format.Parse(text, pb.ModelConfig())


MODELS = {
    "pre": _model("pre", {"x": "TYPE_FP32:4"}, {"y": "TYPE_FP32:4"}),
    "left": _model("left", {"x": "TYPE_FP32:4"}, {"y": "TYPE_FP32:4"}),
    "right": _model("right", {"x": "TYPE_FP32:4"}, {"y": "TYPE_FP32:4"}),
    "combine": _model("combine", {"a": "TYPE_FP32:4", "b": "TYPE_FP32:4"}, {"y": "TYPE_FP32:4"}),
    "ints": _model("ints", {"x": "TYPE_INT64:4"}, {"y": "TYPE_INT64:4"}),
    "wide": _model("wide", {"x": "TYPE_FP32:8"}, {"y": "TYPE_FP32:8"}),
}


def _composing(name: str, version: int) -> pb.ModelConfig:
    if name not in MODELS:
        raise NotFound(f"unknown model '{name}'")
    return MODELS[name]


def _step(model: str, inputs: dict[str, str], outputs: dict[str, str]) -> str:
    ins = " ".join(f'input_map {{ key: "{k}" value: "{v}" }}' for k, v in inputs.items())
    outs = " ".join(f'output_map {{ key: "{k}" value: "{v}" }}' for k, v in outputs.items())
    return f'step {{ model_name: "{model}" model_version: -1 {ins} {outs} }}'


GOOD = [
    _step("pre", {"x": "INPUT"}, {"y": "p"}),
    _step("combine", {"a": "l", "b": "r"}, {"y": "OUTPUT"}),  # listed before its producers
    _step("left", {"x": "p"}, {"y": "l"}),
    _step("right", {"x": "p"}, {"y": "r"}),
]


def _ensemble(steps: list[str], output: str = "TYPE_FP32:4") -> pb.ModelConfig:
    config = _model("ens", {"INPUT": "TYPE_FP32:4"}, {"OUTPUT": output})
    config.platform = "ensemble"
    text_format.Parse(f"ensemble_scheduling {{ {' '.join(steps)} }}", config)
    return config


def test_a_valid_ensemble_orders_its_steps_by_their_tensors() -> None:
    steps = build_steps(_ensemble(GOOD), _composing)
    assert [s.model for s in steps] == ["pre", "left", "right", "combine"]
    assert steps[3].inputs == (("a", "l", "FP32"), ("b", "r", "FP32"))


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([], "ensemble_scheduling has no step"),
        ([*GOOD[:3], _step("nope", {"x": "p"}, {"y": "r"})],
         "step 4 (model 'nope'): unknown model 'nope'"),
        ([*GOOD[:3], _step("right", {"z": "p"}, {"y": "r"})],
         "step 4 (model 'right'): input_map names input 'z', which the model does not have"),
        ([*GOOD[:3], _step("right", {"x": "p"}, {"q": "r"})],
         "step 4 (model 'right'): output_map names output 'q'"),
        ([*GOOD[:3], _step("right", {}, {"y": "r"})],
         "step 4 (model 'right'): input 'x' is not in input_map"),
        ([*GOOD[:3], _step("right", {"x": "missing"}, {"y": "r"})],
         "step 4 (model 'right') input 'x' takes tensor 'missing', which no step and no "
         "ensemble input produces"),
        ([*GOOD[:3], _step("right", {"x": "p"}, {"y": "l"})],
         "tensor 'l' is produced twice: by step 3 (model 'left') and by step 4 (model 'right')"),
        ([*GOOD[:2], _step("left", {"x": "r"}, {"y": "l"}), _step("right", {"x": "l"}, {"y": "r"})],
         "the steps form a cycle: step 2 (model 'combine'), step 3 (model 'left'), "
         "step 4 (model 'right') wait on each other"),
        ([*GOOD[:3], _step("ints", {"x": "p"}, {"y": "r"})],
         "step 2 (model 'combine') input 'b' takes tensor 'r' as FP32 [-1, 4], but step 4 "
         "(model 'ints') gives it as INT64 [-1, 4]"),
        ([*GOOD[:3], _step("wide", {"x": "p"}, {"y": "r"})],
         "step 2 (model 'combine') input 'b' takes tensor 'r' as FP32 [-1, 4], but step 4 "
         "(model 'wide') gives it as FP32 [-1, 8]"),
        ([*GOOD[:3], _step("right", {"x": "p"}, {"y": "INPUT"})],
         "tensor 'INPUT' is produced twice: by the ensemble's input and by step 4"),
    ],
    ids=["no-steps", "unknown-model", "unknown-input", "unknown-output", "unmapped-input",
         "missing-tensor", "twice-produced", "cycle", "datatype", "shape", "overwrites-input"],
)  # fmt: skip
def test_invalid_ensembles_are_refused_naming_step_and_tensor(
    steps: list[str], message: str
) -> None:
    with pytest.raises(InvalidArgument) as refused:
        build_steps(_ensemble(steps), _composing)
    assert message in refused.value.message


def test_the_ensemble_output_must_match_what_produces_it() -> None:
    with pytest.raises(
        InvalidArgument, match=r"the ensemble's output 'OUTPUT' takes tensor 'OUTPUT' as INT64"
    ):
        build_steps(_ensemble(GOOD, output="TYPE_INT64:4"), _composing)
