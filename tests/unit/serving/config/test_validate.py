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
        ("ensemble_scheduling { }", "ensemble_scheduling is not supported by Sluice"),
    ],
)
def test_unsupported_features_are_named(model_dir: Path, write_config, config: str, message: str):
    path = write_config(config + VALID_TENSORS)

    with pytest.raises(Unsupported, match=f"^{re.escape(str(path))}: {message}"):
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
