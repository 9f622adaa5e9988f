from __future__ import annotations

import re
from pathlib import Path

import pytest

from serving.config import load_model_config, validate_config
from serving.config import model_config_pb2 as pb
from serving.errors import InvalidArgument, Unsupported

VALID_TENSORS = """
input [{ name: "x" data_type: TYPE_FP32 dims: [3] }]
output [{ name: "y" data_type: TYPE_FP32 dims: [3] }]
"""


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("max_batch_size: -1", "max_batch_size must be >= 0, got -1"),
        ("input [{ data_type: TYPE_FP32 dims: [1] }]", "every input needs a name"),
        (
            'input [{ name: "x" data_type: TYPE_FP32 dims: [1] },'
            ' { name: "x" data_type: TYPE_FP32 dims: [1] }]',
            "input 'x' is listed more than once",
        ),
        (
            'output [{ name: "y" data_type: TYPE_FP32 dims: [1] },'
            ' { name: "y" data_type: TYPE_FP32 dims: [1] }]',
            "output 'y' is listed more than once",
        ),
        ('input [{ name: "x" dims: [1] }]', "input 'x' has no data_type"),
        ('output [{ name: "y" data_type: TYPE_FP32 }]', "output 'y' has no dims"),
        (
            'input [{ name: "x" data_type: TYPE_FP32 dims: [2, 0] }]',
            r"input 'x' has dims \[2, 0\]; each dim must be positive or -1",
        ),
        (
            'output [{ name: "y" data_type: TYPE_FP32 dims: [-2] }]',
            r"output 'y' has dims \[-2\]; each dim must be positive or -1",
        ),
        (
            "version_policy { latest { num_versions: 0 } }",
            "version_policy latest needs num_versions >= 1, got 0",
        ),
        ("version_policy { specific { } }", "version_policy specific lists no versions"),
        (
            "version_policy { specific { versions: [2, -1] } }",
            r"version_policy specific has negative versions \[-1\]",
        ),
        ("instance_group [{ count: -2 }]", r"instance_group\[0\] needs count >= 1, got -2"),
        (
            "instance_group [{ count: 1 kind: KIND_CPU gpus: [0] }]",
            r"instance_group\[0\] lists gpus but its kind is KIND_CPU",
        ),
        (
            "instance_group [{ kind: KIND_GPU gpus: [-1] }]",
            r"instance_group\[0\] has negative gpus \[-1\]",
        ),
        (
            "max_batch_size: 0 dynamic_batching { }",
            r"dynamic_batching needs max_batch_size > 0; this model does not batch",
        ),
        (
            "max_batch_size: 8 dynamic_batching { preferred_batch_size: [4, 16] }",
            "dynamic_batching preferred_batch_size 16 must be between 1 and max_batch_size 8",
        ),
        (
            "max_batch_size: 8 dynamic_batching { preferred_batch_size: [0] }",
            "dynamic_batching preferred_batch_size 0 must be between 1 and max_batch_size 8",
        ),
        (
            "max_batch_size: 8 dynamic_batching { priority_levels: 2 default_priority_level: 3 }",
            "dynamic_batching default_priority_level must be between 1 and priority_levels 2, "
            "got 3",
        ),
    ],
)
def test_invalid_config_is_rejected_with_a_precise_message(
    model_dir: Path, write_config, config: str, message: str
):
    tensors = "" if "input [" in config or "output [" in config else VALID_TENSORS
    path = write_config(config + tensors)

    with pytest.raises(InvalidArgument, match=f"^{re.escape(str(path))}: {message}"):
        load_model_config(model_dir)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            "instance_group [{ kind: KIND_MODEL }]",
            r"instance_group\[0\] has kind KIND_MODEL; ONNX Runtime models run on KIND_CPU or "
            "KIND_GPU",
        ),
        ("sequence_batching { }", "sequence_batching is not supported by Sluice"),
    ],
)
def test_unsupported_features_are_named(model_dir: Path, write_config, config: str, message: str):
    path = write_config(config + VALID_TENSORS)

    with pytest.raises(Unsupported, match=f"^{re.escape(str(path))}: {message}"):
        load_model_config(model_dir)


@pytest.mark.parametrize("config", ["ensemble_scheduling { }", 'platform: "ensemble"'])
def test_ensemble_scheduling_and_the_ensemble_platform_go_together(
    model_dir: Path, write_config, config: str
):
    path = write_config(config + VALID_TENSORS)

    with pytest.raises(InvalidArgument, match=f"^{re.escape(str(path))}: ensemble_scheduling and"):
        load_model_config(model_dir)


def test_valid_config_passes_validation(model_dir: Path, write_config):
    write_config(
        "max_batch_size: 8 dynamic_batching { preferred_batch_size: [8] priority_levels: 2 "
        "default_priority_level: 1 }" + VALID_TENSORS
    )

    cfg = load_model_config(model_dir)

    assert list(cfg.dynamic_batching.preferred_batch_size) == [8]


def test_validate_config_names_its_source():
    cfg = pb.ModelConfig(max_batch_size=-3)

    with pytest.raises(InvalidArgument, match=r"^override: max_batch_size must be >= 0, got -3"):
        validate_config(cfg, "override")


BATCHING_TENSORS = """
max_batch_size: 8
input [{ name: "x" data_type: TYPE_FP32 dims: [3] }]
output [{ name: "y" data_type: TYPE_FP32 dims: [3] }]
"""


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            "dynamic_batching { priority_levels: 1048576 default_priority_level: 1 }",
            "dynamic_batching.priority_levels 1048576 exceeds the limit of 10000",
        ),
        (
            "dynamic_batching { priority_levels: 2147483648 default_priority_level: 1 }",
            "dynamic_batching.priority_levels 2147483648 exceeds the limit of 10000",
        ),
        (
            "dynamic_batching { default_priority_level: 3 }",
            "dynamic_batching.default_priority_level must be 0 or 1 when priority_levels is 0, "
            "got 3",
        ),
        (
            "dynamic_batching { max_queue_delay_microseconds: 18446744073709551615 }",
            "dynamic_batching.max_queue_delay_microseconds 18446744073709551615 exceeds the "
            "limit of 3600000000",
        ),
        (
            "dynamic_batching { default_queue_policy { max_queue_size: 4294967295 } }",
            "dynamic_batching.default_queue_policy.max_queue_size 4294967295 exceeds the "
            "limit of 16777216",
        ),
        (
            "dynamic_batching { default_queue_policy { default_timeout_microseconds: "
            "99999999999999 } }",
            "dynamic_batching.default_queue_policy.default_timeout_microseconds 99999999999999 "
            "exceeds the limit of 3600000000",
        ),
        (
            "dynamic_batching { priority_levels: 2 default_priority_level: 1 "
            "priority_queue_policy { key: 2 value { max_queue_size: 16777217 } } }",
            r"dynamic_batching.priority_queue_policy\[2\].max_queue_size 16777217 exceeds the "
            "limit of 16777216",
        ),
        (
            "dynamic_batching { priority_levels: 2 default_priority_level: 1 "
            "priority_queue_policy { key: 3 value { } } }",
            r"dynamic_batching.priority_queue_policy key 3 is not a priority level \(1 to 2\)",
        ),
        (
            "dynamic_batching { default_queue_policy { timeout_action: 7 } }",
            "dynamic_batching.default_queue_policy.timeout_action 7 is not REJECT or DELAY",
        ),
        (
            "instance_group [{ count: 10000 kind: KIND_CPU }]",
            r"instance_group\[0\].count 10000 exceeds the limit of 64",
        ),
        (
            "instance_group [{ count: 40 kind: KIND_CPU }, { count: 40 kind: KIND_CPU }]",
            "instance_group asks for 80 instances in all, over the limit of 64",
        ),
        (
            "instance_group [{ count: 20 kind: KIND_GPU gpus: [0, 1, 2, 3] }]",
            "instance_group asks for 80 instances in all, over the limit of 64",
        ),
        (
            "version_policy { latest { num_versions: 4294967295 } }",
            "version_policy.latest.num_versions 4294967295 exceeds the limit of 1000",
        ),
        (
            'model_warmup [{ name: "w" batch_size: 9 count: 1 inputs { key: "x" value { '
            "data_type: TYPE_FP32 dims: [3] zero_data: true } } }]",
            r"model_warmup\[0\].batch_size 9 exceeds max_batch_size 8",
        ),
        (
            'model_warmup [{ name: "w" batch_size: 1 count: 4294967295 inputs { key: "x" '
            "value { data_type: TYPE_FP32 dims: [3] zero_data: true } } }]",
            r"model_warmup\[0\].count 4294967295 exceeds the limit of 1000",
        ),
        (
            'model_warmup [{ name: "w" batch_size: 8 count: 1 inputs { key: "x" value { '
            "data_type: TYPE_FP32 dims: [65536, 65536] zero_data: true } } }]",
            r"model_warmup\[0\].inputs\['x'\] holds 34359738368 elements \(batch_size x dims\), "
            "over the limit of 268435456",
        ),
        (
            'model_warmup [{ name: "w" count: 1 inputs { key: "x" value { '
            "data_type: TYPE_FP32 dims: [3, -1] zero_data: true } } }]",
            r"model_warmup\[0\].inputs\['x'\].dims \[3, -1\]: each dim must be positive",
        ),
    ],
)
def test_counts_and_sizes_over_their_limits_are_refused_naming_the_field(
    model_dir: Path, write_config, config: str, message: str
):
    path = write_config(config + BATCHING_TENSORS)

    with pytest.raises(InvalidArgument, match=f"^{re.escape(str(path))}: {message}"):
        load_model_config(model_dir)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("max_batch_size: 2000000", "max_batch_size 2000000 exceeds the limit of 1048576"),
        (
            'input [{ name: "x" data_type: TYPE_FP32 dims: [' + ", ".join(["1"] * 65) + "] }]",
            "input 'x' has 65 dims, over the limit of 64",
        ),
        (
            'input [{ name: "x" data_type: TYPE_FP32 dims: [4294967296] }]',
            r"input 'x' dim 4294967296 exceeds the limit of 2147483647",
        ),
        (
            'output [{ name: "y" data_type: TYPE_FP32 dims: [65536, 65536] }]',
            r"output 'y' dims \[65536, 65536\] hold 4294967296 elements per batch item, over "
            "the limit of 2147483647",
        ),
        (
            'output [{ name: "y" data_type: TYPE_FP32 dims: [4] reshape { shape: [4294967296] } }]',
            r"output 'y' reshape dim 4294967296 exceeds the limit of 2147483647",
        ),
    ],
)
def test_tensor_dims_over_their_limits_are_refused(
    model_dir: Path, write_config, config: str, message: str
):
    tensors = "" if "input [" in config or "output [" in config else VALID_TENSORS
    path = write_config(config + tensors)

    with pytest.raises(InvalidArgument, match=f"^{re.escape(str(path))}: {message}"):
        load_model_config(model_dir)


def test_limits_at_their_edge_are_accepted(model_dir: Path, write_config):
    write_config(
        "max_batch_size: 1048576 dynamic_batching { priority_levels: 10000 "
        "default_priority_level: 10000 max_queue_delay_microseconds: 3600000000 "
        "default_queue_policy { max_queue_size: 16777216 } }"
        " instance_group [{ count: 32 kind: KIND_CPU }, { count: 32 kind: KIND_CPU }]"
        ' input [{ name: "x" data_type: TYPE_FP32 dims: [' + ", ".join(["1"] * 64) + "] }]"
        ' output [{ name: "y" data_type: TYPE_FP32 dims: [2147483647] }]'
    )

    cfg = load_model_config(model_dir)

    assert cfg.dynamic_batching.priority_levels == 10000


def test_a_load_override_goes_through_the_same_limits(model_dir: Path, write_config):
    from serving.config import config_from_json

    write_config("max_batch_size: 8 dynamic_batching { }" + VALID_TENSORS)
    override = config_from_json(
        {
            "max_batch_size": 8,
            "dynamic_batching": {"priority_levels": 2**31, "default_priority_level": 1},
            "input": [{"name": "x", "data_type": "TYPE_FP32", "dims": [3]}],
            "output": [{"name": "y", "data_type": "TYPE_FP32", "dims": [3]}],
        }
    )

    with pytest.raises(
        InvalidArgument,
        match=r"^config override of model 'tiny': dynamic_batching\.priority_levels 2147483648 "
        r"exceeds the limit of 10000",
    ):
        load_model_config(model_dir, config=override)
