"""Metrics tallied on the request path and folded into Prometheus (serving.metrics).

The exposition must be what prometheus_client gives when every request is observed
through it: same names, labels, bucket counts, counts and sums, whenever it is read; and
under --workers every record is in the worker's multiprocess files at once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from serving import metrics as metrics_module
from serving.metrics import AggregatedMetrics, Metrics
from serving.runtime import gpu
from serving.stats import RequestTimings

_LATENCY = metrics_module._LATENCY_BUCKETS
# Durations in ns at, just below and just above every bucket bound, and past the last.
_DURATIONS = sorted(
    {max(0, int(b * 1e9) + d) for b in _LATENCY for d in (-1, 0, 1)} | {11_000_000_000, 0}
)


def _reference() -> tuple[CollectorRegistry, dict[str, object]]:
    """The same metrics, observed request by request through prometheus_client."""
    r = CollectorRegistry()
    mv = ["model", "version"]
    return r, {
        "requests": Counter("sluice_inference_requests", "", [*mv, "outcome"], registry=r),
        "inferences": Counter("sluice_inference_count", "", mv, registry=r),
        "executions": Counter("sluice_inference_exec_count", "", mv, registry=r),
        "total": Histogram("sluice_request_duration_seconds", "", mv, buckets=_LATENCY, registry=r),
        "queue": Histogram("sluice_queue_duration_seconds", "", mv, buckets=_LATENCY, registry=r),
        "compute": Histogram(
            "sluice_compute_duration_seconds", "", [*mv, "phase"], buckets=_LATENCY, registry=r
        ),
        "batch": Histogram(
            "sluice_batch_size", "", mv, buckets=metrics_module._BATCH_BUCKETS, registry=r
        ),
        "short": Counter("sluice_batches_short", "", [*mv, "reason"], registry=r),
        "depth": Gauge("sluice_queue_depth", "", mv, registry=r),
    }


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    names = {
        "sluice_inference_requests", "sluice_inference_count", "sluice_inference_exec_count",
        "sluice_request_duration_seconds", "sluice_queue_duration_seconds",
        "sluice_compute_duration_seconds", "sluice_batch_size", "sluice_batches_short",
        "sluice_queue_depth",
    }  # fmt: skip
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in registry.collect()
        if family.name in names
        for s in family.samples
        if not s.name.endswith("_created")
    }


def test_folded_tallies_render_what_per_request_observation_renders(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(gpu, "gpu_stats", lambda: [])
    m = Metrics()
    ref_registry, ref = _reference()
    for i, ns in enumerate(_DURATIONS):
        model, version = ("mlp", "1") if i % 3 else ("wide", "2")
        timings = RequestTimings(ns, ns // 2, ns // 3, ns // 5)
        rows = 1 + i % 4
        m.observe_success(model, version, rows, ns, timings)
        ref["requests"].labels(model, version, "success").inc()  # type: ignore[attr-defined]
        ref["inferences"].labels(model, version).inc(rows)  # type: ignore[attr-defined]
        ref["total"].labels(model, version).observe(ns / 1e9)  # type: ignore[attr-defined]
        ref["queue"].labels(model, version).observe(ns / 1e9)  # type: ignore[attr-defined]
        for phase, part in (("input", ns // 2), ("infer", ns // 3), ("output", ns // 5)):
            ref["compute"].labels(model, version, phase).observe(part / 1e9)  # type: ignore[attr-defined]
        if i % 2:
            m.observe_execution(model, version)
            ref["executions"].labels(model, version).inc()  # type: ignore[attr-defined]
        if i % 5 == 0:
            m.observe_failure(model, version, ns)
            ref["requests"].labels(model, version, "failure").inc()  # type: ignore[attr-defined]
            ref["total"].labels(model, version).observe(ns / 1e9)  # type: ignore[attr-defined]
        batch_rows = [1, 2, 3, 1024, 1025, 7][i % 6]
        short = [None, "idle", "fit"][i % 3]
        m.observe_batch(model, version, batch_rows, short)
        ref["batch"].labels(model, version).observe(batch_rows)  # type: ignore[attr-defined]
        if short is not None:
            ref["short"].labels(model, version, short).inc()  # type: ignore[attr-defined]
        m.set_queue_depth(model, version, i)
        ref["depth"].labels(model, version).set(i)  # type: ignore[attr-defined]
        if i == len(_DURATIONS) // 2:
            assert _samples(m.registry) == pytest.approx(_samples(ref_registry))  # a mid-way read
    got, want = _samples(m.registry), _samples(ref_registry)
    assert got.keys() == want.keys()
    assert got == pytest.approx(want, rel=1e-12)
    # Bucket counts are exact, not approximately so.
    assert {k: v for k, v in got.items() if k[0].endswith("_bucket")} == {
        k: v for k, v in want.items() if k[0].endswith("_bucket")
    }
    text = m.render().decode()
    assert 'sluice_request_duration_seconds_bucket{le="+Inf",model="mlp",version="1"}' in text


_WORKER = textwrap.dedent(
    """
    import os
    from serving.metrics import Metrics
    from serving.stats import RequestTimings

    m = Metrics()
    for _ in range(3):
        m.observe_success("mlp", "1", 2, 2_000_000, RequestTimings(1, 2, 3, 4))
    m.set_queue_depth("mlp", "1", 5)
    os._exit(0)  # killed the moment after: no scrape, no exit handler
    """
)


def test_a_killed_worker_s_answered_requests_are_in_its_multiprocess_files(
    tmp_path: Path,
) -> None:
    """Under --workers the supervisor reads the workers' files, which outlive a killed
    worker; so a worker folds every record at once and keeps nothing in memory."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    subprocess.run([sys.executable, "-c", _WORKER], env=env, check=True, timeout=60)
    text = AggregatedMetrics(str(tmp_path)).render().decode()
    assert 'sluice_inference_requests_total{model="mlp",outcome="success",version="1"} 3.0' in text
    assert 'sluice_inference_count_total{model="mlp",version="1"} 6.0' in text
    assert 'sluice_queue_depth{model="mlp",version="1"} 5.0' in text
