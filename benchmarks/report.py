"""What a run measured, the ratios it prints, and the files it writes (JSON, markdown)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.batch_stats import BatchingWindow, limit_at, verdict, yardstick
from benchmarks.codec_bench import MicroResult
from benchmarks.limit import LimitResult
from benchmarks.scenarios import COMPARISONS, SCENARIOS, Comparison
from serving.loadgen import LatencySummary

__all__ = [
    "BATCHING_HEADER",
    "RATIO_HEADER",
    "SCENARIO_HEADER",
    "ComparisonRow",
    "Measurement",
    "RunReport",
    "batching_rows",
    "format_table",
    "pick_best",
    "ratio_rows",
    "render_markdown",
    "scenario_rows",
]

_ERROR_RATE_OK = 0.001  # a configuration failing more than 0.1% of requests is not "best"


@dataclass(slots=True)
class Measurement:
    scenario: str
    target: str  # "sluice" | "mlserver" | "ceiling"
    config: str  # Sluice model variant or MLServer configuration
    client: str  # "own" | "wrk" | "grpc.aio"
    connections: int
    mode: str  # "closed" | "poisson"
    duration_s: float
    requests: int  # successful
    errors: int
    throughput: float  # successful requests (= inferences) per second
    latency: LatencySummary
    rate: float | None = None  # open loop: intended requests per second
    server_cpu_percent: float = 0.0
    server_peak_rss_mb: float = 0.0
    client_cpu_percent: float = 0.0
    note: str = ""
    histogram: str = ""  # HDR histogram, base64 (own load generator only)
    # Sluice with dynamic batching: what the batcher formed in the measured window
    batching: BatchingWindow | None = None

    @property
    def error_rate(self) -> float:
        total = self.requests + self.errors
        return self.errors / total if total else 1.0

    def metric(self, name: str) -> float | None:
        if name == "throughput":
            return self.throughput
        return getattr(self.latency, f"{name}_ms")

    def to_json(self, limit: LimitResult | None = None) -> dict[str, Any]:
        """``limit``: the model's in-process ONNX Runtime limit, set beside the batches."""
        out = asdict(self)
        out["latency"] = self.latency.to_json()
        out["batching"] = self.batching.to_json(limit) if self.batching else None
        return out


def pick_best(candidates: list[Measurement], objective: str) -> Measurement | None:
    """The best closed-loop measurement: fewest errors first, then the objective."""
    pool = [m for m in candidates if m.mode == "closed" and m.requests > 0]
    if not pool:
        return None

    def key(m: Measurement) -> tuple[bool, float]:
        failing = m.error_rate > _ERROR_RATE_OK
        if objective == "throughput":
            return failing, -m.throughput
        return failing, m.latency.p50_ms

    return min(pool, key=key)


@dataclass(frozen=True, slots=True)
class ComparisonRow:
    label: str
    client: str
    sluice: float | None
    baseline: float | None
    value: float | None  # the ratio, or Sluice's own value for absolute comparisons
    target: float | None
    better: str
    note: str = ""

    @property
    def met(self) -> bool | None:
        if self.value is None or self.target is None:
            return None
        return self.value >= self.target if self.better == "higher" else self.value <= self.target


@dataclass
class RunReport:
    command: str
    started: str
    machine: dict[str, Any]
    options: dict[str, Any]
    measurements: list[Measurement] = field(default_factory=list)
    limits: dict[str, LimitResult] = field(default_factory=dict)
    micro: list[MicroResult] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def best(self, scenario: str, target: str, client: str) -> Measurement | None:
        objective = SCENARIOS[scenario].objective if scenario in SCENARIOS else "throughput"
        return pick_best(
            [
                m
                for m in self.measurements
                if m.scenario == scenario and m.target == target and m.client == client
            ],
            objective,
        )

    def limit_for(self, m: Measurement) -> LimitResult | None:
        scenario = SCENARIOS.get(m.scenario)
        return self.limits.get(scenario.model) if scenario else None

    def clients(self, scenario: str) -> list[str]:
        return sorted({m.client for m in self.measurements if m.scenario == scenario})

    def comparisons(self) -> list[ComparisonRow]:
        rows: list[ComparisonRow] = []
        scenarios = set(self.options.get("scenarios", SCENARIOS))
        for comp in COMPARISONS:
            if comp.scenario not in scenarios:
                continue
            if comp.metric == "speedup":
                rows.append(self._micro_row(comp))
                continue
            clients = self.clients(comp.scenario) or ["own"]
            rows.extend(self._row(comp, client) for client in clients)
        return rows

    def _micro_row(self, comp: Comparison) -> ComparisonRow:
        found = next((r for r in self.micro if r.name == comp.micro), None)
        if found is None:
            return ComparisonRow(
                comp.label, "-", None, None, None, comp.target, comp.better, "not run"
            )
        return ComparisonRow(
            comp.label,
            "-",
            found.native_us,
            found.python_us,
            found.speedup,
            comp.target,
            comp.better,
            found.note,
        )

    def _row(self, comp: Comparison, client: str) -> ComparisonRow:
        mine = self.best(comp.scenario, "sluice", client)
        sluice = mine.metric(comp.metric) if mine else None
        note = "" if mine else "no Sluice result"
        if not comp.baseline:
            return ComparisonRow(
                comp.label, client, sluice, None, sluice, comp.target, comp.better, note
            )
        baseline: float | None = None
        if comp.baseline == "limit":
            model = SCENARIOS[comp.scenario].model
            limit = self.limits.get(model)
            baseline = limit.best if limit else None
        else:
            theirs = self.best(comp.scenario, comp.baseline, client)
            baseline = theirs.metric(comp.metric) if theirs else None
        if baseline is None and not note:
            note = f"no {comp.baseline} result"
        value = sluice / baseline if sluice is not None and baseline else None
        return ComparisonRow(
            comp.label, client, sluice, baseline, value, comp.target, comp.better, note
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "started": self.started,
            "machine": self.machine,
            "options": self.options,
            "measurements": [m.to_json(self.limit_for(m)) for m in self.measurements],
            "limits": {k: v.to_json() for k, v in self.limits.items()},
            "micro": [r.to_json() for r in self.micro],
            "comparisons": [{**asdict(r), "met": r.met} for r in self.comparisons()],
            "skipped": self.skipped,
        }

    def write_json(self, path: Path) -> Path:
        path.write_text(json.dumps(self.to_json(), indent=2, allow_nan=False))
        return path


def _num(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _met(row: ComparisonRow) -> str:
    return {True: "yes", False: "MISSED", None: "-"}[row.met]


def _target(row: ComparisonRow) -> str:
    if row.target is None:
        return "-"
    return (">= " if row.better == "higher" else "<= ") + _num(row.target)


def format_table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


RATIO_HEADER = [
    "comparison",
    "client",
    "Sluice",
    "baseline",
    "ratio/value",
    "target",
    "met",
    "note",
]
SCENARIO_HEADER = [
    "scenario", "target", "config", "client", "conns", "rate", "req/s", "p50 ms", "p90 ms",
    "p99 ms", "p99.9 ms", "errors", "server CPU %", "server RSS MB",
]  # fmt: skip


def ratio_rows(report: RunReport) -> list[list[str]]:
    return [
        [
            r.label,
            r.client,
            _num(r.sluice),
            _num(r.baseline),
            _num(r.value),
            _target(r),
            _met(r),
            r.note,
        ]
        for r in report.comparisons()
    ]


def scenario_rows(report: RunReport) -> list[list[str]]:
    rows = []
    for m in report.measurements:
        lat = m.latency
        rows.append(
            [
                m.scenario, m.target, m.config, m.client, str(m.connections),
                _num(m.rate, 0) if m.rate else "-", _num(m.throughput, 0),
                _num(lat.p50_ms), _num(lat.p90_ms), _num(lat.p99_ms), _num(lat.p999_ms),
                str(m.errors), _num(m.server_cpu_percent, 0), _num(m.server_peak_rss_mb, 0),
            ]
        )  # fmt: skip
    return rows


BATCHING_HEADER = [
    "scenario", "config", "client", "req/s", "executions", "mean batch", "batch sizes (size:executions)",
    "queue ms/req", "compute ms/exec", "busy", "in exec/queue/elsewhere", "ORT rows/s at mean batch",
    "ORT alone ms/exec at mean batch (threads)", "limited by",
]  # fmt: skip


def batching_rows(report: RunReport) -> list[list[str]]:
    """One row per Sluice measurement with dynamic batching: the batches it formed."""
    rows = []
    for m in report.measurements:
        w = m.batching
        if w is None:
            continue
        limit = report.limit_for(m)
        at_mean = limit_at(limit, w.mean_batch) if limit and w.executions else None
        alone = yardstick(w, limit) if limit and w.executions else None
        split = "/".join(f"{v:.1f}" for v in w.in_flight()) if w.connections else "-"
        rows.append(
            [
                m.scenario, m.config, m.client, _num(m.throughput, 0), str(w.executions),
                _num(w.mean_batch, 1), w.histogram_text() or "-", _num(w.queue_ms),
                _num(w.compute_ms), f"{w.busy:.0%}", split, _num(at_mean, 0),
                f"{1e3 * w.mean_batch / alone[0]:.2f} ({alone[1]})" if alone else "-",
                verdict(w, limit),
            ]
        )  # fmt: skip
    return rows


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def render_markdown(report: RunReport) -> str:
    """A RESULTS.md-ready section for this run (the lead pastes a quiet machine's run)."""
    machine = ", ".join(f"{k}: {v}" for k, v in report.machine.items())
    parts = [
        f"## Run of {report.started}",
        "",
        f"Command: `{report.command}`",
        "",
        f"Machine: {machine}",
        "",
        "### Targets",
        "",
        _md_table(RATIO_HEADER, ratio_rows(report)),
        "",
        "### Scenarios (every configuration measured)",
        "",
        _md_table(SCENARIO_HEADER, scenario_rows(report)),
    ]
    batching = batching_rows(report)
    if batching:
        parts += [
            "",
            "### Dynamic batching (the batcher over each measured window)",
            "",
            "From the server's statistics (`batch_stats`) before and after the measured "
            "window; busy: share of the window the instances spent in executions; "
            "in exec/queue/elsewhere: requests in flight by place (Little's law).",
            "",
            _md_table(BATCHING_HEADER, batching),
        ]
    if report.limits:
        parts += ["", "### In-process ONNX Runtime limit", ""]
        rows = [
            [
                k,
                str(v.best_batch),
                _num(v.best, 0),
                " ".join(f"{b}:{_num(r, 0)}" for b, r in v.by_batch.items()),
            ]
            for k, v in report.limits.items()
        ]
        parts.append(_md_table(["model", "best batch", "inferences/s", "by batch size"], rows))
    if report.micro:
        parts += ["", "### Codec micro-benchmarks (per call, best of repeats)", ""]
        rows = [
            [r.name, r.description, _num(r.native_us), _num(r.python_us), _num(r.speedup), r.note]
            for r in report.micro
        ]
        parts.append(
            _md_table(["benchmark", "what", "native µs", "python µs", "speedup", "note"], rows)
        )
    if report.skipped:
        parts += ["", "### Skipped", ""] + [f"- {s}" for s in report.skipped]
    return "\n".join(parts) + "\n"
