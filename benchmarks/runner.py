"""One benchmark run: models, servers, loads, limits and micro-benchmarks, then the report."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import platform
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import h2load, wrk
from benchmarks.batch_stats import BatchingWindow, StatsSnapshot, fetch_stats
from benchmarks.codec_bench import run_micro_benchmarks
from benchmarks.limit import LimitResult, measure_limit
from benchmarks.mlserver_peer import (
    DEFAULT_VENV,
    MLSERVER_CONFIGS,
    MLSERVER_VERSION,
    ensure_venv,
    mlserver_model_name,
    start_mlserver,
)
from benchmarks.models import (
    MODELS,
    SLUICE_VARIANTS,
    sample_inputs,
    write_onnx_models,
    write_sluice_repository,
)
from benchmarks.processes import ResourceMonitor, ServerProcess, wait_http_ready
from benchmarks.progress import Progress
from benchmarks.report import BATCHING_HEADER, Measurement, RunReport, batching_rows, format_table
from benchmarks.scenarios import SCENARIOS, Scenario
from benchmarks.triton_peer import DEFAULT_VENV as TRITON_VENV
from benchmarks.triton_peer import PYTRITON_VERSION, TRITON_CONFIGS, start_triton, triton_model_name
from benchmarks.triton_peer import ensure_venv as ensure_triton_venv
from serving.loadgen import (
    GrpcSender,
    HttpSender,
    LatencySummary,
    LoadResult,
    LoadSpec,
    Sender,
    binary_infer_body,
    drive,
    grpc_infer_request,
    grpc_infer_response,
    http_request,
    json_infer_body,
    open_channel,
    summarize_values,
)
from serving.runtime.options import default_cores

__all__ = ["RunOptions", "Runner"]

ONE_THREAD_SIZES = (1, 8, 16, 32, 64)  # the one-thread limit, up to the variants' max batch


@dataclass
class RunOptions:
    scenarios: list[str]
    duration: float = 15.0
    warmup: float = 3.0
    out: Path = Path("benchmarks/results")
    peers: list[str] = field(default_factory=lambda: ["mlserver", "triton"])
    clients: list[str] = field(default_factory=lambda: ["own", "wrk", "h2load"])
    quick: bool = False
    mlserver_venv: Path = DEFAULT_VENV
    triton_venv: Path = TRITON_VENV
    seed: int = 1
    command: str = ""


@dataclass(frozen=True, slots=True)
class _Endpoint:
    target: str  # "sluice" | "mlserver" | "triton" | "ceiling"
    config: str
    pid: int
    http: tuple[str, int] | None
    grpc: str | None  # "host:port"


@dataclass(frozen=True, slots=True)
class _BatchProbe:
    """Reads a batching Sluice model's statistics around a measured window."""

    fetch: Callable[[], StatsSnapshot]
    instances: int
    max_batch_size: int
    queue_delay_us: int
    connections: int
    threads: int  # intra-op threads per instance

    def window(self, before: StatsSnapshot, after: StatsSnapshot) -> BatchingWindow:
        return BatchingWindow.between(
            before,
            after,
            instances=self.instances,
            max_batch_size=self.max_batch_size,
            queue_delay_us=self.queue_delay_us,
            connections=self.connections,
            threads=self.threads,
        )


def _run_async(coro: Coroutine[Any, Any, Any], fast_loop: bool = True) -> Any:
    if fast_loop:
        from serving.process import run_loop  # uvloop where installed, as the server runs

        return run_loop(coro)
    return asyncio.run(coro)


class Runner:
    def __init__(self, options: RunOptions, progress: Progress | None = None) -> None:
        self.o = options
        self.p = progress or Progress()
        self.scenarios = [SCENARIOS[n] for n in options.scenarios]
        self.loads = [s for s in self.scenarios if s.protocol in ("http", "grpc")]
        started = time.strftime("%Y-%m-%dT%H:%M:%S")
        self.report = RunReport(
            command=options.command,
            started=started,
            machine=_machine(),
            options={
                "scenarios": options.scenarios,
                "duration_s": options.duration,
                "warmup_s": options.warmup,
                "peers": options.peers,
                "clients": options.clients,
                "quick": options.quick,
            },
        )
        self.run_dir = options.out
        self.onnx: dict[str, Path] = {}
        self._probe: _BatchProbe | None = None  # the endpoint under load, when it batches

    # -- the run -------------------------------------------------------------------------

    def run(self) -> RunReport:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.p.log(f"run directory: {self.run_dir}")
        keys = sorted({s.model for s in self.scenarios if s.model})
        self.onnx = write_onnx_models(self.run_dir / "models", keys)
        if any(s.protocol == "micro" for s in self.scenarios):
            self._micro()
        for key in sorted({s.model for s in self.loads if s.limit}):
            self._limit(key)
        if self.loads:
            self._sluice()
            if any(s.ceiling for s in self.loads):
                self._ceiling()
            if "mlserver" in self.o.peers and any(s.mlserver for s in self.loads):
                self._mlserver()
            if "triton" in self.o.peers and any(s.mlserver for s in self.loads):
                self._triton()
        rows = batching_rows(self.report)
        if rows:
            self.p.log("\ndynamic batching over each measured window (server statistics):")
            self.p.log(format_table(rows, BATCHING_HEADER))
        return self.report

    def _micro(self) -> None:
        budget = 0.3 if self.o.quick else 2.0
        self.p.begin("codec micro-benchmarks (native vs python)")
        self.report.micro = run_micro_benchmarks(budget)
        self.p.end(
            "codecs: "
            + "; ".join(
                f"{r.name} x{r.speedup:.1f}" if r.speedup else f"{r.name} {r.note}"
                for r in self.report.micro
            )
        )

    def _limit(self, key: str) -> None:
        seconds = 0.2 if self.o.quick else max(1.0, self.o.duration / 8)
        self.p.begin(f"in-process ONNX Runtime limit: {key} (batch 1..256)")
        result = measure_limit(key, self.onnx[key], seconds)
        one = measure_limit(key, self.onnx[key], seconds, ONE_THREAD_SIZES, threads=1)
        result = LimitResult(key, result.by_batch, one.by_batch)
        self.report.limits[key] = result
        self.p.end(
            f"limit {key}: {result.best:,.0f} inferences/s at batch {result.best_batch}; "
            f"one thread: {one.best:,.0f} at batch {one.best_batch}"
        )

    # -- Sluice ----------------------------------------------------------------------------

    def _sluice(self) -> None:
        variants = sorted({v for s in self.loads for v in s.sluice_variants})
        repo = write_sluice_repository(self.run_dir / "sluice_repository", self.onnx, variants)
        for workers in sorted({w for s in self.loads for w in s.sluice_workers}):
            loads = [s for s in self.loads if workers in s.sluice_workers]
            cmd = [
                sys.executable, "-m", "serving", "serve", "--model-repository", str(repo),
                "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0",
                "--allow-shared-memory", "--workers", str(workers),
            ]  # fmt: skip
            suffix = "" if workers == 1 else f"+workers{workers}"
            self.p.log(f"starting Sluice with {workers} worker(s) ({len(variants)} models)")
            log = self.run_dir / f"sluice{suffix}.log"
            with ServerProcess("sluice", cmd, log) as server:
                ports = server.wait_listening(["HTTP", "metrics"], timeout=120)
                host, port = ports["HTTP"]
                wait_http_ready(f"http://{host}:{port}/v2/health/ready", 300, server.proc)
                if workers > 1:
                    server.wait_log("server ready", timeout=300)
                grpc = server.listening().get("gRPC")
                grpc_target = f"{grpc[0]}:{grpc[1]}" if grpc else None
                if grpc_target is None:
                    self.p.log("  no 'gRPC service listening' line: gRPC scenarios skip")
                for scenario in loads:
                    for variant in scenario.sluice_variants:
                        endpoint = _Endpoint(
                            "sluice", variant + suffix, server.pid, (host, port), grpc_target
                        )
                        self._scenario(scenario, endpoint, variant)
                        server.check_alive()

    # -- the fixed-answer ceilings: grpc.aio, and a bare uvloop HTTP protocol ----------------

    def _ceiling(self) -> None:
        if any(s.ceiling and s.protocol == "http" for s in self.loads):
            self._http_ceiling()
        answers = {}
        for key in sorted({s.model for s in self.loads if s.ceiling and s.protocol == "grpc"}):
            m = MODELS[key]
            out = np.zeros((1, *m.output_dims), dtype=np.float32)
            answers[key] = self.run_dir / f"ceiling_response_{key}.bin"
            answers[key].write_bytes(grpc_infer_response(key, {m.output_name: out}))
        for key, response in answers.items():
            cmd = [sys.executable, "-m", "benchmarks.ceiling", "--response", str(response)]
            self.p.log(f"starting the fixed-answer grpc.aio ceiling ({key} answer)")
            log = self.run_dir / f"ceiling_{key}.log"
            with ServerProcess("ceiling", cmd, log) as server:
                ports = server.wait_listening(["gRPC"], timeout=60)
                target = "{}:{}".format(*ports["gRPC"])
                for scenario in self.loads:
                    if scenario.ceiling and scenario.model == key and scenario.protocol == "grpc":
                        endpoint = _Endpoint("ceiling", "fixed-answer", server.pid, None, target)
                        self._scenario(scenario, endpoint, key)

    def _http_ceiling(self) -> None:
        """One fixed JSON answer per model, as Sluice writes it (the JSON scenarios)."""
        for key in sorted({s.model for s in self.loads if s.ceiling and s.protocol == "http"}):
            m = MODELS[key]
            out = np.zeros((1, *m.output_dims), dtype=np.float32)
            output = {
                "name": m.output_name,
                "datatype": "FP32",
                "shape": list(out.shape),
                "data": out.reshape(-1).tolist(),
            }
            body = {"model_name": key, "model_version": "1", "outputs": [output]}
            answer = self.run_dir / f"http_ceiling_response_{key}.json"
            answer.write_text(json.dumps(body, separators=(",", ":")))
            cmd = [sys.executable, "-m", "benchmarks.http_ceiling", "--response", str(answer)]
            self.p.log(f"starting the fixed-answer uvloop HTTP ceiling ({key} answer)")
            log = self.run_dir / f"http_ceiling_{key}.log"
            with ServerProcess("http-ceiling", cmd, log) as server:
                ports = server.wait_listening(["HTTP"], timeout=60)
                for scenario in self.loads:
                    if scenario.ceiling and scenario.model == key and scenario.protocol == "http":
                        endpoint = _Endpoint(
                            "ceiling", "fixed-answer", server.pid, ports["HTTP"], None
                        )
                        self._scenario(scenario, endpoint, key)

    # -- MLServer --------------------------------------------------------------------------

    def _mlserver(self) -> None:
        self.p.begin(f"MLServer {MLSERVER_VERSION} virtualenv ({self.o.mlserver_venv})")
        try:
            exe = ensure_venv(self.o.mlserver_venv, self.run_dir / "mlserver-install.log")
        except Exception as exc:
            self.p.end(f"MLServer install failed: {exc}")
            self.report.skipped.append(f"mlserver: install failed ({exc})")
            return
        self.p.end(f"MLServer ready at {exe}")
        keys = sorted({s.model for s in self.loads if s.mlserver})
        onnx = {k: self.onnx[k] for k in keys}
        configs = MLSERVER_CONFIGS if not self.o.quick else MLSERVER_CONFIGS[::3]
        for config in configs:
            self.p.log(f"starting MLServer [{config.name}]")
            try:
                server, http_port, grpc_port = start_mlserver(
                    exe, self.run_dir / "mlserver" / config.name, config, onnx
                )
            except RuntimeError as exc:
                self.p.log(f"  MLServer [{config.name}] did not start: {exc}")
                self.report.skipped.append(f"mlserver[{config.name}]: did not start")
                continue
            with server:
                for scenario in self.loads:
                    if scenario.mlserver:
                        endpoint = _Endpoint(
                            "mlserver",
                            config.name,
                            server.pid,
                            ("127.0.0.1", http_port),
                            f"127.0.0.1:{grpc_port}",
                        )
                        self._scenario(scenario, endpoint, mlserver_model_name(scenario.model))
                        server.check_alive()

    # -- Triton ----------------------------------------------------------------------------

    def _triton(self) -> None:
        self.p.begin(f"Triton (nvidia-pytriton {PYTRITON_VERSION}) virtualenv")
        try:
            exe = ensure_triton_venv(self.o.triton_venv, self.run_dir / "triton-install.log")
        except Exception as exc:
            self.p.end(f"Triton install failed: {exc}")
            self.report.skipped.append(f"triton: install failed ({exc})")
            return
        self.p.end(f"Triton ready at {exe}")
        keys = sorted({s.model for s in self.loads if s.mlserver})
        onnx = {k: self.onnx[k] for k in keys}
        configs = TRITON_CONFIGS if not self.o.quick else TRITON_CONFIGS[:1]
        for config in configs:
            self.p.log(f"starting Triton [{config.name}]")
            try:
                server, http_port, grpc_port = start_triton(
                    exe, self.run_dir / "triton" / config.name, config, onnx
                )
            except RuntimeError as exc:
                self.p.log(f"  Triton [{config.name}] did not start: {exc}")
                self.report.skipped.append(f"triton[{config.name}]: did not start ({exc})")
                continue
            with server:
                for scenario in self.loads:
                    if scenario.mlserver:
                        endpoint = _Endpoint(
                            "triton",
                            config.name,
                            server.pid,
                            ("127.0.0.1", http_port),
                            f"127.0.0.1:{grpc_port}",
                        )
                        self._scenario(scenario, endpoint, triton_model_name(scenario.model))
                        server.check_alive()

    # -- one scenario against one endpoint ----------------------------------------------

    def _batch_probe(
        self, scenario: Scenario, endpoint: _Endpoint, model_name: str
    ) -> _BatchProbe | None:
        """A probe for Sluice variants with dynamic batching, served by one process (with
        several workers each answers statistics for itself only)."""
        variant = SLUICE_VARIANTS.get(model_name)
        if (
            endpoint.target != "sluice"
            or endpoint.http is None
            or variant is None
            or endpoint.config != variant.name
            or variant.queue_delay_us is None
            or not variant.max_batch_size
        ):
            return None
        base = "http://{}:{}".format(*endpoint.http)
        return _BatchProbe(
            lambda: fetch_stats(base, model_name),
            variant.instances,
            variant.max_batch_size,
            variant.queue_delay_us,
            scenario.connections,
            variant.intra_op_threads or max(1, default_cores() // variant.instances),
        )

    def _scenario(self, scenario: Scenario, endpoint: _Endpoint, model_name: str) -> None:
        model = MODELS[scenario.model]
        inputs = sample_inputs(model)
        label = f"{scenario.name} / {endpoint.target}[{endpoint.config}]"
        self._probe = self._batch_probe(scenario, endpoint, model_name)
        if scenario.protocol == "grpc":
            if endpoint.grpc is None:
                self._skip(label, "no gRPC front end")
                return
            requests = [
                grpc_infer_request(model_name, {model.input_name: x}, [model.output_name])
                for x in inputs
            ]
            self._grpc(scenario, endpoint, requests, label)
            return
        assert endpoint.http is not None
        host, port = endpoint.http
        encoding = scenario.encoding
        note = ""
        if endpoint.target == "mlserver" and encoding == "binary":
            encoding, note = "json", "MLServer has no binary tensor extension: JSON"
        if encoding == "shm":
            bodies = [shm_infer_body(f"http://{host}:{port}", model, inputs[0], self.run_dir)]
        else:
            bodies = [
                json_infer_body({model.input_name: x})
                if encoding == "json"
                else binary_infer_body({model.input_name: x}, [model.output_name])
                for x in inputs
            ]
        path = f"/v2/models/{model_name}/infer"
        problem = _http_preflight(f"http://{host}:{port}{path}", *bodies[0])
        if problem:
            self._skip(label, problem)
            return
        requests = [http_request(host, port, path, body, headers) for body, headers in bodies]
        if scenario.mode == "poisson":
            self._sweep(scenario, endpoint, requests, label, note)
            return
        spec = LoadSpec(scenario.connections, self.o.duration, self.o.warmup)
        self._own_http(scenario, endpoint, requests, spec, label, note)
        if "wrk" in self.o.clients and wrk.available():
            if len(requests) > 1:
                self._skip(f"{label} (wrk)", "wrk sends one body; this load cycles several")
            else:
                self._wrk(scenario, endpoint, f"http://{host}:{port}{path}", bodies[0], label, note)

    def _skip(self, label: str, reason: str) -> None:
        self.p.log(f"  skip {label}: {reason}")
        self.report.skipped.append(f"{label}: {reason}")

    def _own_http(
        self,
        scenario: Scenario,
        endpoint: _Endpoint,
        requests: list[bytes],
        spec: LoadSpec,
        label: str,
        note: str,
    ) -> Measurement:
        assert endpoint.http is not None
        host, port = endpoint.http

        async def go() -> LoadResult:
            senders: list[Sender] = [
                await HttpSender(host, port, requests).connect() for _ in range(spec.connections)
            ]
            try:
                return await drive(senders, spec, len(requests), self._tick(spec))
            finally:
                for s in senders:
                    await s.close()

        return self._measure(scenario, endpoint, "own", spec, label, note, lambda: _run_async(go()))

    def _grpc(
        self, scenario: Scenario, endpoint: _Endpoint, requests: list[bytes], label: str
    ) -> None:
        assert endpoint.grpc is not None
        target = endpoint.grpc
        spec = LoadSpec(scenario.connections, self.o.duration, self.o.warmup)

        async def preflight() -> str | None:
            channel = open_channel(target)
            try:
                await GrpcSender(channel, requests, timeout=30).send(0)
            except Exception as exc:
                return f"{type(exc).__name__}: {exc}"[:300]
            finally:
                await channel.close()
            return None

        problem = _run_async(preflight(), fast_loop=False)
        if problem:
            self._skip(label, problem)
            return

        async def go() -> LoadResult:
            channel = open_channel(target)
            try:
                senders: list[Sender] = [
                    GrpcSender(channel, requests) for _ in range(spec.connections)
                ]
                return await drive(senders, spec, len(requests), self._tick(spec))
            finally:
                await channel.close()

        self._measure(
            scenario, endpoint, "grpc.aio", spec, label, "", lambda: _run_async(go(), False)
        )
        if "h2load" in self.o.clients and h2load.available():
            self._h2load(scenario, endpoint, requests[0], f"{label} (h2load)")

    def _h2load(self, scenario: Scenario, endpoint: _Endpoint, request: bytes, label: str) -> None:
        """``scenario.connections`` HTTP/2 connections, one call in flight on each."""
        assert endpoint.grpc is not None
        stem = f"h2load_{scenario.name}_{endpoint.target}_{endpoint.config}"
        folder = self.run_dir / "h2load"
        folder.mkdir(exist_ok=True)
        body_file = folder / f"{stem}.body"
        body_file.write_bytes(h2load.grpc_body(request))
        spec = LoadSpec(scenario.connections, self.o.duration, self.o.warmup)
        target = endpoint.grpc

        def go() -> LoadResult:
            result = h2load.run_h2load(
                target, body_file, folder / f"{stem}.tsv", connections=spec.connections,
                streams=1, duration=spec.duration, warmup=spec.warmup,
            )  # fmt: skip
            (folder / f"{stem}.txt").write_text(result.raw)
            return LoadResult(spec.duration, result.latencies_us, result.errors)

        try:
            self._measure(scenario, endpoint, "h2load", spec, label, "", go, children=True)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:  # h2load failed: say so, go on
            self.p.end(f"  {label}: h2load failed")
            self._skip(label, str(exc)[:300])

    def _sweep(
        self,
        scenario: Scenario,
        endpoint: _Endpoint,
        requests: list[bytes],
        label: str,
        note: str,
    ) -> None:
        probe = LoadSpec(scenario.connections, max(1.5, self.o.duration / 4), self.o.warmup / 2)
        capacity = self._own_http(scenario, endpoint, requests, probe, f"{label} capacity", note)
        self.report.measurements.remove(capacity)
        if capacity.throughput <= 0:
            self._skip(label, "capacity probe completed no request")
            return
        for i, fraction in enumerate(scenario.load_fractions):
            rate = fraction * capacity.throughput
            spec = LoadSpec(
                scenario.connections,
                self.o.duration,
                self.o.warmup / 2,
                mode="poisson",
                rate=rate,
                seed=self.o.seed + i,
            )
            self._own_http(scenario, endpoint, requests, spec, f"{label} @{fraction:.0%}", note)

    def _wrk(
        self,
        scenario: Scenario,
        endpoint: _Endpoint,
        url: str,
        body: tuple[bytes, dict[str, str]],
        label: str,
        note: str,
    ) -> None:
        stem = f"wrk_{scenario.name}_{endpoint.target}_{endpoint.config}"
        body_file = self.run_dir / "wrk" / f"{stem}.body"
        body_file.parent.mkdir(exist_ok=True)
        body_file.write_bytes(body[0])
        script = wrk.write_script(body_file.with_suffix(".lua"), body_file, body[1])
        if self.o.warmup >= 1:
            wrk.run_wrk(url, script, scenario.connections, self.o.warmup)
        self.p.begin(f"{label} (wrk)")
        stats_before = self._snapshot()
        before = os.times()
        with ResourceMonitor(endpoint.pid) as monitor:
            result, raw = wrk.run_wrk(url, script, scenario.connections, self.o.duration)
        after = os.times()
        batching = self._window(stats_before, self._snapshot())
        (self.run_dir / "wrk" / f"{stem}.txt").write_text(raw)
        client_cpu = (
            (after.children_user + after.children_system)
            - (before.children_user + before.children_system)
        ) / max(result.duration_s, 1e-9)
        m = Measurement(
            scenario=scenario.name,
            target=endpoint.target,
            config=endpoint.config,
            client="wrk",
            connections=scenario.connections,
            mode="closed",
            duration_s=result.duration_s,
            requests=max(0, result.requests - result.errors),
            errors=result.errors,
            throughput=result.throughput,
            latency=LatencySummary(
                count=result.requests,
                mean_ms=result.mean_ms,
                p50_ms=result.p50_ms,
                p90_ms=result.p90_ms,
                p99_ms=result.p99_ms,
                p999_ms=result.p999_ms,
                max_ms=result.max_ms,
            ),
            server_cpu_percent=monitor.usage.cpu_percent,
            server_peak_rss_mb=monitor.usage.peak_rss_mb,
            client_cpu_percent=100.0 * client_cpu,
            note=note,
            batching=batching,
        )
        self.report.measurements.append(m)
        self.p.end(_line(m))

    def _snapshot(self) -> StatsSnapshot | None:
        if self._probe is None:
            return None
        try:
            return self._probe.fetch()
        except (OSError, ValueError, KeyError) as exc:
            self.p.log(f"  statistics not read: {type(exc).__name__}: {exc}")
            return None

    def _window(
        self, before: StatsSnapshot | None, after: StatsSnapshot | None
    ) -> BatchingWindow | None:
        if self._probe is None or before is None or after is None:
            return None
        return self._probe.window(before, after)

    def _tick(self, spec: LoadSpec) -> Any:
        return lambda elapsed, ok, errors: self.p.load(elapsed, spec.duration, ok, errors)

    def _measure(
        self,
        scenario: Scenario,
        endpoint: _Endpoint,
        client: str,
        spec: LoadSpec,
        label: str,
        note: str,
        run: Any,
        *,
        children: bool = False,
    ) -> Measurement:
        """``children``: the client is a child process (its CPU is counted, not ours)."""
        self.p.begin(label)
        cpu_before = _client_cpu(children)
        wall_before = time.monotonic()
        # The load warms up first: read the statistics when its measured window opens.
        stats_before: list[StatsSnapshot | None] = []
        opener = threading.Timer(spec.warmup, lambda: stats_before.append(self._snapshot()))
        if self._probe is not None:
            opener.start()
        with ResourceMonitor(endpoint.pid) as monitor:
            try:
                result: LoadResult = run()
            finally:
                opener.cancel()
                if self._probe is not None:
                    opener.join()
        batching = self._window(stats_before[0] if stats_before else None, self._snapshot())
        client_cpu = 100.0 * (_client_cpu(children) - cpu_before) / (time.monotonic() - wall_before)
        summary, histogram = summarize_values(result.latencies_us)
        notes = [note] if note else []
        if result.error_samples:
            notes.append("errors: " + "; ".join(dict.fromkeys(result.error_samples)))
        m = Measurement(
            scenario=scenario.name,
            target=endpoint.target,
            config=endpoint.config,
            client=client,
            connections=spec.connections,
            mode="closed" if spec.mode == "closed" else spec.mode,
            duration_s=spec.duration,
            requests=result.successes,
            errors=result.errors,
            throughput=result.throughput,
            latency=summary,
            rate=spec.rate or None,
            server_cpu_percent=monitor.usage.cpu_percent,
            server_peak_rss_mb=monitor.usage.peak_rss_mb,
            client_cpu_percent=client_cpu,
            note=" | ".join(notes),
            histogram=base64.b64encode(histogram.encode()).decode() if summary.count else "",
            batching=batching,
        )
        self.report.measurements.append(m)
        self.p.end(_line(m))
        return m


def _client_cpu(children: bool) -> float:
    if not children:
        return time.process_time()
    times = os.times()
    return times.children_user + times.children_system


def _line(m: Measurement) -> str:
    lat = m.latency
    rate = f" rate {m.rate:,.0f}/s" if m.rate else ""
    w = m.batching
    batches = (
        f"\n    batches: mean {w.mean_batch:.1f} [{w.histogram_text()}]  queue "
        f"{w.queue_ms:.2f} ms/req  compute {w.compute_ms:.2f} ms/exec  busy {w.busy:.0%}"
        if w is not None and w.executions
        else ""
    )
    return (
        f"{m.scenario} {m.target}[{m.config}] {m.client}{rate}: {m.throughput:,.0f} req/s  "
        f"p50 {lat.p50_ms:.2f}  p99 {lat.p99_ms:.2f} ms  errors {m.errors}  "
        f"server CPU {m.server_cpu_percent:.0f}%  RSS {m.server_peak_rss_mb:.0f} MB"
        + (f"  ({m.note})" if m.note else "")
        + batches
    )


def shm_infer_body(
    base_url: str, model: Any, x: np.ndarray, run_dir: Path
) -> tuple[bytes, dict[str, str]]:
    """Put ``x`` in a POSIX shared-memory region, register input and output regions with
    the server, and return the small JSON body that names them (no tensor bytes)."""
    import json

    size = x.nbytes
    regions = {}
    for role in ("in", "out"):
        key = f"sluice-bench-{os.getpid()}-{role}"
        path = Path("/dev/shm") / key
        path.write_bytes(x.tobytes() if role == "in" else bytes(size))
        regions[role] = key
        body = json.dumps({"key": "/" + key, "offset": 0, "byte_size": size}).encode()
        request = urllib.request.Request(
            f"{base_url}/v2/systemsharedmemory/region/bench_{role}/register",
            data=body, method="POST", headers={"Content-Type": "application/json"},
        )  # fmt: skip
        try:
            urllib.request.urlopen(request, timeout=30).read()
        except urllib.error.HTTPError as exc:
            if exc.code != 400 or b"already" not in exc.read():
                raise
    (run_dir / "shm_regions.txt").write_text("\n".join(regions.values()) + "\n")
    doc = {
        "inputs": [{
            "name": model.input_name, "datatype": "FP32", "shape": list(x.shape),
            "parameters": {"shared_memory_region": "bench_in", "shared_memory_byte_size": size},
        }],
        "outputs": [{
            "name": model.output_name,
            "parameters": {"shared_memory_region": "bench_out", "shared_memory_byte_size": size},
        }],
    }  # fmt: skip
    return json.dumps(doc).encode(), {"Content-Type": "application/json"}


def _http_preflight(url: str, body: bytes, headers: dict[str, str]) -> str | None:
    """One request before the load: None when it answers 200, else why not."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
            return None if response.status == 200 else f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}: {exc.read()[:300].decode(errors='replace')}"
    except (urllib.error.URLError, OSError) as exc:
        return f"request failed: {exc}"


def _machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
    }
    try:
        import psutil

        info["memory_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    try:
        from serving.codecs import IMPLEMENTATION
        from serving.runtime import ort_flavour

        info["sluice_codecs"] = IMPLEMENTATION
        info["onnxruntime"] = " ".join(ort_flavour())
    except ImportError:
        pass
    info["wrk"] = "yes" if wrk.available() else "not installed"
    info["h2load"] = "yes" if h2load.available() else "not installed"
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
