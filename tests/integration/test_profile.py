"""``sluice profile`` on the example MLP, a short sweep against real server processes.

The JSON is checked against what the run measured (each request is one row, so the
server's batch counts add up to the requests answered) and the recommendation against
the rule the report states.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import text_format

from serving.config.model_config_pb2 import ModelConfig
from serving.convert import ToolError
from serving.examples import write_repository
from serving.profile import HEADROOM, ProfileRequest, run_profile

pytestmark = pytest.mark.integration

SLO_MS = 500.0  # generous: the point is the rule, not this machine's speed


@pytest.fixture(scope="module")
def mlp_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("repo")
    write_repository(repo, ["mlp"])
    return repo / "mlp"


@pytest.fixture(scope="module")
def profiled(mlp_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("profile")
    request = ProfileRequest(
        mlp_dir,
        out,
        instances=[1],
        max_batch_sizes=[1, 8],
        queue_delays_us=[0],
        concurrency=[1, 4],
        rates=[50.0],
        duration=0.6,
        warmup=0.2,
        slo_p99_ms=SLO_MS,
    )
    return run_profile(request), out


def test_each_point_reports_what_was_measured(profiled: tuple[dict, Path]) -> None:
    report, out = profiled
    assert json.loads((out / "profile.json").read_text()) == json.loads(json.dumps(report))
    points = report["points"]
    assert len(points) == 2 * 3  # two configurations x (two concurrencies + one rate)
    seen = {(p["configuration"]["max_batch_size"], json.dumps(p["load"])) for p in points}
    assert len(seen) == 6
    for point in points:
        assert point["errors"] == 0, point["error_samples"]
        assert point["throughput"] == pytest.approx(point["successes"] / point["duration_s"])
        rows = sum(int(size) * count for size, count in point["batch_sizes"].items())
        assert rows == point["successes"]
        limit = point["configuration"]["max_batch_size"]
        assert max(int(size) for size in point["batch_sizes"]) <= limit
        latency = point["latency_ms"]
        assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["p99.9"]
        assert point["cpu_cores"] > 0 and point["peak_rss_bytes"] > 20 * 2**20
        # The server's own account of the same requests: every one counted, its mean time
        # inside the server within what the client measured, the phases within that.
        server = point["server"]
        assert server["requests"] == point["successes"]
        assert 0 < server["request_ms"] <= latency["mean"]
        phases = [server[f"{p}_ms"] for p in ("queue", "compute_input", "compute_infer",
                                              "compute_output")]  # fmt: skip
        assert all(v is not None and v >= 0 for v in phases) and server["compute_infer_ms"] > 0
        assert sum(phases) <= server["request_ms"] * 1.0001
        assert set(server["compute_infer_ms_by_batch_size"]) == set(point["batch_sizes"])
    with (out / "profile.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == len(points)


def test_the_recommendation_follows_the_stated_rule(profiled: tuple[dict, Path]) -> None:
    report, out = profiled
    assert "most throughput per CPU core" in report["rule"]
    points = report["points"]

    def per_core(p: dict[str, Any]) -> float:
        return p["throughput"] / max(p["cpu_cores"], 1e-3)

    eligible = [i for i, p in enumerate(points) if p["latency_ms"]["p99"] <= SLO_MS]
    best = max(eligible, key=lambda i: (per_core(points[i]), points[i]["throughput"]))
    rec = report["recommendation"]
    assert rec["point"] == best
    chosen = points[best]
    assert rec["cpu_request_cores"] == max(
        0.1, math.ceil(chosen["cpu_cores"] * (1 + HEADROOM) * 10) / 10
    )
    assert rec["memory_request_bytes"] >= chosen["peak_rss_bytes"] * (1 + HEADROOM)
    config = text_format.Parse((out / "config.pbtxt").read_text(), ModelConfig())
    assert config.max_batch_size == chosen["configuration"]["max_batch_size"]
    assert config.instance_group[0].count == chosen["configuration"]["instances"]
    rerun = report["rerun"]
    assert rerun["configuration"] == chosen["configuration"] and rerun["load"] == chosen["load"]
    assert report["rerun_slo_held"] == (rerun["latency_ms"]["p99"] <= SLO_MS)


def test_an_slo_nothing_meets_names_the_closest_and_writes_no_config(
    mlp_dir: Path, tmp_path: Path
) -> None:
    request = ProfileRequest(
        mlp_dir, tmp_path, max_batch_sizes=[8], queue_delays_us=[0], concurrency=[1, 2],
        duration=0.3, warmup=0.1, slo_p99_ms=0.001,
    )  # fmt: skip
    with pytest.raises(ToolError) as caught:
        run_profile(request)
    report = json.loads((tmp_path / "profile.json").read_text())
    assert report["recommendation"] is None
    closest = report["points"][report["closest"]]
    assert closest["latency_ms"]["p99"] == min(p["latency_ms"]["p99"] for p in report["points"])
    assert str(caught.value).startswith("no configuration meets the SLO p99 <= 0.001 ms")
    assert f"p99 {closest['latency_ms']['p99']:.3f} ms" in str(caught.value)
    assert not (tmp_path / "config.pbtxt").exists()
