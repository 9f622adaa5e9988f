from __future__ import annotations

import re
from pathlib import Path

import pytest

from serving.config import load_model_config
from serving.config import model_config_pb2 as pb
from serving.errors import InvalidArgument
from tests.unit.serving.config.tiny_onnx import FLOAT, INT64, write_onnx


def dims_of(tensors) -> dict[str, list[int]]:
    return {t.name: list(t.dims) for t in tensors}


def test_graph_with_dynamic_first_dims_batches_and_drops_that_dim(
    model_dir: Path, batchable_onnx: Path
):
    cfg = load_model_config(model_dir, batchable_onnx, default_max_batch_size=32)

    assert cfg.max_batch_size == 32
    assert dims_of(cfg.input) == {"x": [3], "ids": [2, -1]}
    assert dims_of(cfg.output) == {"y": [3], "n": [1]}


def test_rank_one_tensor_becomes_triton_scalar(model_dir: Path, batchable_onnx: Path):
    cfg = load_model_config(model_dir, batchable_onnx)

    n = cfg.output[1]
    assert list(n.dims) == [1]
    assert n.HasField("reshape") and list(n.reshape.shape) == []


def test_graph_with_fixed_first_dim_does_not_batch(model_dir: Path, fixed_onnx: Path):
    cfg = load_model_config(model_dir, fixed_onnx)

    assert cfg.max_batch_size == 0
    assert dims_of(cfg.input) == {"x": [1, 3]}
    assert dims_of(cfg.output) == {"y": [1, 3]}
    assert cfg.WhichOneof("scheduling_choice") is None


def test_one_static_input_prevents_batching(model_dir: Path):
    onnx_path = write_onnx(
        model_dir / "1" / "model.onnx",
        [("x", FLOAT, ["b", 3]), ("k", INT64, [1])],
        [("y", FLOAT, ["b", 3])],
    )

    cfg = load_model_config(model_dir, onnx_path)

    assert cfg.max_batch_size == 0
    assert dims_of(cfg.input) == {"x": [-1, 3], "k": [1]}


def test_output_without_batch_dim_prevents_batching(model_dir: Path):
    onnx_path = write_onnx(
        model_dir / "1" / "model.onnx", [("x", FLOAT, ["b", 3])], [("y", FLOAT, [3])]
    )

    assert load_model_config(model_dir, onnx_path).max_batch_size == 0


def test_default_max_batch_size_zero_turns_derivation_off(model_dir: Path, batchable_onnx: Path):
    cfg = load_model_config(model_dir, batchable_onnx, default_max_batch_size=0)

    assert cfg.max_batch_size == 0
    assert dims_of(cfg.input) == {"x": [-1, 3], "ids": [-1, 2, -1]}
    assert not cfg.HasField("dynamic_batching")


def test_config_without_tensors_still_derives_batching(
    model_dir: Path, batchable_onnx: Path, write_config
):
    write_config("instance_group [{ count: 3 kind: KIND_CPU }]\nmodel_transaction_policy {}")

    cfg = load_model_config(model_dir, batchable_onnx)

    assert cfg.max_batch_size == 4
    assert cfg.instance_group[0].count == 3


def test_config_listing_inputs_keeps_max_batch_size_zero(
    model_dir: Path, batchable_onnx: Path, write_config
):
    write_config('input [{ name: "x" }]')

    cfg = load_model_config(model_dir, batchable_onnx)

    assert cfg.max_batch_size == 0
    assert dims_of(cfg.input) == {"x": [-1, 3], "ids": [-1, 2, -1]}
    assert dims_of(cfg.output) == {"y": [-1, 3], "n": [-1]}


def test_stated_scheduler_is_not_replaced(model_dir: Path, batchable_onnx: Path, write_config):
    write_config("max_batch_size: 1")

    cfg = load_model_config(model_dir, batchable_onnx)

    assert cfg.max_batch_size == 1
    assert not cfg.HasField("dynamic_batching")  # Triton adds a batcher only above 1


def test_graph_without_shape_needs_dims_in_config(model_dir: Path, write_config):
    onnx_path = write_onnx(
        model_dir / "1" / "model.onnx", [("x", FLOAT, None)], [("y", FLOAT, [3])]
    )

    with pytest.raises(InvalidArgument, match="gives no shape for input 'x'; state its dims"):
        load_model_config(model_dir, onnx_path)

    write_config('input [{ name: "x" dims: [3] }]')
    assert dims_of(load_model_config(model_dir, onnx_path).input) == {"x": [3]}


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            'input [{ name: "z" }]',
            "input 'z' is not an input of the ONNX graph \\(its inputs: 'x', 'ids'\\)",
        ),
        (
            'output [{ name: "x" }]',
            "output 'x' is not an output of the ONNX graph \\(its outputs: 'y', 'n'\\)",
        ),
        (
            'input [{ name: "x" data_type: TYPE_FP16 }]',
            "input 'x' has data_type TYPE_FP16 but the ONNX graph has TYPE_FP32",
        ),
        (
            'max_batch_size: 4 input [{ name: "x" dims: [4] }]',
            r"input 'x' has dims \[4\] but the ONNX graph's shape \(after the batch dimension\) "
            r"is \[3\]",
        ),
        (
            'input [{ name: "x" dims: [3] }]',
            r"input 'x' has dims \[3\] but the ONNX graph's shape is \[-1, 3\]",
        ),
        (
            'max_batch_size: 4 output [{ name: "y" dims: [3, 1] }]',
            r"output 'y' has dims \[3, 1\] but the ONNX graph's shape \(after the batch "
            r"dimension\) is \[3\]",
        ),
        (
            'max_batch_size: 4 input [{ name: "x" dims: [1, 3] reshape { shape: [1, 2] } }]',
            r"input 'x' has reshape \[1, 2\] but the ONNX graph's shape",
        ),
        (
            'max_batch_size: 4 output [{ name: "n" dims: [1] }]',
            r"output 'n' has dims \[1\] but the ONNX graph's shape \(after the batch "
            r"dimension\) is \[\]; a scalar per batch item is dims: \[1\] with "
            r"reshape: \{ shape: \[\] \}",
        ),
        (
            'max_batch_size: 4 input [{ name: "ids" dims: [3, 7] }]',
            r"input 'ids' has dims \[3, 7\] but the ONNX graph's shape \(after the batch "
            r"dimension\) is \[2, -1\]",
        ),
    ],
)
def test_config_contradicting_graph_is_rejected(
    model_dir: Path, batchable_onnx: Path, write_config, config: str, message: str
):
    path = write_config(config)

    with pytest.raises(InvalidArgument, match=f"^{re.escape(str(path))}: {message}"):
        load_model_config(model_dir, batchable_onnx)


def test_scalar_per_batch_item_is_dims_one_with_an_empty_reshape(
    model_dir: Path, batchable_onnx: Path, write_config
):
    write_config('max_batch_size: 4 output [{ name: "n" dims: [1] reshape { shape: [] } }]')

    cfg = load_model_config(model_dir, batchable_onnx)

    assert dims_of(cfg.output) == {"n": [1], "y": [3]}


def test_variable_config_dims_match_fixed_graph_dims(
    model_dir: Path, batchable_onnx: Path, write_config
):
    write_config('max_batch_size: 2 input [{ name: "x" dims: [-1] }, { name: "ids" dims: [2, 7] }]')

    cfg = load_model_config(model_dir, batchable_onnx)

    assert dims_of(cfg.input) == {"x": [-1], "ids": [2, 7]}


def test_batching_needs_dynamic_first_graph_dim(model_dir: Path, fixed_onnx: Path, write_config):
    path = write_config('max_batch_size: 8 input [{ name: "x" dims: [3] }]')

    with pytest.raises(
        InvalidArgument,
        match=rf"^{re.escape(str(path))}: max_batch_size 8 needs a dynamic first dimension "
        r"for input 'x', but the ONNX graph's shape is \[1, 3\]",
    ):
        load_model_config(model_dir, fixed_onnx)


def test_instance_group_defaults(model_dir: Path, batchable_onnx: Path, write_config):
    write_config("instance_group [{ kind: KIND_AUTO }, { count: 2 kind: KIND_GPU gpus: [0] }]")

    cfg = load_model_config(model_dir, batchable_onnx)

    assert [(g.count, pb.ModelInstanceGroup.Kind.Name(g.kind)) for g in cfg.instance_group] == [
        (1, "KIND_CPU"),
        (2, "KIND_GPU"),
    ]
