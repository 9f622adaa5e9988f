"""What only the gRPC front end has: the stream RPC, typed contents, the asyncio client,
the health service, message sizes, and malformed messages tritonclient would never send."""

from __future__ import annotations

import asyncio
import queue
import struct
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.utils import InferenceServerException

from serving.grpc import grpc_service_pb2 as pb
from serving.grpc import grpc_service_pb2_grpc as pb_grpc
from tests.integration.server_process import ServerProcess
from tests.integration.test_repository_api import _versioned_repository

pytestmark = pytest.mark.integration


@pytest.fixture
def client(server: ServerProcess) -> Iterator[grpcclient.InferenceServerClient]:
    c = grpcclient.InferenceServerClient(server.grpc_url)
    yield c
    c.close()


@pytest.fixture
def stub(server: ServerProcess) -> Iterator[pb_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(server.grpc_url) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)
    assert server.alive()


def _int32_input(name: str, data: np.ndarray) -> grpcclient.InferInput:
    inp = grpcclient.InferInput(name, list(data.shape), "INT32")
    inp.set_data_from_numpy(data)
    return inp


def _fails(call, code: grpc.StatusCode, fragment: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as info:
        call()
    assert info.value.code() == code, info.value.details()
    assert fragment in info.value.details(), info.value.details()


# -- the stream RPC ------------------------------------------------------------


def test_stream_answers_every_request_and_reports_errors_in_the_stream(
    client: grpcclient.InferenceServerClient,
) -> None:
    answers: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        for i in range(4):
            a = np.full((1, 16), i, dtype=np.int32)
            client.async_stream_infer("simple", [_int32_input("INPUT0", a), _int32_input("INPUT1", a)],
                                      request_id=f"ok-{i}")  # fmt: skip
            if i == 1:
                bad = np.zeros((1, 15), dtype=np.int32)
                client.async_stream_infer("simple", [_int32_input("INPUT0", bad)], request_id="bad")
        got = [answers.get(timeout=30) for _ in range(5)]
    finally:
        client.stop_stream()
    errors = [e for r, e in got if e is not None]
    results = {r.get_response().id: r for r, e in got if e is None}
    assert len(errors) == 1 and "[1, 15]" in errors[0].message()
    assert sorted(results) == ["ok-0", "ok-1", "ok-2", "ok-3"]
    for i in range(4):
        np.testing.assert_array_equal(
            results[f"ok-{i}"].as_numpy("OUTPUT0"), np.full((1, 16), 2 * i)
        )


def test_stream_with_the_asyncio_client(server: ServerProcess) -> None:
    async def run() -> list:
        async with aioclient.InferenceServerClient(server.grpc_url) as c:

            async def requests():
                for i in range(3):
                    a = np.full((1, 3), i, dtype=np.float32)
                    inp = aioclient.InferInput("INPUT0", [1, 3], "FP32")
                    inp.set_data_from_numpy(a)
                    yield {"model_name": "identity_fp32" if i != 1 else "nope", "inputs": [inp],
                           "request_id": str(i)}  # fmt: skip

            return [(r, e) async for r, e in c.stream_infer(requests())]

    got = asyncio.run(run())
    assert len(got) == 3
    errors = [e for _, e in got if e is not None]
    assert len(errors) == 1 and "nope" in errors[0].message()
    ok = {r.get_response().id: r.as_numpy("OUTPUT0") for r, e in got if e is None}
    np.testing.assert_array_equal(ok["2"], np.full((1, 3), 2, dtype=np.float32))


def _stream_request(request_id: str, value: int) -> bytes:
    msg = pb.ModelInferRequest(model_name="identity_fp32", id=request_id)
    msg.inputs.add(name="INPUT0", datatype="FP32", shape=[1, 3])
    msg.raw_input_contents.append(np.full((1, 3), value, dtype=np.float32).tobytes())
    return msg.SerializeToString()


def _floats(answer: pb.ModelStreamInferResponse) -> list[float]:
    return np.frombuffer(answer.infer_response.raw_output_contents[0], np.float32).tolist()


def test_stream_goes_on_after_an_undecodable_message(server: ServerProcess) -> None:
    """Each message is sent only after the answer to the one before, so the stream must
    stay open across the undecodable one."""
    outgoing: queue.Queue = queue.Queue()
    with grpc.insecure_channel(server.grpc_url) as channel:
        call = channel.stream_stream(
            "/inference.GRPCInferenceService/ModelStreamInfer",
            request_serializer=None,  # the messages go out as the raw bytes given
            response_deserializer=pb.ModelStreamInferResponse.FromString,
        )(iter(outgoing.get, None))
        outgoing.put(_stream_request("first", 1))
        first = next(call)
        outgoing.put(b"\xff\xff\xff\xff not a protobuf message")
        bad = next(call)
        outgoing.put(_stream_request("third", 3))
        third = next(call)
        outgoing.put(None)
        assert list(call) == []
        assert call.code() == grpc.StatusCode.OK, call.details()
    assert (first.error_message, first.infer_response.id) == ("", "first")
    assert _floats(first) == [1] * 3
    assert "cannot decode the ModelInferRequest" in bad.error_message, bad.error_message
    assert (third.error_message, third.infer_response.id) == ("", "third")
    assert _floats(third) == [3] * 3
    assert server.alive()


# -- the asyncio client over every unary RPC -----------------------------------


def test_asyncio_client_every_rpc(server: ServerProcess) -> None:
    async def run() -> None:
        async with aioclient.InferenceServerClient(server.grpc_url) as c:
            assert await c.is_server_live()
            assert await c.is_server_ready()
            assert await c.is_model_ready("simple")
            assert (await c.get_server_metadata()).name == "sluice"
            meta = await c.get_model_metadata("simple")
            assert [list(t.shape) for t in meta.inputs] == [[-1, 16], [-1, 16]]
            assert (await c.get_model_config("simple")).config.max_batch_size == 8
            stats = await c.get_inference_statistics("simple")
            assert stats.model_stats[0].name == "simple"
            index = await c.get_model_repository_index()
            assert "simple" in {m.name for m in index.models}
            a = np.arange(16, dtype=np.int32).reshape(1, 16)
            inputs = []
            for name in ("INPUT0", "INPUT1"):
                inp = aioclient.InferInput(name, [1, 16], "INT32")
                inp.set_data_from_numpy(a)
                inputs.append(inp)
            result = await c.infer("simple", inputs)
            np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), np.zeros((1, 16)))
            with pytest.raises(InferenceServerException, match="nope"):
                await c.get_model_metadata("nope")

    asyncio.run(run())


# -- typed contents, sizes, health ---------------------------------------------


def _typed_request() -> pb.ModelInferRequest:
    msg = pb.ModelInferRequest(model_name="simple", id="typed")
    for name in ("INPUT0", "INPUT1"):
        t = msg.inputs.add(name=name, datatype="INT32", shape=[1, 16])
        t.contents.int_contents.extend(range(16))
    return msg


def test_typed_contents_are_answered_raw(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    response = stub.ModelInfer(_typed_request())
    assert [o.name for o in response.outputs] == ["OUTPUT0", "OUTPUT1"]
    assert len(response.raw_output_contents) == 2 and response.id == "typed"
    out0 = np.frombuffer(response.raw_output_contents[0], dtype=np.int32)
    np.testing.assert_array_equal(out0, np.arange(16) * 2)


def test_typed_bytes_contents(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    msg = pb.ModelInferRequest(model_name="identity_bytes")
    t = msg.inputs.add(name="INPUT0", datatype="BYTES", shape=[1, 2])
    t.contents.bytes_contents.extend([b"ab", b"\x00"])
    raw = stub.ModelInfer(msg).raw_output_contents[0]
    assert raw == b"\x02\x00\x00\x00ab\x01\x00\x00\x00\x00"


def test_message_over_4mb_both_ways(client: grpcclient.InferenceServerClient) -> None:
    data = np.random.default_rng(1).standard_normal((1, 3_000_000)).astype(np.float32)  # 12 MB
    inp = grpcclient.InferInput("INPUT0", list(data.shape), "FP32")
    inp.set_data_from_numpy(data)
    np.testing.assert_array_equal(client.infer("identity_fp32", [inp]).as_numpy("OUTPUT0"), data)


def test_health_service(server: ServerProcess) -> None:
    with grpc.insecure_channel(server.grpc_url) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "inference.GRPCInferenceService"):
            answer = health.Check(health_pb2.HealthCheckRequest(service=service))
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        _fails(lambda: health.Check(health_pb2.HealthCheckRequest(service="nope")),
               grpc.StatusCode.NOT_FOUND, "")  # fmt: skip


# -- malformed messages: precise errors, and the server keeps serving ----------


def _raw_request(model: str, datatype: str, shape: list[int], *raw: bytes) -> pb.ModelInferRequest:
    msg = pb.ModelInferRequest(model_name=model)
    msg.inputs.add(name="INPUT0", datatype=datatype, shape=shape)
    msg.raw_input_contents.extend(raw)
    return msg


@pytest.mark.parametrize(
    ("msg", "code", "fragment"),
    [
        (_raw_request("identity_fp32", "FP32", [1, 3], b"\x00" * 8), "INVALID_ARGUMENT",
         "expected 12 bytes of FP32 data for shape [1, 3], got 8"),
        (_raw_request("identity_bytes", "BYTES", [1, 1], struct.pack("<I", 9) + b"abc"),
         "INVALID_ARGUMENT", "overruns"),
        (_raw_request("identity_fp32", "FP32", [1, 1], b"\x00" * 4, b"\x00" * 4),
         "INVALID_ARGUMENT", "raw_input_contents has 2 entries"),
        (_raw_request("identity_fp32", "FP99", [1, 1], b"\x00" * 4), "INVALID_ARGUMENT",
         "unknown datatype 'FP99'"),
        (_raw_request("identity_fp32", "FP16", [1, 1]), "INVALID_ARGUMENT",
         "FP16 has no typed contents"),
        (_raw_request("nope", "FP32", [1, 1], b"\x00" * 4), "NOT_FOUND", "nope"),
    ],
)  # fmt: skip
def test_malformed_infer_requests(
    stub: pb_grpc.GRPCInferenceServiceStub, msg: pb.ModelInferRequest, code: str, fragment: str
) -> None:
    _fails(lambda: stub.ModelInfer(msg), getattr(grpc.StatusCode, code), fragment)


def test_unknown_version(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    msg = _typed_request()
    msg.model_version = "9"
    _fails(lambda: stub.ModelInfer(msg), grpc.StatusCode.NOT_FOUND, "9")
    _fails(lambda: stub.ModelConfig(pb.ModelConfigRequest(name="simple", version="9")),
           grpc.StatusCode.NOT_FOUND, "9")  # fmt: skip


def test_unserved_rpcs_say_so(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    _fails(lambda: stub.TraceSetting(pb.TraceSettingRequest()), grpc.StatusCode.UNIMPLEMENTED,
           "trace settings are not supported")  # fmt: skip
    _fails(lambda: stub.LogSettings(pb.LogSettingsRequest()), grpc.StatusCode.UNIMPLEMENTED,
           "log settings are not supported")  # fmt: skip
    _fails(lambda: stub.CudaSharedMemoryRegister(pb.CudaSharedMemoryRegisterRequest(name="c")),
           grpc.StatusCode.UNIMPLEMENTED, "CUDA shared memory")  # fmt: skip


# -- repository API over gRPC (explicit mode) -----------------------------------


@pytest.fixture(scope="module")
def explicit_grpc_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = _versioned_repository(tmp_path_factory.mktemp("grpc-explicit-repo"))
    proc = ServerProcess(
        repo, "--model-control-mode", "explicit", "--load-model", "simple",
        log_dir=tmp_path_factory.mktemp("grpc-explicit-logs"),
    )  # fmt: skip
    yield proc
    proc.stop()


def test_repository_load_unload_versions_and_override(explicit_grpc_server: ServerProcess) -> None:
    c = grpcclient.InferenceServerClient(explicit_grpc_server.grpc_url)
    try:
        assert not c.is_model_ready("versioned")
        c.load_model("versioned")
        assert c.is_model_ready("versioned")
        assert [m for m in c.get_model_metadata("versioned").versions] == ["1", "2", "3"]
        x = np.array([[1.0, 2.0, 3.0]], dtype=np.float32)
        inp = grpcclient.InferInput("INPUT0", [1, 3], "FP32")
        inp.set_data_from_numpy(x)
        for v in ("1", "3"):
            result = c.infer("versioned", [inp], model_version=v)
            assert result.get_response().model_version == v
        index = {(m.name, m.version): m.state for m in c.get_model_repository_index().models}
        assert index[("versioned", "2")] == "READY"
        c.unload_model("versioned")
        assert not c.is_model_ready("versioned")
        with pytest.raises(InferenceServerException) as info:
            c.load_model("no_such_model")
        assert "StatusCode.NOT_FOUND" in str(info.value.status())
        c.load_model("identity_fp32", config='{"max_batch_size": 2}')
        assert c.get_model_config("identity_fp32").config.max_batch_size == 2
        with pytest.raises(InferenceServerException):
            c.load_model("identity_fp32", config="{not json")
    finally:
        c.close()
