"""Prometheus metrics for one server process, on their own registry.

Under ``--workers N`` every worker's values live in prometheus_client's
multiprocess files (``PROMETHEUS_MULTIPROC_DIR``, set by the supervisor before
the workers start), and the supervisor serves their sum: ``AggregatedMetrics``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from serving.stats import RequestTimings

if TYPE_CHECKING:
    from serving.observers import InferenceRecord

__all__ = ["AggregatedMetrics", "Metrics"]

_LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
)  # fmt: skip
_LOAD_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_MV = ("model", "version")


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


class Metrics:
    """The Prometheus metrics of one process; an observer (``serving.observers``) of
    every model version, and what the manager and the batcher report to."""

    wants_tensors = False

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
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
        self.request_duration = Histogram(
            "sluice_request_duration_seconds", "End-to-end request time in the server",
            _MV, buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.queue_duration = Histogram(
            "sluice_queue_duration_seconds", "Time a request waited for a model instance",
            _MV, buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.compute_duration = Histogram(
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
        self.batch_size = Histogram(
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
        r.register(_GpuCollector())
        self._children: dict[tuple[str, str], tuple[Any, ...]] = {}

    def _success_children(self, model: str, version: str) -> tuple[Any, ...]:
        """The labelled children the success path touches, looked up once per version."""
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

    def observe_execution(self, model: str, version: str) -> None:
        self.executions.labels(model, version).inc()

    def observe_batch(self, model: str, version: str, rows: int, short: str | None) -> None:
        """One execution of ``rows`` rows; ``short`` says why it ran below max_batch_size."""
        self.batch_size.labels(model, version).observe(rows)
        if short is not None:
            self.batches_short.labels(model, version, short).inc()

    def observe_rejection(self, model: str, version: str, reason: str) -> None:
        self.rejections.labels(model, version, reason).inc()

    def set_queue_depth(self, model: str, version: str, depth: int) -> None:
        self.queue_depth.labels(model, version).set(depth)

    def observe_failure(self, model: str, version: str, total_ns: int) -> None:
        self.requests.labels(model, version, "failure").inc()
        self.request_duration.labels(model, version).observe(total_ns / 1e9)

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
