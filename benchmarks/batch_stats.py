"""What the dynamic batcher did during a measured window, and what held the throughput back.

Read from the server's statistics extension (``GET /v2/models/<name>/stats``, Triton's
shape) just before and just after the measured window: ``batch_stats`` counts executions
per batch size (``compute_infer.count``) with their summed compute time, and
``inference_stats.queue`` sums each request's time in the queue. The difference of two
snapshots is the window's histogram; set beside the in-process ONNX Runtime limit at the
same batch size it says whether the batcher formed small batches or ran large ones slowly.
"""

from __future__ import annotations

import itertools
import json
import math
import time
import urllib.request
from dataclasses import dataclass
from typing import Any

from benchmarks.limit import LimitResult

__all__ = [
    "BatchingWindow",
    "StatsSnapshot",
    "fetch_stats",
    "limit_at",
    "parse_stats",
    "verdict",
]

# An instance busier than this in the model is the bottleneck; idler, it waited for work.
BUSY_BOUND = 0.85
# Compute per execution this many times ONNX Runtime's own time at that batch: slow batches.
SLOW_BOUND = 1.3
# ONNX Runtime at the mean batch below this fraction of its best: the batches are too small.
SMALL_BOUND = 0.8


@dataclass(frozen=True, slots=True)
class StatsSnapshot:
    """One model version's cumulative statistics at ``taken_at`` (``time.monotonic``)."""

    executions: dict[int, int]  # batch size -> executions so far
    compute_ns: dict[int, int]  # batch size -> their summed compute_infer time
    queued: int  # requests counted in inference_stats.queue
    queue_ns: int
    taken_at: float


def parse_stats(doc: dict[str, Any], model: str, taken_at: float) -> StatsSnapshot:
    """The entry for ``model`` in a statistics answer (``{"model_stats": [...]}``)."""
    entries = [e for e in doc.get("model_stats", []) if e.get("name") == model]
    if not entries:
        names = sorted({str(e.get("name")) for e in doc.get("model_stats", [])})
        raise ValueError(f"no statistics for model {model!r} in the answer (has {names})")
    executions: dict[int, int] = {}
    compute_ns: dict[int, int] = {}
    queued = queue_ns = 0
    for entry in entries:  # one per loaded version
        for batch in entry.get("batch_stats", []):
            size = int(batch["batch_size"])
            infer = batch["compute_infer"]
            executions[size] = executions.get(size, 0) + int(infer["count"])
            compute_ns[size] = compute_ns.get(size, 0) + int(infer["ns"])
        queue = entry["inference_stats"]["queue"]
        queued += int(queue["count"])
        queue_ns += int(queue["ns"])
    return StatsSnapshot(executions, compute_ns, queued, queue_ns, taken_at)


def fetch_stats(base_url: str, model: str, timeout: float = 10.0) -> StatsSnapshot:
    """``GET {base_url}/v2/models/{model}/stats`` parsed into a snapshot."""
    with urllib.request.urlopen(f"{base_url}/v2/models/{model}/stats", timeout=timeout) as r:
        doc = json.loads(r.read())
    return parse_stats(doc, model, time.monotonic())


def limit_at(limit: LimitResult, batch: float) -> float:
    """ONNX Runtime's rows/s at ``batch`` rows, linear in log2(batch) between measured sizes."""
    sizes = sorted(limit.by_batch)
    if batch <= sizes[0]:
        return limit.by_batch[sizes[0]]
    if batch >= sizes[-1]:
        return limit.by_batch[sizes[-1]]
    for low, high in itertools.pairwise(sizes):
        if low <= batch <= high:
            share = (math.log2(batch) - math.log2(low)) / (math.log2(high) - math.log2(low))
            return limit.by_batch[low] + share * (limit.by_batch[high] - limit.by_batch[low])
    raise AssertionError("unreachable: sizes cover the batch")


@dataclass(frozen=True, slots=True)
class BatchingWindow:
    """The batcher over one measured window: the difference of two snapshots."""

    histogram: dict[int, int]  # batch size -> executions formed in the window
    compute_ns: dict[int, int]  # batch size -> summed compute_infer time in the window
    queued: int
    queue_ns: int
    window_s: float
    instances: int
    max_batch_size: int
    queue_delay_us: int
    connections: int = 0  # closed loop: requests in flight, 0 unknown
    threads: int = 0  # intra-op threads per instance, 0 unknown

    @classmethod
    def between(
        cls,
        before: StatsSnapshot,
        after: StatsSnapshot,
        *,
        instances: int,
        max_batch_size: int,
        queue_delay_us: int,
        connections: int = 0,
        threads: int = 0,
    ) -> BatchingWindow:
        histogram = {}
        compute = {}
        for size in sorted(after.executions):
            count = after.executions[size] - before.executions.get(size, 0)
            if count > 0:
                histogram[size] = count
                compute[size] = after.compute_ns[size] - before.compute_ns.get(size, 0)
        return cls(
            histogram=histogram,
            compute_ns=compute,
            queued=after.queued - before.queued,
            queue_ns=after.queue_ns - before.queue_ns,
            window_s=max(after.taken_at - before.taken_at, 1e-9),
            instances=instances,
            max_batch_size=max_batch_size,
            queue_delay_us=queue_delay_us,
            connections=connections,
            threads=threads,
        )

    @property
    def executions(self) -> int:
        return sum(self.histogram.values())

    @property
    def rows(self) -> int:
        return sum(size * count for size, count in self.histogram.items())

    @property
    def mean_batch(self) -> float:
        return self.rows / self.executions if self.executions else 0.0

    @property
    def queue_ms(self) -> float:
        """Mean time a request waited in the queue."""
        return self.queue_ns / self.queued / 1e6 if self.queued else 0.0

    @property
    def compute_ms(self) -> float:
        """Mean time of one execution (assembly, model, scatter, hand-offs to and from it)."""
        return sum(self.compute_ns.values()) / self.executions / 1e6 if self.executions else 0.0

    @property
    def busy(self) -> float:
        """Share of the window the instances spent in executions (1.0: never idle)."""
        return sum(self.compute_ns.values()) / 1e9 / (self.window_s * self.instances)

    @property
    def throughput(self) -> float:
        """Rows the batcher ran per second of the window."""
        return self.rows / self.window_s

    def in_flight(self) -> tuple[float, float, float]:
        """Where the requests were on average (Little's law): in an execution, in the
        queue, and elsewhere (client, sockets, the front end's decode and encode)."""
        running = self.throughput * self.compute_ms / 1e3
        queued = self.throughput * self.queue_ms / 1e3
        return running, queued, max(0.0, self.connections - running - queued)

    def histogram_text(self) -> str:
        return " ".join(f"{size}:{count}" for size, count in self.histogram.items())

    def to_json(self, limit: LimitResult | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "histogram": {str(k): v for k, v in self.histogram.items()},
            "compute_ms_by_batch_size": {
                str(k): self.compute_ns[k] / v / 1e6 for k, v in self.histogram.items()
            },
            "executions": self.executions,
            "rows": self.rows,
            "mean_batch": self.mean_batch,
            "queue_ms_per_request": self.queue_ms,
            "compute_ms_per_execution": self.compute_ms,
            "instance_busy": self.busy,
            "rows_per_s": self.throughput,
            "window_s": self.window_s,
            "instances": self.instances,
            "max_batch_size": self.max_batch_size,
            "max_queue_delay_us": self.queue_delay_us,
            "connections": self.connections,
            "intra_op_threads": self.threads,
        }
        if self.connections:
            running, queued, elsewhere = self.in_flight()
            out["in_flight"] = {"execution": running, "queue": queued, "elsewhere": elsewhere}
        if limit is not None and self.executions:
            at_mean = limit_at(limit, self.mean_batch)
            out["ort_rows_per_s_at_mean_batch"] = at_mean
            out["ort_ms_per_execution_at_mean_batch"] = 1e3 * self.mean_batch / at_mean
            out["ort_best_rows_per_s"] = limit.best
            out["ort_best_batch"] = limit.best_batch
            alone, label = yardstick(self, limit)
            out["ort_alone_ms_per_execution_at_mean_batch"] = 1e3 * self.mean_batch / alone
            out["ort_alone"] = label
        out["limited_by"] = verdict(self, limit)
        return out


def yardstick(window: BatchingWindow, limit: LimitResult) -> tuple[float, str]:
    """ONNX Runtime's rows/s at the window's mean batch with the instances' thread count:
    the one-thread curve for one-thread instances, else the default session's."""
    if window.threads == 1 and limit.one_thread:
        return limit_at(LimitResult(limit.model, limit.one_thread), window.mean_batch), "1 thread"
    return limit_at(limit, window.mean_batch), "default threads"


def verdict(window: BatchingWindow, limit: LimitResult | None) -> str:
    """What held this configuration back, in a sentence or three."""
    if not window.executions:
        return "no executions in the window"
    mean = window.mean_batch
    said = []
    if window.busy < BUSY_BOUND:
        said.append(
            f"instances idle {1 - window.busy:.0%} of the window: requests reached the batcher "
            f"slower than {window.instances} instance(s) ran them (the HTTP front end and the "
            "client share the cores)"
        )
    if limit is not None:
        at_mean = limit_at(limit, mean)
        alone, label = yardstick(window, limit)
        ort_ms = 1e3 * mean / alone
        slowdown = window.compute_ms / ort_ms
        if slowdown > SLOW_BOUND:
            said.append(
                f"batches slow: {window.compute_ms:.2f} ms per execution vs ONNX Runtime's "
                f"{ort_ms:.2f} ms alone ({label}) at batch {mean:.1f} ({slowdown:.1f}x: "
                "copies, threads or the cores shared with the front end)"
            )
        if at_mean < SMALL_BOUND * limit.best:
            said.append(
                f"batches small: ONNX Runtime alone does {at_mean:,.0f} rows/s at batch "
                f"{mean:.1f}, {at_mean / limit.best:.0%} of its best ({limit.best:,.0f} at "
                f"{limit.best_batch}){_why_small(window)}"
            )
    if max(window.histogram) >= window.max_batch_size:
        full = window.histogram.get(window.max_batch_size, 0) / window.executions
        said.append(f"{full:.0%} of batches full at max_batch_size {window.max_batch_size}")
    if not said:
        said.append(
            f"the model itself: instances busy {window.busy:.0%} at batch {mean:.1f}, "
            "near ONNX Runtime's own time per batch"
        )
    return "; ".join(said)


def _why_small(window: BatchingWindow) -> str:
    if not window.connections:
        return ""
    running, queued, elsewhere = window.in_flight()
    where = (
        f" of {window.connections} requests in flight, {running:.1f} were in executions, "
        f"{queued:.1f} queued, {elsewhere:.1f} elsewhere (client, sockets, front end)"
    )
    if elsewhere > 0.5 * window.connections:
        return f";{where}: the front end, not the batcher, kept them from the batches"
    return f";{where}"
