"""Model configuration: Triton's schema, read from config.pbtxt, completed from the ONNX graph."""

from serving.config import model_config_pb2
from serving.config._load import describe_model_dir, load_model_config, parse_config_file
from serving.config._padding import PAD_PREFIX, PAD_RULE, OutputCut, PaddingPlan, padding_plan
from serving.config._render import config_from_json, config_to_json, format_config
from serving.config._validate import validate_config
from serving.config.model_config_pb2 import ModelConfig, ModelVersionPolicy

__all__ = [
    "PAD_PREFIX",
    "PAD_RULE",
    "ModelConfig",
    "ModelVersionPolicy",
    "OutputCut",
    "PaddingPlan",
    "config_from_json",
    "config_to_json",
    "describe_model_dir",
    "format_config",
    "load_model_config",
    "model_config_pb2",
    "padding_plan",
    "parse_config_file",
    "validate_config",
]
