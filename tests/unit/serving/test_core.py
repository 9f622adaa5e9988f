"""The protocol-neutral core's checks on repository load requests."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from serving.core import InferenceCore
from serving.errors import InvalidArgument, Unsupported
from serving.examples import write_repository
from serving.grpc import codec as grpc_codec
from serving.grpc import grpc_service_pb2 as grpc_pb
from serving.http import request_codec
from serving.manager import ModelManager
from serving.metrics import Metrics
from serving.settings import ControlMode, Settings
from serving.types import InferRequest


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


def _shm_core(repo: Path, *, enabled: bool = True) -> InferenceCore:
    settings = Settings(model_repository=repo, cores=1, shared_memory=enabled)
    metrics = Metrics()
    return InferenceCore(settings, ModelManager(settings, metrics), metrics)


_IN = {"shared_memory_region": "r", "shared_memory_offset": 8, "shared_memory_byte_size": 8}
_OUT = {"shared_memory_region": "r", "shared_memory_offset": 32, "shared_memory_byte_size": 16}


def _wire_request(protocol: str, inputs: dict | None, outputs: dict | None = None) -> InferRequest:
    """An identity_fp32 request as each front end decodes it: INPUT0 placed by ``inputs``
    (None: sent inline), OUTPUT0 placed by ``outputs`` (None: returned inline)."""
    if protocol == "http":
        tensor: dict[str, Any] = {"name": "INPUT0", "datatype": "FP32", "shape": [1, 2]}
        if inputs is None:
            tensor["data"] = [1.0, 2.0]
        else:
            tensor["parameters"] = inputs
        body: dict[str, Any] = {"inputs": [tensor]}
        if outputs is not None:
            body["outputs"] = [{"name": "OUTPUT0", "parameters": outputs}]
        return request_codec.decode_infer_request(
            json.dumps(body).encode(), model_name="identity_fp32", model_version="",
            content_type=None, header_length=None,
        )  # fmt: skip
    msg = grpc_pb.ModelInferRequest(model_name="identity_fp32")
    entry = msg.inputs.add(name="INPUT0", datatype="FP32", shape=[1, 2])
    if inputs is None:
        entry.contents.fp32_contents.extend([1.0, 2.0])
    else:
        entry.parameters.MergeFrom(_grpc_parameters(inputs))
    if outputs is not None:
        msg.outputs.add(name="OUTPUT0").parameters.MergeFrom(_grpc_parameters(outputs))
    return grpc_codec.decode_infer_request(msg)


def _grpc_parameters(values: dict) -> Any:
    msg = grpc_pb.ModelInferRequest()
    grpc_codec.encode_parameters(values, msg.parameters)
    return msg.parameters


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_the_core_reads_and_writes_shared_memory_for_both_front_ends(
    tmp_path: Path, shm_key: str, protocol: str
) -> None:
    write_repository(tmp_path, ["identity_fp32"])
    shm = Path("/dev/shm") / shm_key[1:]
    with shm.open("r+b") as f:
        f.seek(8)
        f.write(np.array([1.5, 2.5], dtype=np.float32).tobytes())
    core = _shm_core(tmp_path)

    async def scenario() -> None:
        await core.start()
        try:
            core.shm_register("r", shm_key, 0, 64)
            request = _wire_request(protocol, _IN, _OUT)
            assert request.shared_memory_inputs  # the front end only translated
            response = await core.infer(request)
            np.testing.assert_array_equal(response.outputs[0].data, [[1.5, 2.5]])
            assert response.placed == {"OUTPUT0": {**_OUT, "shared_memory_byte_size": 8}}
            written = np.frombuffer(shm.read_bytes()[32:40], dtype=np.float32)
            np.testing.assert_array_equal(written, [1.5, 2.5])
            # an offset past the region is refused before anything is read
            with pytest.raises(InvalidArgument, match="exceeds the 64 bytes"):
                await core.infer(_wire_request(protocol, {**_IN, "shared_memory_offset": 60}))
        finally:
            await core.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_shared_memory_inputs_need_the_extension_on(tmp_path: Path, protocol: str) -> None:
    write_repository(tmp_path, ["identity_fp32"])
    core = _shm_core(tmp_path, enabled=False)

    async def scenario() -> None:
        await core.start()
        try:
            with pytest.raises(Unsupported, match="--allow-shared-memory"):
                await core.infer(_wire_request(protocol, _IN))
            with pytest.raises(Unsupported, match="--allow-shared-memory"):
                await core.infer(_wire_request(protocol, None, _OUT))
        finally:
            await core.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("model", ["identity_fp32", "simple"])
def test_raw_input_shape_carries_the_batch_dimension(tmp_path: Path, model: str) -> None:
    write_repository(tmp_path, ["identity_fp32", "simple"])
    core = _shm_core(tmp_path)

    async def scenario() -> None:
        await core.start()
        try:
            batching = core.model_config(model)["max_batch_size"] > 0
            meta = core.model_metadata(model)["inputs"]
            if len(meta) != 1:
                with pytest.raises(InvalidArgument, match="exactly one input"):
                    core.raw_input(model)
                return
            spec = core.raw_input(model)
            shape = (1, *meta[0]["shape"][1:]) if batching else tuple(meta[0]["shape"])
            assert (spec.name, spec.datatype, spec.shape) == (meta[0]["name"], meta[0]["datatype"], shape)  # fmt: skip
        finally:
            await core.close()

    asyncio.run(scenario())
