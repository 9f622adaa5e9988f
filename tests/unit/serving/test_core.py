"""The protocol-neutral core's checks on repository load requests."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from serving.core import InferenceCore
from serving.errors import InvalidArgument
from serving.examples import write_repository
from serving.manager import ModelManager
from serving.metrics import Metrics
from serving.settings import ControlMode, Settings


def _core(repo: Path) -> InferenceCore:
    settings = Settings(model_repository=repo, model_control_mode=ControlMode.EXPLICIT, cores=1)
    metrics = Metrics()
    return InferenceCore(settings, ModelManager(settings, metrics), metrics)


@pytest.mark.parametrize(
    ("parameters", "fragment"),
    [
        ({"file:1/model.onnx": b"\x00"}, "'file:' parameters"),
        ({"config": 42}, "JSON string or object"),
        ({"config": '{"max_batch_size": "lots"}'}, "max_batch_size"),
    ],
)
def test_bad_load_parameters_are_refused(tmp_path: Path, parameters: dict, fragment: str) -> None:
    write_repository(tmp_path, ["identity_fp32"])
    core = _core(tmp_path)

    async def scenario() -> None:
        await core.start()
        try:
            with pytest.raises(InvalidArgument, match=None) as info:
                await core.load_model("identity_fp32", parameters)
            assert fragment in info.value.message
            assert not core.model_ready("identity_fp32")
        finally:
            await core.close()

    asyncio.run(scenario())


def test_config_override_as_bytes_or_object(tmp_path: Path) -> None:
    write_repository(tmp_path, ["identity_fp32"])
    core = _core(tmp_path)

    async def scenario() -> None:
        await core.start()
        try:
            await core.load_model("identity_fp32", {"config": b'{"max_batch_size": 2}'})
            assert core.model_config("identity_fp32")["max_batch_size"] == 2
            await core.load_model("identity_fp32", {"config": {"max_batch_size": 3}})
            assert core.model_config("identity_fp32")["max_batch_size"] == 3
        finally:
            await core.close()

    asyncio.run(scenario())
