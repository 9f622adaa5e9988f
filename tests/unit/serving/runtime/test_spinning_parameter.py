"""The ``allow_spinning`` config parameter forces ONNX Runtime's thread spinning either way."""

import pytest
from google.protobuf import text_format

from serving.config import model_config_pb2
from serving.errors import InvalidArgument
from serving.runtime.options import build_session_options, derive_settings


def _config(value: str | None) -> model_config_pb2.ModelConfig:
    text = (
        ""
        if value is None
        else f'parameters [ {{ key: "allow_spinning" value: {{ string_value: "{value}" }} }} ]'
    )
    return text_format.Parse(text, model_config_pb2.ModelConfig(name="m"))


def _spin(value: str | None, instances: int) -> tuple[str, str]:
    options = build_session_options(derive_settings(_config(value), instances=instances, cores=2))
    return (
        options.get_session_config_entry("session.intra_op.allow_spinning"),
        options.get_session_config_entry("session.inter_op.allow_spinning"),
    )


def test_without_the_parameter_one_instance_spins_and_several_do_not() -> None:
    assert _spin(None, 1) == ("1", "1")
    assert _spin(None, 2) == ("0", "0")


def test_the_parameter_forces_spinning_off_and_on() -> None:
    assert _spin("false", 1) == ("0", "0")
    assert _spin("true", 3) == ("1", "1")


def test_a_value_that_is_not_a_flag_is_refused() -> None:
    with pytest.raises(
        InvalidArgument, match="parameter 'allow_spinning' must be true or false, got 'sometimes'"
    ):
        derive_settings(_config("sometimes"), instances=1)
