"""The servicer behind a real in-process grpc.aio server: the stream RPC's own decoding."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import numpy as np
import pytest

from serving.core import InferenceCore
from serving.examples import write_repository
from serving.grpc import grpc_service_pb2 as pb
from serving.grpc import grpc_service_pb2_grpc as pb_grpc
from serving.grpc.server import GrpcServer
from serving.manager import ModelManager
from serving.metrics import Metrics
from serving.settings import Settings

STREAM = "/inference.GRPCInferenceService/ModelStreamInfer"


def _request(request_id: str, value: float, model: str = "identity_fp32") -> bytes:
    msg = pb.ModelInferRequest(model_name=model, id=request_id)
    msg.inputs.add(name="INPUT0", datatype="FP32", shape=[1, 3])
    msg.raw_input_contents.append(np.full((1, 3), value, dtype=np.float32).tobytes())
    return msg.SerializeToString()


async def _serving(repo: Path, scenario) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(model_repository=repo, cores=1)
    metrics = Metrics()
    core = InferenceCore(settings, ModelManager(settings, metrics), metrics)
    await core.start()
    server = GrpcServer(core)
    try:
        port = await server.start("127.0.0.1", 0)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            await scenario(channel)
    finally:
        await server.stop(0)
        await core.close()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    write_repository(tmp_path, ["identity_fp32"])
    return tmp_path


def test_every_message_of_a_pipelined_stream_is_answered(repo: Path) -> None:
    """All messages go out before any answer comes back, so answers in flight when the
    undecodable one arrives must still come."""
    messages = [
        _request("a", 1),
        b"\x0a\xff\xff\xff\xff\x0f truncated field",
        _request("b", 2, model="nope"),
        _request("c", 3),
    ]

    async def scenario(channel: grpc.aio.Channel) -> None:
        call = channel.stream_stream(
            STREAM,
            request_serializer=None,
            response_deserializer=pb.ModelStreamInferResponse.FromString,
        )(iter(messages))
        answers = [answer async for answer in call]
        assert await call.code() == grpc.StatusCode.OK
        by_id = {a.infer_response.id: a for a in answers if not a.error_message}
        errors = sorted(a.error_message for a in answers if a.error_message)
        assert sorted(by_id) == ["a", "c"]
        for request_id, value in (("a", 1), ("c", 3)):
            raw = by_id[request_id].infer_response.raw_output_contents[0]
            assert np.frombuffer(raw, np.float32).tolist() == [value] * 3
        assert len(errors) == 2, errors
        assert errors[0].startswith("cannot decode the ModelInferRequest: "), errors
        assert "nope" in errors[1], errors

    asyncio.run(_serving(repo, scenario))


def test_the_other_rpcs_still_decode_their_messages(repo: Path) -> None:
    async def scenario(channel: grpc.aio.Channel) -> None:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        assert (await stub.ServerLive(pb.ServerLiveRequest())).live
        meta = await stub.ModelMetadata(pb.ModelMetadataRequest(name="identity_fp32"))
        assert meta.name == "identity_fp32"
        infer = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=None,
            response_deserializer=pb.ModelInferResponse.FromString,
        )
        answer = await infer(_request("d", 4))
        assert np.frombuffer(answer.raw_output_contents[0], np.float32).tolist() == [4] * 3

    asyncio.run(_serving(repo, scenario))
