"""Observers: what a model version tells after each inference and each execution."""

from __future__ import annotations

import asyncio
import gc
import logging
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest
from google.protobuf import text_format

from serving.config import model_config_pb2 as pb
from serving.errors import InvalidArgument
from serving.metrics import Metrics
from serving.model import ModelVersion
from serving.observers import OK, InferenceRecord, ObserverSet
from serving.scheduler import DirectScheduler, Execution
from serving.stats import VersionStats
from serving.types import InferInput, InferRequest

CONFIG = """
name: "m" platform: "onnxruntime_onnx" max_batch_size: 4
input [ { name: "INPUT0" data_type: TYPE_INT32 dims: [ 3 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_INT32 dims: [ 3 ] } ]
"""


class AddOne:
    instances = 1
    providers = ["FakeExecutionProvider"]

    def run(
        self, inputs: Mapping[str, np.ndarray], output_names: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        return {"OUTPUT0": inputs["INPUT0"] + 1}

    def close(self) -> None:
        pass


class Recorder:
    def __init__(self, wants_tensors: bool = False) -> None:
        self.wants_tensors = wants_tensors
        self.inferences: list[InferenceRecord] = []
        self.executions: list[InferenceRecord] = []

    def on_inference(self, record: InferenceRecord) -> None:
        self.inferences.append(record)

    def on_execution(self, record: InferenceRecord) -> None:
        self.executions.append(record)


def _model(observers: ObserverSet, scheduler: Any = None, metrics: Metrics | None = None) -> ModelVersion:  # fmt: skip
    cfg = text_format.Parse(CONFIG, pb.ModelConfig())
    runtime = AddOne()
    scheduler = scheduler or DirectScheduler(runtime.run, 1)
    return ModelVersion("m", 3, cfg, runtime, scheduler, metrics, observers=observers)


def _request(rows: int = 2, request_id: str = "r-1", name: str = "INPUT0") -> InferRequest:
    data = np.arange(rows * 3, dtype=np.int32).reshape(rows, 3)
    return InferRequest("m", (InferInput(name, "INT32", (rows, 3), data),), id=request_id)


def test_each_inference_is_told_with_model_version_id_timings_and_outcome() -> None:
    recorder = Recorder()
    model = _model(ObserverSet([recorder]))
    asyncio.run(model.infer(_request(rows=2, request_id="abc")))
    [record] = recorder.inferences
    assert (record.model, record.version, record.request_id) == ("m", "3", "abc")
    assert record.outcome == OK and record.ok and record.error == ""
    assert record.batch_size == 2
    assert record.compute_infer_ns > 0 and record.total_ns >= record.compute_infer_ns
    assert record.queue_ns >= 0 and record.compute_input_ns > 0 and record.compute_output_ns > 0
    # the direct scheduler runs each request as its own execution: one execution, 2 rows
    assert recorder.executions == [record] and record.execution_size == 2
    assert record.inputs is None and record.outputs is None


def test_a_failed_inference_is_told_with_its_error_code() -> None:
    recorder = Recorder()
    model = _model(ObserverSet([recorder]))
    with pytest.raises(InvalidArgument):
        asyncio.run(model.infer(_request(name="WRONG", request_id="bad")))
    [record] = recorder.inferences
    assert record.outcome == "invalid_argument" and not record.ok
    assert "unexpected input 'WRONG'" in record.error
    assert record.request_id == "bad" and record.execution_size == 0
    assert recorder.executions == []
    assert model.stats.to_json("m", 3)["inference_stats"]["fail"]["count"] == 1


def test_observers_that_want_tensors_get_the_arrays_themselves() -> None:
    wants, blind = Recorder(wants_tensors=True), Recorder()
    model = _model(ObserverSet([wants, blind]))
    request = _request()
    response = asyncio.run(model.infer(request))
    [record] = wants.inferences
    assert record.inputs is request.inputs  # the request's own tensors, never a copy
    assert record.outputs is response.outputs
    np.testing.assert_array_equal(record.outputs[0].data, request.inputs[0].data + 1)
    # every observer gets the one record: the blind one sees the tensors too, by design
    assert blind.inferences == [record]


def test_without_an_observer_that_wants_tensors_no_tensor_is_kept() -> None:
    recorder = Recorder()
    model = _model(ObserverSet([recorder]))
    request = _request()
    alive = weakref.ref(request.inputs[0].data)
    response = asyncio.run(model.infer(request))
    out_alive = weakref.ref(response.outputs[0].data)
    del request, response
    gc.collect()
    assert len(recorder.inferences) == 1  # the records are still held ...
    assert alive() is None and out_alive() is None  # ... but no array through them


def test_with_no_optional_observer_only_statistics_and_metrics_are_told() -> None:
    metrics = Metrics()
    observers = ObserverSet()
    model = _model(observers, metrics=metrics)
    asyncio.run(model.infer(_request(rows=3)))
    assert len(observers) == 0 and not observers.wants_tensors
    stats = model.stats.to_json("m", 3)
    assert (stats["inference_count"], stats["execution_count"]) == (3, 1)
    labels = {"model": "m", "version": "3"}
    sample = metrics.registry.get_sample_value
    assert sample("sluice_inference_requests_total", {**labels, "outcome": "success"}) == 1
    assert sample("sluice_inference_exec_count_total", labels) == 1


def test_a_failing_observer_never_fails_the_request(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(Recorder):
        def on_inference(self, record: InferenceRecord) -> None:
            raise RuntimeError("disk full")

    after = Recorder()
    model = _model(ObserverSet([Broken(), after]))
    with caplog.at_level(logging.ERROR, logger="sluice.observers"):
        for _ in range(3):
            response = asyncio.run(model.infer(_request()))
            assert response.outputs[0].data.shape == (2, 3)
    assert len(after.inferences) == 3  # the next observer is still told
    assert sum("disk full" in r.exc_text for r in caplog.records if r.exc_text) == 1  # logged once


def test_an_execution_is_told_once_for_the_request_that_led_the_batch() -> None:
    class Batched:
        """Two requests in one execution of 5 rows: the first leads it."""

        def __init__(self) -> None:
            self.calls = 0

        async def schedule(self, inputs, names, batch_size, parameters=None):  # type: ignore[no-untyped-def]
            self.calls += 1
            outputs = {"OUTPUT0": inputs["INPUT0"] + 1}
            return Execution(outputs, 10, 20, batch_size=5, first_in_batch=self.calls == 1)

        def drain(self) -> None:
            pass

        async def close(self) -> None:
            pass

    recorder = Recorder()
    model = _model(ObserverSet([recorder]), scheduler=Batched())

    async def scenario() -> None:
        await asyncio.gather(model.infer(_request(2, "a")), model.infer(_request(3, "b")))

    asyncio.run(scenario())
    assert [(r.request_id, r.execution_size) for r in recorder.inferences] == [("a", 5), ("b", 0)]
    assert [r.request_id for r in recorder.executions] == ["a"]
    assert model.stats.to_json("m", 3)["batch_stats"][0]["batch_size"] == 5


def test_observers_added_later_hear_versions_already_loaded() -> None:
    observers = ObserverSet()
    model = _model(observers)
    asyncio.run(model.infer(_request()))
    late = Recorder(wants_tensors=True)
    observers.add(late)
    assert observers.wants_tensors
    asyncio.run(model.infer(_request(request_id="late")))
    assert [r.request_id for r in late.inferences] == ["late"]
    observers.remove(late)
    assert not observers.wants_tensors and len(observers) == 0


def test_statistics_and_metrics_are_observers_of_records() -> None:
    record = InferenceRecord(
        100, 10, 1_000, 20, model="m", version="1", batch_size=4, total_ns=2_000, execution_size=4
    )
    stats, metrics = VersionStats(), Metrics()
    for observer in (stats, metrics):
        observer.on_inference(record)
        observer.on_execution(record)
    as_json = stats.to_json("m", 1)
    assert as_json["inference_count"] == 4 and as_json["execution_count"] == 1
    assert as_json["inference_stats"]["compute_infer"] == {"count": 1, "ns": 1_000}
    labels = {"model": "m", "version": "1"}
    assert metrics.registry.get_sample_value("sluice_inference_count_total", labels) == 4
    failed = InferenceRecord(5, model="m", version="1", outcome="internal", total_ns=50)
    stats.on_inference(failed)
    metrics.on_inference(failed)
    assert stats.to_json("m", 1)["inference_stats"]["fail"] == {"count": 1, "ns": 50}
    failures = {**labels, "outcome": "failure"}
    assert metrics.registry.get_sample_value("sluice_inference_requests_total", failures) == 1
