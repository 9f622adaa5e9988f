"""Prometheus metrics for one server process, on their own registry.

The request path does not go through prometheus_client (a lock per counter and per
histogram bucket, and under ``--workers`` a write to a memory-mapped file each): each
inference, execution and queue change lands in plain per-version tallies, and
``Metrics.fold`` adds the tallies to the Prometheus metrics in one go whenever the
registry is read (a scrape; nothing reads the metrics another way). The names, labels
and histograms are the ones the per-request path had.

Under ``--workers N`` a worker records each inference straight into its multiprocess
files as before (and folds batch and queue tallies at once): the supervisor reads the
files, and a request a worker answered must stay counted even if that worker is killed
the next moment (its files outlive it), so nothing may wait in a worker's memory.

Under ``--workers N`` every worker's values live in prometheus_client's
multiprocess files (``PROMETHEUS_MULTIPROC_DIR``, set by the supervisor before
the workers start), and the supervisor serves their sum: ``AggregatedMetrics``.
"""

from __future__ import annotations

import math
import os
import weakref
from bisect import bisect_left
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from serving.stats import RequestTimings

if TYPE_CHECKING:
    from serving.observers import InferenceRecord

__all__ = ["AggregatedMetrics", "InFlight", "Metrics"]

_LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
)  # fmt: skip
_LOAD_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_MV = ("model", "version")


class _Histogram(Histogram):
    """A Histogram that also takes observations counted elsewhere (a ``_Tally``)."""

    def add_tally(self, counts: list[int], total: float) -> None:
        for bucket, count in zip(self._buckets, counts, strict=True):
            if count:
                bucket.inc(count)
        self._sum.inc(total)


class InFlight(Protocol):
    """What ``Metrics.track`` reads: a model version's requests taken, not yet answered."""

    name: str

    @property
    def in_flight(self) -> int: ...


class _Tally:
    """A histogram's observations as plain bucket counts and a sum, until folded."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * len(bounds)
        self.total = 0.0

    def add(self, value: float) -> None:
        # The first bound >= value: the bucket prometheus_client's observe() counts.
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value


class _Pending:
    """What one model version did since the last fold."""

    __slots__ = (
        "batches", "c_in", "c_infer", "c_out", "executions", "failed", "ok", "queue",
        "queue_depth", "request", "rows", "short",
    )  # fmt: skip

    def __init__(self) -> None:
        latency = (*_LATENCY_BUCKETS, math.inf)
        self.ok = self.failed = self.rows = self.executions = 0
        self.request = _Tally(latency)
        self.queue = _Tally(latency)
        self.c_in = _Tally(latency)
        self.c_infer = _Tally(latency)
        self.c_out = _Tally(latency)
        self.batches: _Tally | None = None
        self.short: dict[str, int] = {}
        self.queue_depth = -1  # the latest, or -1 when it did not change


class _GpuCollector(Collector):
    """Reads NVML at scrape time; yields nothing when no GPU is present."""

    def collect(self) -> Iterable[GaugeMetricFamily]:
        from serving.runtime.gpu import gpu_stats

        stats = gpu_stats()
        if not stats:
            return
        util = GaugeMetricFamily(
            "sluice_gpu_utilization_ratio", "GPU utilization (0-1)", labels=["gpu"]
        )
        used = GaugeMetricFamily(
            "sluice_gpu_memory_used_bytes", "GPU memory in use", labels=["gpu"]
        )
        total = GaugeMetricFamily("sluice_gpu_memory_total_bytes", "GPU memory", labels=["gpu"])
        for s in stats:
            label = [str(s.index)]
            util.add_metric(label, s.utilization)
            used.add_metric(label, s.memory_used_bytes)
            total.add_metric(label, s.memory_total_bytes)
        yield util
        yield used
        yield total


class _FoldFirst(Collector):
    """Registered first, so any read of the registry sees every tally folded."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return ()

    def collect(self) -> Iterable[GaugeMetricFamily]:
        self._metrics.fold()
        return ()


class Metrics:
    """The Prometheus metrics of one process; an observer (``serving.observers``) of
    every model version, and what the manager and the batcher report to.

    Tallies are kept and folded on the event loop's thread (requests and scrapes both
    run there), so they need no lock.
    """

    wants_tensors = False

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        r.register(_FoldFirst(self))
        # prometheus_client picks its multiprocess mode from the same variable.
        self._immediate = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self._pending: dict[tuple[str, str], _Pending] = {}
        self.requests = Counter(
            "sluice_inference_requests", "Inference requests by outcome",
            [*_MV, "outcome"], registry=r,
        )  # fmt: skip
        self.inferences = Counter(
            "sluice_inference_count", "Batch elements inferred", _MV, registry=r
        )
        self.executions = Counter(
            "sluice_inference_exec_count", "Model executions", _MV, registry=r
        )
        self.request_duration = _Histogram(
            "sluice_request_duration_seconds", "End-to-end request time in the server",
            _MV, buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.queue_duration = _Histogram(
            "sluice_queue_duration_seconds", "Time a request waited for a model instance",
            _MV, buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.compute_duration = _Histogram(
            "sluice_compute_duration_seconds", "Compute time by phase (input, infer, output)",
            [*_MV, "phase"], buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.load_duration = Histogram(
            "sluice_model_load_duration_seconds", "Time to load and warm up a model version",
            _MV, buckets=_LOAD_BUCKETS, registry=r,
        )  # fmt: skip
        self.load_failures = Counter(
            "sluice_model_load_failures", "Model version loads that failed", _MV, registry=r
        )
        # multiprocess_mode matters only under ``--workers N`` (prometheus_client's
        # multiprocess mode, see AggregatedMetrics): ready on any live worker; queues summed.
        self.model_ready = Gauge(
            "sluice_model_ready", "1 while a model version serves traffic", _MV,
            registry=r, multiprocess_mode="livemax",
        )  # fmt: skip
        # The dynamic batcher (serving.batching): what it ran, what waits, what it turned away.
        self.batch_size = _Histogram(
            "sluice_batch_size", "Rows in each execution the dynamic batcher ran",
            _MV, buckets=_BATCH_BUCKETS, registry=r,
        )  # fmt: skip
        self.queue_depth = Gauge(
            "sluice_queue_depth", "Requests waiting in the dynamic batcher's queue",
            _MV, registry=r, multiprocess_mode="livesum",
        )  # fmt: skip
        self.rejections = Counter(
            "sluice_rejections",
            "Requests the dynamic batcher failed without running them, by reason: "
            "queue_full (max_queue_size reached), timeout (queue timeout with REJECT), "
            "closed (the version was unloaded while they waited)",
            [*_MV, "reason"], registry=r,
        )  # fmt: skip
        self.batches_short = Counter(
            "sluice_batches_short",
            "Executions with fewer rows than max_batch_size, by why they ran: idle (the only "
            "request waiting, an instance free), delay_expired (max_queue_delay ran out), "
            "timeout (a member reached its queue timeout first), shape (the delay ran out while "
            "requests of other shapes waited), fit (the next request did not fit whole), "
            "preferred (a preferred_batch_size was reached), closing (finishing queued work)",
            [*_MV, "reason"], registry=r,
        )  # fmt: skip
        # What autoscalers read (serving.metrics.Metrics.track): one process's count is
        # read from its versions at each scrape; under ``--workers`` each worker writes
        # its own through at once, and the supervisor sums the live workers.
        self.in_flight = Gauge(
            "sluice_requests_in_flight",
            "Inference requests a model has taken and not yet answered",
            ["model"], registry=r, multiprocess_mode="livesum",
        )  # fmt: skip
        self._tracked: weakref.WeakSet[InFlight] = weakref.WeakSet()
        self._in_flight_models: set[str] = set()
        r.register(_GpuCollector())
        self._children: dict[tuple[str, str], tuple[Any, ...]] = {}

    def track(self, version: InFlight) -> Any:
        """Count ``version``'s requests in ``sluice_requests_in_flight``.

        Returns None when the count is read from ``version.in_flight`` at each scrape
        (one process: nothing on the request path); under ``--workers`` the gauge child
        the version must ``inc()`` and ``dec()`` itself, since the supervisor reads the
        multiprocess files, not this process.
        """
        if self._immediate:
            child = self.in_flight.labels(version.name)
            child.inc(0)  # the series shows 0 from the load on
            return child
        self._tracked.add(version)
        self._in_flight_models.add(version.name)
        return None

    def _success_children(self, model: str, version: str) -> tuple[Any, ...]:
        """The labelled children a fold touches, looked up once per version."""
        key = (model, version)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.requests.labels(model, version, "success"),
                self.inferences.labels(model, version),
                self.request_duration.labels(model, version),
                self.queue_duration.labels(model, version),
                self.compute_duration.labels(model, version, "input"),
                self.compute_duration.labels(model, version, "infer"),
                self.compute_duration.labels(model, version, "output"),
            )
        return children

    def _tally(self, model: str, version: str) -> _Pending:
        pending = self._pending.get((model, version))
        if pending is None:
            pending = self._pending[(model, version)] = _Pending()
        return pending

    def on_inference(self, record: InferenceRecord) -> None:
        if record.outcome == "ok":
            self.observe_success(
                record.model, record.version, record.batch_size, record.total_ns, record
            )
        else:
            self.observe_failure(record.model, record.version, record.total_ns)

    def on_execution(self, record: InferenceRecord) -> None:
        self.observe_execution(record.model, record.version)

    def observe_success(
        self, model: str, version: str, batch_size: int, total_ns: int, t: RequestTimings
    ) -> None:
        if self._immediate:
            requests, inferences, total, queue, c_in, c_infer, c_out = self._success_children(
                model, version
            )
            requests.inc()
            inferences.inc(batch_size)
            total.observe(total_ns / 1e9)
            queue.observe(t.queue_ns / 1e9)
            c_in.observe(t.compute_input_ns / 1e9)
            c_infer.observe(t.compute_infer_ns / 1e9)
            c_out.observe(t.compute_output_ns / 1e9)
            return
        p = self._tally(model, version)
        p.ok += 1
        p.rows += batch_size
        p.request.add(total_ns / 1e9)
        p.queue.add(t.queue_ns / 1e9)
        p.c_in.add(t.compute_input_ns / 1e9)
        p.c_infer.add(t.compute_infer_ns / 1e9)
        p.c_out.add(t.compute_output_ns / 1e9)

    def observe_execution(self, model: str, version: str) -> None:
        if self._immediate:
            self.executions.labels(model, version).inc()
            return
        self._tally(model, version).executions += 1

    def observe_batch(self, model: str, version: str, rows: int, short: str | None) -> None:
        """One execution of ``rows`` rows; ``short`` says why it ran below max_batch_size."""
        p = self._tally(model, version)
        if p.batches is None:
            p.batches = _Tally((*_BATCH_BUCKETS, math.inf))
        p.batches.add(rows)
        if short is not None:
            p.short[short] = p.short.get(short, 0) + 1
        if self._immediate:
            self.fold()

    def observe_rejection(self, model: str, version: str, reason: str) -> None:
        self.rejections.labels(model, version, reason).inc()

    def set_queue_depth(self, model: str, version: str, depth: int) -> None:
        self._tally(model, version).queue_depth = depth
        if self._immediate:
            self.fold()

    def observe_failure(self, model: str, version: str, total_ns: int) -> None:
        if self._immediate:
            self.requests.labels(model, version, "failure").inc()
            self.request_duration.labels(model, version).observe(total_ns / 1e9)
            return
        p = self._tally(model, version)
        p.failed += 1
        p.request.add(total_ns / 1e9)

    def fold(self) -> None:
        """Add every tally to the Prometheus metrics (and so, under ``--workers``, to this
        worker's multiprocess files), and start the next tallies empty."""
        if self._in_flight_models:
            counts = dict.fromkeys(self._in_flight_models, 0)
            for tracked in self._tracked:
                counts[tracked.name] += tracked.in_flight
            for model, count in counts.items():
                self.in_flight.labels(model).set(count)
        pending, self._pending = self._pending, {}
        for (model, version), p in pending.items():
            requests, inferences, total, queue, c_in, c_infer, c_out = self._success_children(
                model, version
            )
            if p.ok:
                requests.inc(p.ok)
                inferences.inc(p.rows)
                for tally, child in (
                    (p.queue, queue), (p.c_in, c_in), (p.c_infer, c_infer), (p.c_out, c_out)
                ):  # fmt: skip
                    child.add_tally(tally.counts, tally.total)
            if p.failed:
                self.requests.labels(model, version, "failure").inc(p.failed)
            if p.ok or p.failed:
                total.add_tally(p.request.counts, p.request.total)
            if p.executions:
                self.executions.labels(model, version).inc(p.executions)
            if p.batches is not None:
                batches = self.batch_size.labels(model, version)
                batches.add_tally(p.batches.counts, p.batches.total)
            for reason, count in p.short.items():
                self.batches_short.labels(model, version, reason).inc(count)
            if p.queue_depth >= 0:
                self.queue_depth.labels(model, version).set(p.queue_depth)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class AggregatedMetrics:
    """What the supervisor of ``--workers N`` serves: every worker's metrics, merged.

    Counters and histograms are summed over every worker that ever ran (a dead
    worker's counts stay, so totals never go back); gauges follow their
    ``multiprocess_mode`` over the live workers. Names and labels are the ones a
    single process renders.
    """

    def __init__(self, path: str) -> None:
        from prometheus_client import multiprocess

        self.registry = CollectorRegistry(auto_describe=True)
        multiprocess.MultiProcessCollector(self.registry, path=path)
        self.registry.register(_GpuCollector())

    def render(self) -> bytes:
        return generate_latest(self.registry)
