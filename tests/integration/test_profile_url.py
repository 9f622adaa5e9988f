"""``sluice profile --url``: measuring a server that is already running, as a user runs it.

The server is a real ``sluice serve`` process (ServerProcess) that only this module's
profiles load, so what its statistics endpoint counted can be held against the report.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from serving.examples import write_repository
from tests.integration.server_process import ServerProcess

pytestmark = pytest.mark.integration

LOADS = ["--concurrency", "1,2", "--duration", "0.5s", "--warmup", "0.2s"]


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = tmp_path_factory.mktemp("repo")
    write_repository(repo, ["mlp"])
    proc = ServerProcess(repo, log_dir=tmp_path_factory.mktemp("logs"))
    yield proc
    proc.stop()


def profile(*args: str | Path) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    out = Path(args[args.index("--out") + 1])
    done = subprocess.run(
        [sys.executable, "-m", "serving", "profile", *map(str, args)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done, json.loads((out / "profile.json").read_text())


def requests_answered(server: ServerProcess) -> int:
    stats = httpx.get(f"{server.http_url}/v2/models/mlp/stats", timeout=10).json()
    return sum(int(s["inference_stats"]["success"]["count"]) for s in stats["model_stats"])


def test_profile_url_measures_the_running_server_with_its_cpu_and_memory(
    running: ServerProcess, tmp_path: Path
) -> None:
    before = requests_answered(running)
    done, report = profile("--url", running.http_url, "--model", "mlp", "--server-pid",
                           str(running.proc.pid), *LOADS, "--out", tmp_path)  # fmt: skip
    points = report["points"]
    assert [p["load"] for p in points] == [
        {"mode": "closed", "concurrency": 1},
        {"mode": "closed", "concurrency": 2},
    ]
    for point in points:
        assert point["configuration"] is None  # measured as it runs: nothing swept
        assert point["errors"] == 0 and point["successes"] > 0
        assert point["server"]["requests"] == point["successes"]
        assert point["cpu_cores"] > 0 and point["peak_rss_bytes"] > 20 * 2**20
        rows = sum(int(size) * count for size, count in point["batch_sizes"].items())
        assert rows == point["successes"]
    # The warm-ups are requests too, so the server answered at least what was measured.
    assert requests_answered(running) - before >= sum(p["successes"] for p in points)
    best = max(range(len(points)), key=lambda i: points[i]["throughput"] / points[i]["cpu_cores"])
    rec = report["recommendation"]
    assert rec["point"] == best and rec["cpu_request_cores"] >= 0.1
    assert rec["memory_request_bytes"] >= points[best]["peak_rss_bytes"]
    said = " ".join(done.stdout.split())
    assert f"recommended: as running at {points[best]['load']}" in said
    assert f"request cpu {rec['cpu_request_cores']}, memory {rec['memory_request']}" in said
    assert "rerun" not in report and not (tmp_path / "config.pbtxt").exists()
    assert running.alive()  # measured, not restarted or stopped


def test_profile_url_without_a_pid_ranks_by_throughput_and_requests_nothing(
    running: ServerProcess, tmp_path: Path
) -> None:
    done, report = profile("--url", running.http_url, "--model", "mlp", *LOADS,
                           "--out", tmp_path)  # fmt: skip
    points = report["points"]
    assert all(p["cpu_cores"] is None and p["peak_rss_bytes"] is None for p in points)
    assert all(p["server"]["requests"] == p["successes"] > 0 for p in points)
    rec = report["recommendation"]
    assert rec["point"] == max(range(len(points)), key=lambda i: points[i]["throughput"])
    assert rec["cpu_request_cores"] is None and rec["memory_request"] is None
    said = " ".join(done.stdout.split())
    assert "warning: no --server-pid: CPU and RSS not measured" in said
    assert "CPU and memory not measured: no pod request" in said


def test_profile_url_with_a_model_the_server_lacks_is_one_line(
    running: ServerProcess, tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "serving", "profile", "--url", running.http_url, "--model",
         "absent", *LOADS, "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.startswith(f"sluice: error: {running.http_url}: model 'absent': HTTP 4")
    assert done.stderr.count("\n") == 1
