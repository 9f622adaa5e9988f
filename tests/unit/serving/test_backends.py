"""serving.backends.RequestInputs: a request's id and parameters reach a runtime that takes
them, through either scheduler, and a runtime that does not is handed plain inputs."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest
from google.protobuf import text_format

from serving.backends import RequestInputs
from serving.batching import DynamicBatcher
from serving.config import model_config_pb2 as pb
from serving.metrics import Metrics
from serving.model import ModelVersion
from serving.scheduler import DirectScheduler
from serving.types import InferInput, InferRequest

CONFIG = """
name: "m" max_batch_size: 8
input [ { name: "X" data_type: TYPE_INT32 dims: [ 2 ] } ]
output [ { name: "Y" data_type: TYPE_INT32 dims: [ 2 ] } ]
"""


class Recorder:
    """Answers X back and keeps what each request came with."""

    inline = False
    providers = ["test"]

    def __init__(self, takes_request: bool) -> None:
        self.takes_request = takes_request
        self.seen: list[tuple[str, dict[str, Any]] | None] = []

    def run(self, inputs: Mapping[str, np.ndarray], names: Sequence[str]) -> dict:
        return self.run_each([inputs], names)[0]  # type: ignore[return-value]

    def run_each(
        self, requests: Sequence[Mapping[str, np.ndarray]], names: Sequence[str]
    ) -> list[dict[str, np.ndarray] | BaseException]:
        for inputs in requests:
            if isinstance(inputs, RequestInputs):
                self.seen.append((inputs.request_id, dict(inputs.parameters)))
            else:
                self.seen.append(None)
        return [{"Y": inputs["X"]} for inputs in requests]

    def close(self) -> None:
        pass


def _version(scheduler_kind: str, runtime: Recorder) -> ModelVersion:
    config = text_format.Parse(CONFIG, pb.ModelConfig())
    if scheduler_kind == "batcher":
        config.dynamic_batching.SetInParent()
        scheduler: Any = DynamicBatcher(runtime.run, 1, None, config, run_each=runtime.run_each)
    else:
        scheduler = DirectScheduler(runtime.run, 1)
    return ModelVersion("m", 1, config, runtime, scheduler, Metrics())


def _request(request_id: str, **parameters: Any) -> InferRequest:
    x = np.arange(2, dtype=np.int32).reshape(1, 2)
    return InferRequest(
        "m", (InferInput("X", "INT32", (1, 2), x),), id=request_id, parameters=parameters
    )


@pytest.mark.parametrize("scheduler_kind", ["direct", "batcher"])
def test_the_request_id_and_parameters_reach_a_runtime_that_takes_them(
    scheduler_kind: str,
) -> None:
    runtime = Recorder(takes_request=True)
    version = _version(scheduler_kind, runtime)

    async def scenario() -> None:
        answers = await asyncio.gather(
            version.infer(_request("first", colour="red")), version.infer(_request("second"))
        )
        assert [a.outputs[0].data.tolist() for a in answers] == [[[0, 1]], [[0, 1]]]
        await version.retire(1)

    asyncio.run(scenario())
    assert sorted(runtime.seen) == [("first", {"colour": "red"}), ("second", {})]  # type: ignore[type-var]


def test_a_runtime_that_does_not_take_them_gets_plain_inputs() -> None:
    runtime = Recorder(takes_request=False)
    version = _version("direct", runtime)

    async def scenario() -> None:
        await version.infer(_request("first", colour="red"))
        await version.retire(1)

    asyncio.run(scenario())
    assert runtime.seen == [None]
