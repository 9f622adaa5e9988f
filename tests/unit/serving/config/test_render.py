from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.protobuf import text_format

from serving.config import (
    config_from_json,
    config_to_json,
    format_config,
    load_model_config,
)
from serving.config import model_config_pb2 as pb
from serving.errors import InvalidArgument


@pytest.fixture
def derived(model_dir: Path, fixed_onnx: Path) -> pb.ModelConfig:
    return load_model_config(model_dir, fixed_onnx)


def test_defaults_are_printed_as_triton_prints_them(derived: pb.ModelConfig):
    rendered = config_to_json(derived)

    assert rendered["max_batch_size"] == 0
    assert rendered["input"][0] == {
        "name": "x",
        "data_type": "TYPE_FP32",
        "format": "FORMAT_NONE",
        "dims": [1, 3],
        "is_shape_tensor": False,
        "allow_ragged_batch": False,
        "optional": False,
        "is_non_linear_format_io": False,
    }
    assert rendered["instance_group"][0]["kind"] == "KIND_CPU"
    assert rendered["instance_group"][0]["count"] == 1
    assert rendered["platform"] == "onnxruntime_onnx"
    assert rendered["backend"] == "onnxruntime"
    assert rendered["version_policy"] == {"latest": {"num_versions": 1}}
    assert rendered["default_model_filename"] == ""
    assert rendered["model_warmup"] == []
    assert "dynamic_batching" not in rendered


def test_transaction_policy_and_response_cache_keys_always_exist(derived: pb.ModelConfig):
    for cfg in (derived, pb.ModelConfig(name="bare")):
        rendered = config_to_json(cfg)

        assert rendered["model_transaction_policy"] == {"decoupled": False}
        assert rendered["response_cache"] == {"enable": False}


def test_stated_cache_setting_is_kept():
    rendered = config_to_json(pb.ModelConfig(response_cache=pb.ModelResponseCache(enable=True)))

    assert rendered["response_cache"] == {"enable": True}


def test_64_bit_integers_are_json_numbers():
    cfg = text_format.Parse(
        """
        input [{ name: "x" data_type: TYPE_FP32 dims: [-1, 9007199254740993] }]
        version_policy { specific { versions: [1, 2] } }
        dynamic_batching {
          max_queue_delay_microseconds: 100
          priority_levels: 2
          priority_queue_policy { key: 1 value { default_timeout_microseconds: 7 } }
        }
        """,
        pb.ModelConfig(),
    )
    ensemble = pb.ModelConfig(
        ensemble_scheduling=pb.ModelEnsembling(
            step=[pb.ModelEnsembling.Step(model_name="m", model_version=-1)]
        )
    )

    rendered = config_to_json(cfg)
    text = json.dumps(rendered)

    assert rendered["input"][0]["dims"] == [-1, 9007199254740993]
    assert rendered["version_policy"] == {"specific": {"versions": [1, 2]}}
    assert '"max_queue_delay_microseconds": 100' in text
    assert (
        rendered["dynamic_batching"]["priority_queue_policy"]["1"]["default_timeout_microseconds"]
        == 7
    )
    step = config_to_json(ensemble)["ensemble_scheduling"]["step"][0]
    assert step["model_version"] == -1
    assert '"100"' not in text and '"7"' not in text


def test_json_round_trip_is_lossless(model_dir: Path, batchable_onnx: Path):
    cfg = load_model_config(model_dir, batchable_onnx)

    assert config_from_json(config_to_json(cfg)) == cfg
    assert config_from_json(json.dumps(config_to_json(cfg))) == cfg


def test_config_from_json_accepts_quoted_and_unquoted_int64():
    cfg = config_from_json('{"input": [{"name": "x", "dims": ["4", 5]}]}')

    assert list(cfg.input[0].dims) == [4, 5]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("{not json", "model config override is not valid JSON"),
        ("[1, 2]", "model config override must be a JSON object, got list"),
        ({"max_batch_sze": 1}, "invalid model config override: .*max_batch_sze"),
        ({"input": [{"data_type": "TYPE_FLOAT"}]}, "invalid model config override: .*TYPE_FLOAT"),
    ],
)
def test_config_from_json_rejects_bad_overrides(payload, message: str):
    with pytest.raises(InvalidArgument, match=message):
        config_from_json(payload)


def test_format_config_pbtxt_parses_back(derived: pb.ModelConfig):
    text = format_config(derived, "pbtxt")

    assert 'platform: "onnxruntime_onnx"' in text
    assert text_format.Parse(text, pb.ModelConfig()) == derived


def test_format_config_json_is_pretty_triton_json(derived: pb.ModelConfig):
    text = format_config(derived, "json")

    assert text.startswith('{\n  "name": "tiny",')
    assert json.loads(text) == config_to_json(derived)


def test_format_config_rejects_unknown_format(derived: pb.ModelConfig):
    with pytest.raises(InvalidArgument, match="unknown config format 'yaml'"):
        format_config(derived, "yaml")
