from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

import numpy as np
import pytest
from google.protobuf import text_format

from serving.config import model_config_pb2 as pb
from serving.errors import InvalidArgument, Unavailable
from serving.model import ModelVersion
from serving.scheduler import DirectScheduler
from serving.types import InferInput, InferRequest, RequestedOutput


class AddOne:
    """A runtime that adds one to INPUT0 and counts its runs."""

    instances = 1
    providers = ["FakeExecutionProvider"]

    def __init__(self) -> None:
        self.runs = 0

    def run(
        self, inputs: Mapping[str, np.ndarray], output_names: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        self.runs += 1
        x = inputs["INPUT0"]
        return {"OUTPUT0": x + 1, "OUTPUT1": x * 0}

    def close(self) -> None:
        pass


CONFIG = """
name: "m" platform: "onnxruntime_onnx" max_batch_size: 4
input [ { name: "INPUT0" data_type: TYPE_INT32 dims: [ 3 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_INT32 dims: [ 3 ] },
         { name: "OUTPUT1" data_type: TYPE_INT32 dims: [ 3 ] } ]
"""


def _model(config: str = CONFIG) -> tuple[ModelVersion, AddOne]:
    cfg = text_format.Parse(config, pb.ModelConfig())
    runtime = AddOne()
    return ModelVersion("m", 1, cfg, runtime, DirectScheduler(runtime.run, 1)), runtime


def _request(
    shape: tuple[int, ...] = (2, 3), datatype: str = "INT32", name: str = "INPUT0", **kw
) -> InferRequest:
    data = np.arange(int(np.prod(shape)), dtype=np.int32).reshape(shape)
    return InferRequest("m", (InferInput(name, datatype, shape, data),), **kw)


def test_infer_returns_requested_outputs_and_counts() -> None:
    model, _ = _model()
    response = asyncio.run(model.infer(_request(outputs=(RequestedOutput("OUTPUT0"),), id="7")))
    assert [o.name for o in response.outputs] == ["OUTPUT0"]
    np.testing.assert_array_equal(response.outputs[0].data, np.arange(6).reshape(2, 3) + 1)
    assert response.id == "7" and response.model_version == "1"
    stats = model.stats.to_json("m", 1)
    assert stats["inference_count"] == 2 and stats["execution_count"] == 1
    assert stats["inference_stats"]["success"]["count"] == 1
    assert stats["inference_stats"]["queue"]["count"] == 1
    assert [b["batch_size"] for b in stats["batch_stats"]] == [2]


def test_metadata_puts_batch_dim_first() -> None:
    model, _ = _model()
    meta = model.metadata(["1"])
    assert meta["inputs"] == [{"name": "INPUT0", "datatype": "INT32", "shape": [-1, 3]}]
    assert meta["parameters"]["execution_providers"] == "FakeExecutionProvider"


@pytest.mark.parametrize(
    ("request_", "fragment"),
    [
        (_request(name="X"), "unexpected input 'X'"),
        (_request(datatype="FP32"), "datatype FP32 does not match the model's INT32"),
        (_request(shape=(2, 4)), "shape [2, 4] does not match the model's [-1, 3]"),
        (_request(shape=(5, 3)), "batch size 5 is outside 1..4"),
        (_request(shape=(3,)), "shape [3] does not match"),
        (_request(outputs=(RequestedOutput("NOPE"),)), "unknown output 'NOPE'"),
        (InferRequest("m", ()), "missing 'INPUT0'"),
    ],
)
def test_bad_requests_are_refused_precisely(request_: InferRequest, fragment: str) -> None:
    model, runtime = _model()
    with pytest.raises(InvalidArgument, match=None) as info:
        asyncio.run(model.infer(request_))
    assert fragment in info.value.message
    assert runtime.runs == 0
    assert model.stats.to_json("m", 1)["inference_stats"]["fail"]["count"] == 1


def test_non_batching_model_checks_full_shape() -> None:
    model, _ = _model(CONFIG.replace("max_batch_size: 4", "max_batch_size: 0"))
    asyncio.run(model.infer(_request(shape=(3,))))
    with pytest.raises(InvalidArgument, match=r"shape \[1, 3\] does not match the model's \[3\]"):
        asyncio.run(model.infer(_request(shape=(1, 3))))


def test_retired_version_refuses_new_requests() -> None:
    model, _ = _model()

    async def scenario() -> None:
        await model.retire(drain_timeout=1)
        with pytest.raises(Unavailable, match="being unloaded"):
            await model.infer(_request())

    asyncio.run(scenario())


def test_retire_waits_for_requests_in_flight() -> None:
    cfg = text_format.Parse(CONFIG, pb.ModelConfig())
    runtime = AddOne()
    gate = asyncio.Event()
    order: list[str] = []

    class SlowScheduler:
        async def schedule(self, inputs, output_names, batch_size, parameters):  # type: ignore[no-untyped-def]
            await gate.wait()
            order.append("executed")
            return await DirectScheduler(runtime.run, 1).schedule(inputs, output_names, batch_size)

        def drain(self) -> None:
            order.append("drained")

        async def close(self) -> None:
            order.append("closed")

    model = ModelVersion("m", 1, cfg, runtime, SlowScheduler())

    async def scenario() -> None:
        request = asyncio.create_task(model.infer(_request()))
        await asyncio.sleep(0)
        retire = asyncio.create_task(model.retire(drain_timeout=5))
        await asyncio.sleep(0.01)
        assert not retire.done()
        gate.set()
        response = await request
        await retire
        order.append("retired")
        assert response.outputs[0].data.shape == (2, 3)

    asyncio.run(scenario())
    assert order == ["drained", "executed", "closed", "retired"]
