"""``sluice profile``: sweep configurations x loads on a real server, recommend, re-run.

Each configuration gets its own fresh ``sluice serve`` process (a one-model repository
whose config.pbtxt sets instances, max_batch_size and the queue delay), so CPU and RSS
belong to that configuration alone. With ``url`` the running server is measured as it
is (no configuration sweep; CPU and RSS only when its pid is given).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from serving.config import format_config
from serving.convert import ToolError, model_inputs
from serving.profile._grid import (
    Configuration,
    LoadPoint,
    base_config,
    expand,
    variant_config,
    write_variant,
)
from serving.profile._load import require_histograms
from serving.profile._recommend import RULE, closest, recommend
from serving.profile._report import write_csv, write_json, write_png
from serving.profile._server import ProfiledServer
from serving.profile._sweep import Target, measure_point

__all__ = ["ProfileRequest", "run_profile"]

StepFn = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class ProfileRequest:
    model_dir: Path | None
    out: Path
    instances: list[int] = field(default_factory=lambda: [1])
    max_batch_sizes: list[int] = field(default_factory=lambda: [1, 8, 32])
    queue_delays_us: list[int] = field(default_factory=lambda: [0, 500, 2000])
    concurrency: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16, 32])
    rates: list[float] = field(default_factory=list)
    duration: float = 10.0
    warmup: float = 1.0
    slo_p99_ms: float | None = None
    input_path: Path | None = None
    url: str | None = None
    model_name: str | None = None  # with url
    server_pid: int | None = None  # with url: read its CPU and RSS from /proc
    server_args: list[str] = field(default_factory=list)


def run_profile(request: ProfileRequest, step: StepFn | None = None) -> dict[str, Any]:
    """Measure, recommend, re-run, write the outputs; return the report.

    Raises ``ToolError`` after writing the measurements when no point meets the SLO.
    """
    say = step or (lambda _text: None)
    require_histograms()
    loads = [LoadPoint("closed", c) for c in request.concurrency]
    loads += [LoadPoint("open", r) for r in request.rates]
    if not loads or any(p.value <= 0 for p in loads):
        raise ToolError("give positive --concurrency and/or --rates values")
    if request.duration <= 0:
        raise ToolError(f"--duration must be positive, not {request.duration}")
    out = Path(request.out)
    out.mkdir(parents=True, exist_ok=True)
    if request.url:
        report = _profile_url(request, loads, say)
    else:
        report = _profile_dir(request, loads, out, say)
    report["slo_p99_ms"] = request.slo_p99_ms
    report["rule"] = RULE
    outputs = report["outputs"] = {
        "json": str(out / "profile.json"),
        "csv": str(write_csv(report["points"], out / "profile.csv")),
    }
    png = write_png(report, out / "profile.png")
    outputs["png"] = str(png) if png else None
    if report["recommendation"] is not None and report.get("recommended_config"):
        path = out / "config.pbtxt"
        path.write_text(report.pop("recommended_config"))
        outputs["config"] = str(path)
    else:
        report.pop("recommended_config", None)
    write_json(report, out / "profile.json")
    if report["recommendation"] is None:
        raise ToolError(_no_recommendation(report))
    return report


def _profile_dir(
    request: ProfileRequest, loads: list[LoadPoint], out: Path, say: StepFn
) -> dict[str, Any]:
    if request.model_dir is None:
        raise ToolError("give a model directory or --url")
    model_dir = Path(request.model_dir)
    base, onnx_path = base_config(model_dir)
    inputs = model_inputs(base, request.input_path, rows=64)
    configurations, notes = expand(
        base, request.instances, request.max_batch_sizes, request.queue_delays_us
    )
    points: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="sluice-profile-") as tmp:
        for configuration in configurations:
            repo = write_variant(Path(tmp), base, onnx_path, configuration)
            points += _sweep_one(request, repo, base.name, configuration, loads, inputs, out, say)
        recommendation = recommend(points, request.slo_p99_ms)
        report: dict[str, Any] = {
            "model": base.name,
            "model_dir": str(model_dir),
            "warnings": inputs.warnings + notes,
            "points": points,
            "recommendation": recommendation.to_json() if recommendation else None,
        }
        if recommendation is None:
            report["closest"] = closest(points)
            return report
        best = points[recommendation.index]
        configuration = Configuration(**best["configuration"])
        load = _load_of(best)
        say(f"re-running the recommendation {configuration.label()} at {load.label()}")
        rerun = _sweep_one(request, write_variant(Path(tmp) / "rerun", base, onnx_path,
                           configuration), base.name, configuration, [load], inputs, out, say)[0]  # fmt: skip
    report["rerun"] = rerun
    report["rerun_slo_held"] = (
        None if request.slo_p99_ms is None
        else bool(not rerun["errors"] and rerun["latency_ms"]["p99"] <= request.slo_p99_ms)
    )  # fmt: skip
    report["recommended_config"] = format_config(variant_config(base, configuration), "pbtxt")
    return report


def _sweep_one(
    request: ProfileRequest,
    repo: Path,
    model: str,
    configuration: Configuration,
    loads: list[LoadPoint],
    inputs: Any,
    out: Path,
    say: StepFn,
) -> list[dict[str, Any]]:
    log = out / f"server-{configuration.label()}.log"
    points = []
    with ProfiledServer(repo, log, request.server_args) as server:
        target = Target(server.url, model, server.pid, configuration.max_batch_size > 0)
        for load in loads:
            say(f"{configuration.label()} {load.label()}")
            points.append(measure_point(target, configuration, load, inputs.arrays,
                                        request.duration, request.warmup))  # fmt: skip
    log.unlink(missing_ok=True)
    return points


def _profile_url(request: ProfileRequest, loads: list[LoadPoint], say: StepFn) -> dict[str, Any]:
    from serving.config import config_from_json

    url = request.url.rstrip("/") if request.url else ""
    if not request.model_name:
        raise ToolError("with --url, name the model: --model NAME")
    try:
        response = httpx.get(f"{url}/v2/models/{request.model_name}/config", timeout=10)
    except httpx.HTTPError as exc:
        raise ToolError(f"cannot reach {url}: {exc}") from None
    if response.status_code != 200:
        raise ToolError(f"{url}: model {request.model_name!r}: HTTP {response.status_code} "
                        f"{response.text[:200]}")  # fmt: skip
    config = config_from_json(response.json())
    inputs = model_inputs(config, request.input_path, rows=64)
    target = Target(url, request.model_name, request.server_pid, config.max_batch_size > 0)
    points = []
    for load in loads:
        say(f"{request.model_name} {load.label()}")
        points.append(measure_point(target, None, load, inputs.arrays, request.duration,
                                    request.warmup))  # fmt: skip
    warnings = list(inputs.warnings)
    if request.server_pid is None:
        warnings.append("no --server-pid: CPU and RSS not measured, points ranked by throughput")
        for point in points:
            point["cpu_cores"] = None
    recommendation = recommend(points, request.slo_p99_ms)
    return {
        "model": request.model_name,
        "url": url,
        "warnings": warnings,
        "points": points,
        "recommendation": recommendation.to_json() if recommendation else None,
        **({} if recommendation else {"closest": closest(points)}),
    }


def _load_of(point: dict[str, Any]) -> LoadPoint:
    load = point["load"]
    if load["mode"] == "closed":
        return LoadPoint("closed", load["concurrency"])
    return LoadPoint("open", load["rate"])


def _no_recommendation(report: dict[str, Any]) -> str:
    slo = report.get("slo_p99_ms")
    index = report.get("closest")
    if index is None:
        return "no load point completed without errors; see profile.json for the errors"
    point = report["points"][index]
    cfg = point["configuration"]
    where = "as running" if cfg is None else Configuration(**cfg).label()
    p99 = point["latency_ms"]["p99"]
    return (
        f"no configuration meets the SLO p99 <= {slo:g} ms; the closest is {where} at "
        f"{_load_of(point).label()}: p99 {p99:.3f} ms, {point['throughput']:.1f}/s"
    )
