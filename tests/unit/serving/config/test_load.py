from __future__ import annotations

from pathlib import Path

import pytest

from serving.config import (
    config_from_json,
    describe_model_dir,
    load_model_config,
    parse_config_file,
)
from serving.config import (
    model_config_pb2 as pb,
)
from serving.errors import InvalidArgument, NotFound, Unsupported
from tests.unit.serving.config.tiny_onnx import FLOAT, write_onnx

TRITON_CONFIG = """
name: "tiny"
platform: "onnxruntime_onnx"
max_batch_size: 8
version_policy: { specific: { versions: [1, 3] } }
input [
  {
    name: "x"
    data_type: TYPE_FP32
    dims: [ 3 ]
  },
  {
    name: "ids"
    data_type: TYPE_INT64
    dims: [ 2, -1 ]
    allow_ragged_batch: true
  }
]
output [
  { name: "y", data_type: TYPE_FP32, dims: [ 3 ] },
  { name: "n", data_type: TYPE_INT64, dims: [ 1 ], reshape: { shape: [ ] } }
]
instance_group [ { count: 2, kind: KIND_CPU } ]
dynamic_batching {
  preferred_batch_size: [ 4, 8 ]
  max_queue_delay_microseconds: 100
  default_queue_policy { timeout_action: DELAY default_timeout_microseconds: 5000 }
}
optimization {
  execution_accelerators {
    cpu_execution_accelerator [
      { name: "openvino" parameters { key: "device_type" value: "CPU" } }
    ]
  }
}
model_warmup [
  {
    name: "zeros"
    batch_size: 2
    inputs { key: "x" value: { data_type: TYPE_FP32 dims: [ 3 ] zero_data: true } }
  }
]
parameters { key: "intra_op_thread_count" value: { string_value: "2" } }
response_cache { enable: true }
"""


def test_no_config_derives_everything_from_the_graph(model_dir: Path, batchable_onnx: Path):
    cfg = load_model_config(model_dir, batchable_onnx)

    assert cfg.name == "tiny"
    assert (cfg.platform, cfg.backend) == ("onnxruntime_onnx", "onnxruntime")
    assert cfg.max_batch_size == 4
    assert [(i.name, pb.DataType.Name(i.data_type), list(i.dims)) for i in cfg.input] == [
        ("x", "TYPE_FP32", [3]),
        ("ids", "TYPE_INT64", [2, -1]),
    ]
    assert [(o.name, list(o.dims), o.HasField("reshape")) for o in cfg.output] == [
        ("y", [3], False),
        ("n", [1], True),
    ]
    assert cfg.HasField("dynamic_batching")
    assert [(g.count, g.kind) for g in cfg.instance_group] == [(1, pb.ModelInstanceGroup.KIND_CPU)]
    assert cfg.version_policy.latest.num_versions == 1


def test_initializers_listed_as_graph_inputs_are_not_model_inputs(
    model_dir: Path, batchable_onnx: Path
):
    cfg = load_model_config(model_dir, batchable_onnx)
    assert "weight" not in [i.name for i in cfg.input]


def test_realistic_triton_config_parses_as_written(
    model_dir: Path, batchable_onnx: Path, write_config
):
    write_config(TRITON_CONFIG)

    cfg = load_model_config(model_dir, batchable_onnx)

    assert cfg.max_batch_size == 8
    assert list(cfg.version_policy.specific.versions) == [1, 3]
    assert cfg.input[1].allow_ragged_batch
    assert list(cfg.dynamic_batching.preferred_batch_size) == [4, 8]
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 100
    assert cfg.dynamic_batching.default_queue_policy.timeout_action == pb.ModelQueuePolicy.DELAY
    (accelerator,) = cfg.optimization.execution_accelerators.cpu_execution_accelerator
    assert accelerator.name == "openvino"
    assert dict(accelerator.parameters) == {"device_type": "CPU"}
    assert cfg.model_warmup[0].inputs["x"].zero_data
    assert cfg.parameters["intra_op_thread_count"].string_value == "2"
    assert cfg.response_cache.enable
    assert [(g.count, g.kind) for g in cfg.instance_group] == [(2, pb.ModelInstanceGroup.KIND_CPU)]
    assert cfg.backend == "onnxruntime"


def test_partial_config_keeps_what_it_states_and_adds_the_rest(
    model_dir: Path, batchable_onnx: Path, write_config
):
    write_config(
        'max_batch_size: 16\ninput [{ name: "ids" allow_ragged_batch: true }]\n'
        "instance_group [{ kind: KIND_AUTO }]\n"
    )

    cfg = load_model_config(model_dir, batchable_onnx)

    assert cfg.max_batch_size == 16
    assert [(i.name, pb.DataType.Name(i.data_type), list(i.dims)) for i in cfg.input] == [
        ("ids", "TYPE_INT64", [2, -1]),
        ("x", "TYPE_FP32", [3]),
    ]
    assert cfg.input[0].allow_ragged_batch
    assert [o.name for o in cfg.output] == ["y", "n"]
    assert [(g.count, g.kind) for g in cfg.instance_group] == [(1, pb.ModelInstanceGroup.KIND_CPU)]


def test_syntax_error_names_file_and_line(model_dir: Path, batchable_onnx: Path, write_config):
    path = write_config('name: "tiny"\nmax_batch_sze: 4\n')

    with pytest.raises(InvalidArgument) as caught:
        load_model_config(model_dir, batchable_onnx)

    assert caught.value.message.startswith(f"{path}:2:1: ")
    assert "max_batch_sze" in caught.value.message


def test_bad_value_error_names_file_line_and_column(model_dir: Path, write_config):
    path = write_config('name: "tiny"\ninput [{ name: "x" dims: [3, } ]\n')

    with pytest.raises(InvalidArgument, match=rf"^{path}:2:"):
        parse_config_file(path)


def test_config_name_must_match_directory(model_dir: Path, batchable_onnx: Path, write_config):
    write_config('name: "other"')

    with pytest.raises(
        InvalidArgument,
        match="names the model 'other' but its directory is 'tiny'",
    ):
        load_model_config(model_dir, batchable_onnx)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('platform: "tensorrt_plan"', "platform 'tensorrt_plan' is not supported"),
        ('backend: "pytorch"', "backend 'pytorch' is not supported"),
    ],
)
def test_other_platforms_are_rejected(
    model_dir: Path, batchable_onnx: Path, write_config, line: str, message: str
):
    write_config(line)

    with pytest.raises(Unsupported, match=message):
        load_model_config(model_dir, batchable_onnx)


def test_override_replaces_config_file(model_dir: Path, batchable_onnx: Path, write_config):
    write_config("max_batch_size: 2")
    override = config_from_json({"max_batch_size": 0, "input": [{"name": "x"}]})

    cfg = load_model_config(model_dir, batchable_onnx, config=override)

    assert cfg.max_batch_size == 0
    assert list(cfg.input[0].dims) == [-1, 3]


def test_without_onnx_file_only_defaults_are_filled(model_dir: Path, write_config):
    write_config('input [{ name: "x" data_type: TYPE_FP32 dims: [3] }]')

    cfg = load_model_config(model_dir)

    assert cfg.name == "tiny"
    assert [i.name for i in cfg.input] == ["x"]
    assert not cfg.output


def test_unreadable_onnx_file_is_reported(model_dir: Path):
    broken = model_dir / "1" / "model.onnx"
    broken.parent.mkdir()
    broken.write_bytes(b"\xff not a protobuf")

    with pytest.raises(InvalidArgument, match="is not a readable ONNX model"):
        load_model_config(model_dir, broken)


def test_describe_model_dir_uses_highest_version(model_dir: Path):
    write_onnx(model_dir / "2" / "model.onnx", [("x", FLOAT, [1, 3])], [("y", FLOAT, [1, 3])])
    write_onnx(model_dir / "10" / "model.onnx", [("a", FLOAT, [1, 5])], [("b", FLOAT, [1, 5])])
    (model_dir / "latest").mkdir()

    cfg = describe_model_dir(model_dir)

    assert [i.name for i in cfg.input] == ["a"]


def test_describe_model_dir_honours_default_model_filename(model_dir: Path, write_config):
    write_config('default_model_filename: "net.onnx"')
    write_onnx(model_dir / "1" / "net.onnx", [("a", FLOAT, [1, 5])], [("b", FLOAT, [1, 5])])

    cfg = describe_model_dir(model_dir)

    assert [o.name for o in cfg.output] == ["b"]
    assert cfg.default_model_filename == "net.onnx"


def test_describe_model_dir_without_versions(model_dir: Path):
    with pytest.raises(NotFound, match="no numeric version directory"):
        describe_model_dir(model_dir)


def test_describe_model_dir_without_model_file(model_dir: Path):
    (model_dir / "1").mkdir()

    with pytest.raises(NotFound, match=r"model file .*1/model\.onnx does not exist"):
        describe_model_dir(model_dir)
