"""The dynamic batcher with a fake runtime, a hand-driven executor and clock."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from google.protobuf import text_format

from serving.batching import DynamicBatcher
from serving.config import model_config_pb2 as pb
from serving.errors import InvalidArgument, Overloaded, Unavailable
from serving.metrics import Metrics
from serving.model import ModelVersion
from serving.scheduler import Execution
from serving.types import InferInput, InferRequest

US = 1000


class Clock:
    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


class ManualExecutor(concurrent.futures.Executor):
    """Runs a submitted job only when the test says so, on the test's thread."""

    def __init__(self) -> None:
        self.jobs: list[tuple[concurrent.futures.Future[Any], Callable[..., Any], tuple]] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self.jobs.append((future, fn, args))
        return future

    def run(self, index: int = 0) -> None:
        future, fn, args = self.jobs.pop(index)
        try:
            future.set_result(fn(*args))
        except BaseException as exc:
            future.set_exception(exc)


class Doubler:
    """OUT = 2 * X; records the rows and arrays of every execution."""

    def __init__(self) -> None:
        self.batches: list[np.ndarray] = []

    def run(self, inputs: Mapping[str, np.ndarray], names: Sequence[str]) -> dict:
        x = inputs["X"]
        self.batches.append(x.copy())
        return {"OUT": x * 2, "SAME": x}

    def sizes(self) -> Counter[int]:
        return Counter(len(b) for b in self.batches)


def _config(dims: str = "[ 2 ]", batching: str = "", extra: str = "", max_batch: int = 8) -> Any:
    text = f"""
    name: "m" max_batch_size: {max_batch}
    input [ {{ name: "X" data_type: TYPE_INT32 dims: {dims} }} ]
    output [ {{ name: "OUT" data_type: TYPE_INT32 dims: {dims} }},
             {{ name: "SAME" data_type: TYPE_INT32 dims: {dims} }} ]
    dynamic_batching {{ {batching} }}
    {extra}
    """
    return text_format.Parse(text, pb.ModelConfig())


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def _x(rows: int, start: int = 0, width: int = 2) -> dict[str, np.ndarray]:
    return {"X": np.arange(start, start + rows * width, dtype=np.int32).reshape(rows, width)}


class Harness:
    def __init__(self, config: Any, instances: int = 1) -> None:
        self.clock = Clock()
        self.executor = ManualExecutor()
        self.runtime = Doubler()
        self.metrics = Metrics()
        self.batcher = DynamicBatcher(
            self.runtime.run, instances, self.executor, config,
            metrics=self.metrics, model="m", version="1", clock=self.clock,
        )  # fmt: skip

    def submit(self, inputs: dict[str, np.ndarray], **parameters: Any) -> asyncio.Task[Execution]:
        rows = len(next(iter(inputs.values())))
        coro = self.batcher.schedule(inputs, ["OUT"], rows, parameters)
        return asyncio.get_running_loop().create_task(coro)

    async def run_all(self) -> None:
        while self.executor.jobs:
            self.executor.run()
            await settle()

    def metric(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(
            name, {"model": "m", "version": "1", **labels}
        )
        return value or 0.0


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())


def test_batches_form_by_delay_and_size_and_report_their_executions() -> None:
    async def scenario() -> None:
        h = Harness(_config(batching="max_queue_delay_microseconds: 100"))
        first = h.submit(_x(1))  # idle: runs at once
        await settle()
        a = h.submit(_x(1, 10))
        b = h.submit(_x(1, 20))
        await settle()
        h.clock.now = 50 * US
        await h.run_all()  # first finishes; a and b wait for the delay
        assert first.done() and not a.done()
        h.clock.now = 100 * US
        h.batcher.wake()
        await settle()
        later = [h.submit(_x(n, 100 + n)) for n in (2, 4, 2)]  # 8 rows: a full batch
        await settle()
        h.clock.now = 130 * US
        await h.run_all()
        assert h.runtime.sizes() == {1: 1, 2: 1, 8: 1}
        ea, eb = a.result(), b.result()
        assert (ea.batch_size, eb.batch_size) == (2, 2)
        assert [ea.first_in_batch, eb.first_in_batch] == [True, False]
        assert (ea.queue_ns, eb.queue_ns) == (100 * US, 100 * US)
        np.testing.assert_array_equal(eb.outputs["OUT"], _x(1, 20)["X"] * 2)
        assert list(ea.outputs) == ["OUT"]
        results = [t.result() for t in later]
        assert [r.first_in_batch for r in results] == [True, False, False]
        for n, r in zip((2, 4, 2), results, strict=True):
            np.testing.assert_array_equal(r.outputs["OUT"], _x(n, 100 + n)["X"] * 2)
        assert h.metric("sluice_batch_size_count") == 3
        assert h.metric("sluice_batches_short_total", reason="idle") == 1
        assert h.metric("sluice_batches_short_total", reason="delay_expired") == 1
        await h.batcher.close()

    run(scenario)


def test_zero_delay_batches_what_waits_without_waiting() -> None:
    async def scenario() -> None:
        h = Harness(_config())  # the empty dynamic_batching {} the config loader adds
        first = h.submit(_x(1))
        await settle()
        rest = [h.submit(_x(1, i)) for i in range(3)]
        await settle()
        await h.run_all()
        assert first.done() and all(t.done() for t in rest)
        assert h.runtime.sizes() == {1: 1, 3: 1}
        await h.batcher.close()

    run(scenario)


def test_a_lone_request_is_not_held_for_the_delay() -> None:
    async def scenario() -> None:
        h = Harness(_config(batching="max_queue_delay_microseconds: 60000000"))
        task = h.submit(_x(1))
        await settle()
        await h.run_all()
        assert task.done() and task.result().queue_ns == 0
        await h.batcher.close()

    run(scenario)


def test_priority_order_and_range() -> None:
    async def scenario() -> None:
        h = Harness(
            _config(
                batching="priority_levels: 3 default_priority_level: 2",
                max_batch=1,
            )
        )
        busy = h.submit(_x(1, 0))
        await settle()
        low = h.submit(_x(1, 30), priority=3)
        default = h.submit(_x(1, 20), priority=0)
        high = h.submit(_x(1, 10), priority=1)
        await settle()
        await h.run_all()
        assert [int(b[0, 0]) for b in h.runtime.batches] == [0, 10, 20, 30]
        for task in (busy, low, default, high):
            task.result()
        for bad in (4, -1, "1", True):
            with pytest.raises(InvalidArgument, match="priority"):
                await h.batcher.schedule(_x(1), ["OUT"], 1, {"priority": bad})
        await h.batcher.close()

    run(scenario)


def test_timeout_reject_fails_the_request_in_the_queue() -> None:
    async def scenario() -> None:
        h = Harness(_config(batching="default_queue_policy { default_timeout_microseconds: 1000 }"))
        busy = h.submit(_x(1))
        await settle()
        waiting = h.submit(_x(1))
        await settle()
        h.clock.now = 1000 * US + 1
        h.batcher.wake()
        await settle()
        with pytest.raises(Unavailable, match="request timed out in queue after 1000 µs"):
            waiting.result()
        assert h.metric("sluice_rejections_total", reason="timeout") == 1
        await h.run_all()
        assert busy.done() and h.runtime.sizes() == {1: 1}
        await h.batcher.close()

    run(scenario)


def test_timeout_delay_serves_the_request_after_the_others() -> None:
    async def scenario() -> None:
        h = Harness(
            _config(
                batching="default_queue_policy { timeout_action: DELAY "
                "default_timeout_microseconds: 1000 }",
                max_batch=1,
            )
        )
        busy = h.submit(_x(1, 0))
        await settle()
        late = h.submit(_x(1, 10))
        await settle()
        h.clock.now = 500 * US
        fresh = h.submit(_x(1, 20))
        await settle()
        h.clock.now = 1001 * US
        await h.run_all()
        assert [int(b[0, 0]) for b in h.runtime.batches] == [0, 20, 10]
        assert late.result().queue_ns == 1001 * US
        busy.result(), fresh.result()
        await h.batcher.close()

    run(scenario)


@pytest.mark.parametrize(
    ("policy", "requested", "expires_after_us"),
    [
        ("allow_timeout_override: true", 300, 300),  # no default: the request sets one
        ("allow_timeout_override: false", 300, None),  # ignored
        (
            "allow_timeout_override: true default_timeout_microseconds: 200",
            900,
            200,
        ),  # only shorter
        ("allow_timeout_override: true default_timeout_microseconds: 800", 300, 300),
    ],
)
def test_allow_timeout_override(policy: str, requested: int, expires_after_us: int | None) -> None:
    async def scenario() -> None:
        h = Harness(_config(batching=f"default_queue_policy {{ {policy} }}"))
        h.submit(_x(1))
        await settle()
        waiting = h.submit(_x(1), timeout=requested)
        await settle()
        h.clock.now = 10_000 * US
        h.batcher.wake()
        await settle()
        if expires_after_us is None:
            assert not waiting.done()
        else:
            with pytest.raises(Unavailable, match=f"after {expires_after_us} µs"):
                waiting.result()
        await h.run_all()
        await h.batcher.close()

    run(scenario)


def test_a_full_queue_answers_overloaded_at_once() -> None:
    async def scenario() -> None:
        h = Harness(
            _config(batching="max_queue_delay_microseconds: 100 "
                    "default_queue_policy { max_queue_size: 2 }")
        )  # fmt: skip
        h.submit(_x(1))
        await settle()
        queued = [h.submit(_x(1)), h.submit(_x(1))]
        await settle()
        with pytest.raises(Overloaded, match="holds its maximum of 2 requests") as info:
            await h.batcher.schedule(_x(1), ["OUT"], 1, {})
        assert info.value.retry_after > 0
        assert h.metric("sluice_rejections_total", reason="queue_full") == 1
        assert h.metric("sluice_queue_depth") == 2
        h.clock.now = 100 * US
        await h.run_all()
        assert all(t.done() for t in queued) and h.metric("sluice_queue_depth") == 0
        await h.batcher.close()

    run(scenario)


def test_shapes_are_grouped() -> None:
    async def scenario() -> None:
        h = Harness(_config(dims="[ -1 ]"))
        h.submit(_x(1))
        await settle()
        a, b, c = h.submit(_x(1, 0, 3)), h.submit(_x(1, 0, 5)), h.submit(_x(2, 9, 3))
        await settle()
        await h.run_all()
        assert [b.shape for b in h.runtime.batches[1:]] == [(3, 3), (1, 5)]
        for task, x in ((a, _x(1, 0, 3)), (b, _x(1, 0, 5)), (c, _x(2, 9, 3))):
            np.testing.assert_array_equal(task.result().outputs["OUT"], x["X"] * 2)
        assert h.metric("sluice_batches_short_total", reason="shape") == 1
        await h.batcher.close()

    run(scenario)


def _pad_config(waste: str = "") -> Any:
    extra = 'parameters [ { key: "sluice.pad.X" value: { string_value: "-1" } }'
    if waste:
        extra += f', {{ key: "sluice.pad_max_waste" value: {{ string_value: "{waste}" }} }}'
    return _config(dims="[ -1 ]", extra=extra + " ]")


def test_padding_batches_lengths_together_and_unpads_outputs() -> None:
    async def scenario() -> None:
        h = Harness(_pad_config())
        h.submit(_x(1))
        await settle()
        a, b = h.submit(_x(1, 1, 3)), h.submit(_x(1, 5, 4))
        await settle()
        await h.run_all()
        np.testing.assert_array_equal(h.runtime.batches[1], [[1, 2, 3, -1], [5, 6, 7, 8]])
        np.testing.assert_array_equal(a.result().outputs["OUT"], [[2, 4, 6]])
        np.testing.assert_array_equal(b.result().outputs["OUT"], [[10, 12, 14, 16]])
        await h.batcher.close()

    run(scenario)


def test_padding_respects_the_waste_cap() -> None:
    async def scenario() -> None:
        h = Harness(_pad_config("0.1"))
        h.submit(_x(1))
        await settle()
        h.submit(_x(1, 1, 3)), h.submit(_x(1, 5, 4))
        await settle()
        await h.run_all()
        assert [b.shape for b in h.runtime.batches[1:]] == [(1, 3), (1, 4)]
        await h.batcher.close()

    run(scenario)


def test_a_model_whose_output_shape_is_unknown_does_not_pad() -> None:
    config = text_format.Parse(
        """name: "m" max_batch_size: 8
        input [ { name: "X" data_type: TYPE_INT32 dims: [ -1 ] } ]
        output [ { name: "OUT" data_type: TYPE_INT32 dims: [ -1, -1 ] } ]
        dynamic_batching {}
        parameters [ { key: "sluice.pad.X" value: { string_value: "0" } } ]""",
        pb.ModelConfig(),
    )
    from serving.batching import BatchingConfig

    assert BatchingConfig.from_model_config(config).padded == ()


def _lone_config(value: str) -> Any:
    extra = (
        f'parameters [ {{ key: "sluice.run_lone_at_once" value: {{ string_value: "{value}" }} }} ]'
    )
    return _config(batching="max_queue_delay_microseconds: 100", extra=extra)


def test_a_lone_request_can_be_told_to_wait_for_company() -> None:
    async def scenario() -> None:
        h = Harness(_lone_config("false"))
        first = h.submit(_x(1, 1))
        await settle()
        assert h.executor.jobs == []  # idle, yet it waits for the delay
        second = h.submit(_x(1, 2))
        h.clock.now = 100 * US
        await settle()
        h.batcher.wake()
        await h.run_all()
        assert first.result().batch_size == second.result().batch_size == 2
        await h.batcher.close()

    run(scenario)


def test_under_load_a_lone_request_waits_for_company_instead_of_running_alone() -> None:
    async def scenario() -> None:
        h = Harness(_config(batching="max_queue_delay_microseconds: 100"), instances=2)
        first = h.submit(_x(1))  # the model is idle: runs at once
        await settle()
        a = h.submit(_x(1, 10))  # an instance is free, but one is running: wait
        await settle()
        assert len(h.executor.jobs) == 1
        b = h.submit(_x(1, 20))
        await settle()
        h.clock.now = 100 * US
        h.batcher.wake()
        await settle()
        await h.run_all()
        assert first.result().batch_size == 1 and a.result().batch_size == 2
        assert b.result().batch_size == 2
        h.clock.now = 200 * US
        c = h.submit(_x(1, 30))  # nothing runs, but the last batch had company: wait
        await settle()
        assert h.executor.jobs == []
        h.clock.now = 300 * US
        h.batcher.wake()
        await settle()
        await h.run_all()
        d = h.submit(_x(1, 40))  # the last batch ran alone: the model is idle again
        await settle()
        await h.run_all()
        assert c.result().queue_ns == 100 * US and d.result().queue_ns == 0
        assert h.runtime.sizes() == {1: 3, 2: 1}
        assert h.metric("sluice_batches_short_total", reason="idle") == 2
        assert h.metric("sluice_batches_short_total", reason="delay_expired") == 2
        await h.batcher.close()

    run(scenario)


def test_compute_time_is_the_time_in_the_worker_not_the_wait_for_it() -> None:
    async def scenario() -> None:
        h = Harness(_config())
        original = h.runtime.run

        def slow(inputs: Mapping[str, np.ndarray], names: Sequence[str]) -> dict:
            h.clock.now += 7 * US  # the model takes 7 µs
            return original(inputs, names)

        h.batcher._run = slow
        task = h.submit(_x(1))
        await settle()
        h.clock.now = 50 * US  # the job waited 50 µs for a worker thread
        await h.run_all()
        execution = task.result()
        assert (execution.queue_ns, execution.compute_infer_ns) == (0, 7 * US)
        await h.batcher.close()

    run(scenario)


def test_run_lone_at_once_must_be_true_or_false() -> None:
    from serving.batching import BatchingConfig

    with pytest.raises(
        InvalidArgument, match=r"sluice\.run_lone_at_once must be 'true' or 'false'"
    ):
        BatchingConfig.from_model_config(_lone_config("sometimes"))


def test_preserve_ordering_releases_results_in_arrival_order() -> None:
    async def scenario(preserve: bool) -> None:
        h = Harness(_config(batching=f"preserve_ordering: {str(preserve).lower()}"), 2)
        first = h.submit(_x(1, 0))
        await settle()
        second = h.submit(_x(1, 10))
        await settle()
        assert len(h.executor.jobs) == 2  # one per instance
        h.executor.run(1)  # the second finishes first
        await settle()
        assert second.done() is not preserve
        h.executor.run(0)
        await settle()
        assert first.done() and second.done()
        await h.batcher.close()

    run(lambda: scenario(True))
    run(lambda: scenario(False))


def test_reused_buffers_are_never_handed_to_requests() -> None:
    """SAME returns the batch input itself: results must survive the buffer's reuse."""

    async def scenario() -> None:
        h = Harness(_config())
        seen_buffers = []
        original = h.runtime.run

        def run_and_note(inputs: Mapping[str, np.ndarray], names: Sequence[str]) -> dict:
            seen_buffers.append(inputs["X"].base)
            return original(inputs, names)

        h.batcher._run = run_and_note
        batches = []
        for start in (100, 200):
            h.submit(_x(1))  # a lone request keeps the instance busy while a pair queues
            await settle()
            pair = [h.submit(_x(1, start)), h.submit(_x(1, start + 10))]
            await settle()
            await h.run_all()
            batches.append(pair)
        assert h.runtime.sizes() == {1: 2, 2: 2}
        assert seen_buffers[1] is seen_buffers[3] and seen_buffers[1] is not None  # reused
        for start, (a, b) in zip((100, 200), batches, strict=True):
            np.testing.assert_array_equal(a.result().outputs["OUT"], _x(1, start)["X"] * 2)
            np.testing.assert_array_equal(b.result().outputs["OUT"], _x(1, start + 10)["X"] * 2)
        await h.batcher.close()

    async def scenario_same() -> None:
        h = Harness(_config())
        h.submit(_x(1))
        await settle()
        first = [h.batcher.schedule(_x(1, s), ["SAME"], 1, {}) for s in (100, 110)]
        tasks = [asyncio.get_running_loop().create_task(c) for c in first]
        await settle()
        await h.run_all()
        kept = [t.result().outputs["SAME"] for t in tasks]
        h.submit(_x(1))
        await settle()
        second = [h.submit(_x(1, s)) for s in (500, 510)]
        await settle()
        await h.run_all()
        assert all(t.done() for t in second) and h.runtime.sizes() == {1: 2, 2: 2}
        np.testing.assert_array_equal(kept[0], _x(1, 100)["X"])
        np.testing.assert_array_equal(kept[1], _x(1, 110)["X"])
        await h.batcher.close()

    run(scenario)
    run(scenario_same)


def test_close_fails_queued_work_and_waits_for_running_work() -> None:
    async def scenario() -> None:
        h = Harness(_config(batching="max_queue_delay_microseconds: 100"))
        running = h.submit(_x(1))
        await settle()
        queued = [h.submit(_x(1)), h.submit(_x(1))]
        await settle()
        closing = asyncio.get_running_loop().create_task(h.batcher.close())
        await settle()
        for task in queued:
            with pytest.raises(Unavailable, match="unloaded while the request was queued"):
                task.result()
        assert not closing.done()
        await h.run_all()
        await closing
        assert running.result().batch_size == 1
        assert h.metric("sluice_rejections_total", reason="closed") == 2
        with pytest.raises(Unavailable, match="takes no new requests"):
            await h.batcher.schedule(_x(1), ["OUT"], 1, {})

    run(scenario)


def test_close_can_finish_queued_work() -> None:
    async def scenario() -> None:
        h = Harness(_config(batching="max_queue_delay_microseconds: 100"))
        h.submit(_x(1))
        await settle()
        queued = [h.submit(_x(1, 5)), h.submit(_x(1, 7))]
        await settle()
        closing = asyncio.get_running_loop().create_task(h.batcher.close(finish_queued=True))
        await settle()
        await h.run_all()
        await closing
        assert h.runtime.sizes() == {1: 1, 2: 1}
        np.testing.assert_array_equal(queued[1].result().outputs["OUT"], [[14, 16]])
        assert h.metric("sluice_batches_short_total", reason="closing") == 1

    run(scenario)


def test_drain_runs_queued_work_without_waiting_and_keeps_taking_requests() -> None:
    async def scenario() -> None:
        h = Harness(_config(batching="max_queue_delay_microseconds: 60000000"))
        h.submit(_x(1))  # alone on an idle model: runs at once
        await settle()
        queued = [h.submit(_x(1, 5)), h.submit(_x(1, 7))]
        await settle()
        await h.run_all()
        assert h.runtime.sizes() == {1: 1}  # the other two wait for the 60 s delay
        assert not any(task.done() for task in queued)
        h.batcher.drain()
        await settle()
        await h.run_all()
        np.testing.assert_array_equal(queued[1].result().outputs["OUT"], [[14, 16]])
        assert h.metric("sluice_batches_short_total", reason="closing") == 1
        later = [h.submit(_x(1, 1)), h.submit(_x(1, 2))]  # still taken, and not held back
        await settle()
        await h.run_all()
        await settle()
        await h.run_all()
        assert all(task.done() for task in later)
        assert h.clock.now == 0  # no time passed: nothing waited for the delay

    run(scenario)


def test_a_failing_execution_fails_every_request_in_it() -> None:
    async def scenario() -> None:
        h = Harness(_config())

        def broken(inputs: Mapping[str, np.ndarray], names: Sequence[str]) -> dict:
            raise RuntimeError("session exploded")

        h.batcher._run = broken
        tasks = [h.submit(_x(1)), h.submit(_x(1)), h.submit(_x(1))]
        await settle()
        await h.run_all()
        for task in tasks:
            with pytest.raises(RuntimeError, match="session exploded"):
                task.result()
        assert h.batcher.free_instances == 1
        await h.batcher.close()

    run(scenario)


def test_statistics_count_executions_and_rows() -> None:
    async def scenario() -> None:
        config = _config(batching="max_queue_delay_microseconds: 100")
        h = Harness(config)
        model = ModelVersion("m", 1, config, _RuntimeShim(), h.batcher, h.metrics)

        def request(rows: int) -> InferRequest:
            x = _x(rows)["X"]
            return InferRequest("m", (InferInput("X", "INT32", x.shape, x),))

        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(model.infer(request(1)))]
        await settle()
        tasks += [loop.create_task(model.infer(request(n))) for n in (2, 3)]
        await settle()
        h.clock.now = 100 * US
        await h.run_all()
        h.batcher.wake()
        await settle()
        await h.run_all()
        for task in tasks:
            task.result()
        stats = model.stats.to_json("m", 1)
        assert stats["inference_count"] == 6 and stats["execution_count"] == 2
        assert stats["inference_stats"]["queue"]["count"] == 3
        assert [b["batch_size"] for b in stats["batch_stats"]] == [1, 5]
        assert h.metric("sluice_inference_exec_count_total") == 2
        await h.batcher.close()

    run(scenario)


class _RuntimeShim:
    instances = 1
    providers = ["FakeExecutionProvider"]

    def run(self, inputs: Any, output_names: Any = None) -> dict:
        raise AssertionError("the batcher calls its own run")

    def close(self) -> None:
        pass


async def _until(condition: Callable[[], bool], request: asyncio.Task[Any]) -> None:
    """Poll a condition (no timing assumption); a request that ends first is a failure."""
    while not condition():
        if request.done():
            raise AssertionError(f"request ended early: {request.result().text}")
        await asyncio.sleep(0.01)


def test_full_queue_answers_503_with_retry_after_over_http(tmp_path: Path) -> None:
    """The real app, manager and batcher; the runtime blocks until the test lets it go."""
    from serving.core import InferenceCore
    from serving.http.app import create_app
    from serving.manager import ModelManager
    from serving.settings import Settings

    (tmp_path / "m" / "1").mkdir(parents=True)
    from serving.examples import build_identity

    (tmp_path / "m" / "1" / "model.onnx").write_bytes(build_identity("INT32"))
    (tmp_path / "m" / "config.pbtxt").write_text(
        """name: "m" platform: "onnxruntime_onnx" max_batch_size: 4
        input [ { name: "INPUT0" data_type: TYPE_INT32 dims: [ 2 ] } ]
        output [ { name: "OUTPUT0" data_type: TYPE_INT32 dims: [ 2 ] } ]
        dynamic_batching { max_queue_delay_microseconds: 1000
                           default_queue_policy { max_queue_size: 1 } }
"""
    )
    entered, release = threading.Event(), threading.Event()

    class Blocking:
        instances = 1
        providers = ["FakeExecutionProvider"]
        warm = True

        def run(self, inputs: Mapping[str, np.ndarray], names: Any = None) -> dict:
            if not self.warm:
                entered.set()
                release.wait(30)
            return {"OUTPUT0": inputs["INPUT0"] * 2}

        def close(self) -> None:
            pass

    runtime = Blocking()

    def factory(path: Path, config: Any, settings: Settings) -> Blocking:
        return runtime

    async def scenario() -> None:
        settings = Settings(model_repository=tmp_path, cores=1)
        metrics = Metrics()
        manager = ModelManager(settings, metrics, runtime_factory=factory)  # type: ignore[arg-type]
        core = InferenceCore(settings, manager, metrics)
        await core.start()
        runtime.warm = False
        body = {
            "inputs": [{"name": "INPUT0", "datatype": "INT32", "shape": [1, 2], "data": [1, 2]}]
        }
        transport = httpx.ASGITransport(app=create_app(core))
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://sluice") as client:
                url = "/v2/models/m/infer"
                running = asyncio.get_running_loop().create_task(client.post(url, json=body))
                await _until(entered.is_set, running)
                queued = asyncio.get_running_loop().create_task(client.post(url, json=body))
                scheduler = manager.get("m").scheduler
                assert isinstance(scheduler, DynamicBatcher)
                await _until(lambda: scheduler.queue_depth == 1, queued)
                refused = await client.post(url, json=body)
                assert refused.status_code == 503
                assert int(refused.headers["retry-after"]) >= 1
                assert "holds its maximum of 1 requests" in refused.json()["error"]
                release.set()
                assert (await running).status_code == 200
                assert (await queued).json()["outputs"][0]["data"] == [2, 4]
        finally:
            release.set()
            await core.close()

    asyncio.run(scenario())


class Encoder:
    """A sentence-encoder shape: ids, mask [B, L] -> emb [B, L, 4], pooled [B, 4]."""

    def __init__(self) -> None:
        self.batches: list[tuple[int, ...]] = []

    def run(self, inputs: Mapping[str, np.ndarray], names: Sequence[str]) -> dict:
        ids, mask = inputs["ids"], inputs["mask"]
        self.batches.append(ids.shape)
        emb = (ids * mask)[..., np.newaxis] * np.arange(1, 5, dtype=np.float32)
        return {"emb": emb.astype(np.float32), "pooled": emb.sum(axis=1).astype(np.float32)}


_ENCODER_CONFIG = """
name: "m" max_batch_size: 8
input [ { name: "ids" data_type: TYPE_INT64 dims: [ -1 ] },
        { name: "mask" data_type: TYPE_INT64 dims: [ -1 ] } ]
output [ { name: "emb" data_type: TYPE_FP32 dims: [ -1, 4 ] },
         { name: "pooled" data_type: TYPE_FP32 dims: [ 4 ] } ]
dynamic_batching { }
parameters [ { key: "sluice.pad.ids" value: { string_value: "0" } },
             { key: "sluice.pad.mask" value: { string_value: "0" } } ]
"""


def test_an_encoder_pads_lengths_together_and_cuts_each_answer_back(
    twin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from serving.batching import _batcher

    if twin.__name__.endswith("_native"):
        assert twin.__name__ == "serving.batching._native"  # the build really loaded
    monkeypatch.setattr(_batcher, "assemble", twin.assemble)
    monkeypatch.setattr(_batcher, "scatter", twin.scatter)
    config = text_format.Parse(_ENCODER_CONFIG, pb.ModelConfig())
    encoder = Encoder()

    def request(length: int) -> dict[str, np.ndarray]:
        ids = np.arange(1, length + 1, dtype=np.int64).reshape(1, length)
        return {"ids": ids, "mask": np.ones_like(ids)}

    async def scenario() -> None:
        executor = ManualExecutor()
        batcher = DynamicBatcher(encoder.run, 1, executor, config, clock=Clock())
        loop = asyncio.get_running_loop()
        lengths = (1, 2, 5, 3)
        tasks = [
            loop.create_task(batcher.schedule(request(n), ["emb", "pooled"], 1)) for n in lengths
        ]
        await settle()
        while executor.jobs:
            executor.run()
            await settle()
        assert encoder.batches == [(1, 1), (3, 5)]  # the first ran alone, the rest together
        for n, task in zip(lengths, tasks, strict=True):
            alone = Encoder().run(request(n), ["emb", "pooled"])
            outputs = task.result().outputs
            assert outputs["emb"].shape == (1, n, 4)
            np.testing.assert_array_equal(outputs["emb"], alone["emb"])
            np.testing.assert_array_equal(outputs["pooled"], alone["pooled"])
        await batcher.close()

    run(scenario)
