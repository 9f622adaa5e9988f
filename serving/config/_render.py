"""Model configs as Triton renders them (JSON) and as users write them (text format)."""

from __future__ import annotations

import inspect
import json
from typing import Any

from google.protobuf import json_format, text_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from serving.config import model_config_pb2 as pb
from serving.errors import InvalidArgument

__all__ = ["config_from_json", "config_to_json", "format_config"]

_INT64_TYPES = frozenset(
    {
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_FIXED64,
        FieldDescriptor.TYPE_SFIXED64,
    }
)

# protobuf renamed the option in 5.26; the old spelling went away in 6.
_PRINT_DEFAULTS = (
    "always_print_fields_with_no_presence"
    if "always_print_fields_with_no_presence"
    in inspect.signature(json_format.MessageToDict).parameters
    else "including_default_value_fields"
)

# Keys that tools read without checking for them first.
_ALWAYS_PRESENT = {
    "model_transaction_policy": {"decoupled": False},
    "response_cache": {"enable": False},
}


def config_to_json(cfg: pb.ModelConfig) -> dict[str, Any]:
    """Render ``cfg`` as Triton's config endpoint does.

    snake_case names, every field without presence printed (``"max_batch_size": 0``,
    ``[]``, ``""``), enum names as strings, and 64-bit integers as JSON numbers
    (json_format quotes them, Triton does not).
    """
    options: dict[str, Any] = {"preserving_proto_field_name": True, _PRINT_DEFAULTS: True}
    rendered = json_format.MessageToDict(cfg, **options)
    _unquote_int64(rendered, cfg.DESCRIPTOR)  # type: ignore[arg-type]
    for key, default in _ALWAYS_PRESENT.items():
        rendered.setdefault(key, dict(default))
        for inner, value in default.items():
            rendered[key].setdefault(inner, value)
    return rendered


def _unquote_int64(obj: dict[str, Any], descriptor: Descriptor) -> None:
    for field in descriptor.fields:
        if field.name not in obj:
            continue
        value = obj[field.name]
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            for key, item in value.items():
                value[key] = _unquote_value(item, value_field)
        elif field.is_repeated:
            obj[field.name] = [_unquote_value(item, field) for item in value]
        else:
            obj[field.name] = _unquote_value(value, field)


def _unquote_value(value: Any, field: FieldDescriptor) -> Any:
    if field.message_type is not None:
        _unquote_int64(value, field.message_type)
        return value
    if field.type in _INT64_TYPES:
        return int(value)
    return value


def config_from_json(obj: dict[str, Any] | str) -> pb.ModelConfig:
    """Parse a JSON config (the ``parameters.config`` of a repository load request)."""
    try:
        data = json.loads(obj) if isinstance(obj, str | bytes) else obj
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"model config override is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidArgument(
            f"model config override must be a JSON object, got {type(data).__name__}"
        )
    try:
        return json_format.ParseDict(data, pb.ModelConfig())
    except json_format.ParseError as exc:
        raise InvalidArgument(f"invalid model config override: {exc}") from None


def format_config(cfg: pb.ModelConfig, fmt: str) -> str:
    """``fmt`` "pbtxt" gives protobuf text format, "json" Triton's JSON, pretty-printed."""
    if fmt == "pbtxt":
        return text_format.MessageToString(cfg)
    if fmt == "json":
        return json.dumps(config_to_json(cfg), indent=2) + "\n"
    raise InvalidArgument(f"unknown config format {fmt!r}; expected 'pbtxt' or 'json'")
