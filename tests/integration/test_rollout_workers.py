"""A canary rollout under ``--workers 2``: one worker runs it, both serve its splits, and it
is judged on every worker's traffic, not only on the share of the worker that runs it
(serving.rollout._peers)."""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from serving.examples import write_repository
from tests.integration.server_process import ServerProcess

pytestmark = pytest.mark.integration

MODEL = "identity_fp32"
_PATIENCE_SECS = 90  # a safety net for the rollout to finish, not a timing assertion
_FRESH = 20  # fresh connections that must all agree (both workers, all but surely)
_BODY = {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 2], "data": [1.5, 2.5]}]}
_CONFIG = """\
version_policy: { all: {} }
parameters [ { key: "sluice.traffic" value: { string_value: "1:100" } } ]
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    repo = tmp_path / "repo"
    write_repository(repo, [MODEL])
    (repo / MODEL / "config.pbtxt").write_text(_CONFIG)
    (repo / MODEL / "2").mkdir()
    shutil.copy(repo / MODEL / "1" / "model.onnx", repo / MODEL / "2")
    proc = ServerProcess(repo, "--workers", "2", log_dir=tmp_path)
    deadline = time.monotonic() + _PATIENCE_SECS
    while "server ready: 2 workers serving" not in proc.log():
        assert time.monotonic() < deadline, proc.log()[-4000:]
        time.sleep(0.05)
    yield proc
    proc.stop()


def _fresh(server: ServerProcess, method: str, path: str, **kwargs: Any) -> httpx.Response:
    with httpx.Client(base_url=server.http_url, timeout=30) as client:  # a new connection
        return client.request(method, path, **kwargs)


def test_a_rollout_under_two_workers_is_promoted_everywhere(server: ServerProcess) -> None:
    spec = {"to": 2, "steps": [50, 100], "interval": "1s", "min_samples": 10, "max_p99_ratio": 50}
    started = _fresh(server, "POST", f"/v2/models/{MODEL}/rollout", json=spec)
    assert started.status_code == 200, started.text
    # the other worker refuses a second one: the first is running
    for _ in range(_FRESH):
        again = _fresh(server, "POST", f"/v2/models/{MODEL}/rollout", json=spec)
        assert again.status_code == 400 and "already has a rollout running" in again.text
    deadline = time.monotonic() + _PATIENCE_SECS
    while True:
        for _ in range(20):
            assert (
                _fresh(server, "POST", f"/v2/models/{MODEL}/infer", json=_BODY).status_code == 200
            )
        status = _fresh(server, "GET", f"/v2/models/{MODEL}/rollout").json()  # either worker
        if status["state"] != "running":
            break
        assert time.monotonic() < deadline, status
    assert status["state"] == "promoted", status["history"]
    for _ in range(_FRESH):  # every worker says so, and serves the candidate alone
        assert _fresh(server, "GET", f"/v2/models/{MODEL}/rollout").json()["state"] == "promoted"
        reply = _fresh(server, "POST", f"/v2/models/{MODEL}/infer", json=_BODY)
        assert reply.json()["model_version"] == "2"


def _served(client: httpx.Client, version: int) -> int:
    """Requests version ``version`` answered, as the worker behind ``client`` counts them."""
    stats = client.get(f"/v2/models/{MODEL}/versions/{version}/stats").json()
    return int(stats["model_stats"][0]["inference_stats"]["success"]["count"])


def _other_worker(server: ServerProcess, first: httpx.Client) -> httpx.Client:
    """A keep-alive connection to the worker ``first`` is not on: ``first``'s worker has
    answered requests, the other none yet."""
    for _ in range(200):  # the same worker 200 times in a row: 2**-200
        client = httpx.Client(base_url=server.http_url, timeout=30)
        if _served(client, 1) == 0:
            return client
        client.close()
    raise AssertionError("every new connection landed on one worker")


def test_the_judge_counts_traffic_that_only_the_other_worker_served(
    server: ServerProcess,
) -> None:
    with httpx.Client(base_url=server.http_url, timeout=30) as judge:
        for _ in range(3):
            assert judge.post(f"/v2/models/{MODEL}/infer", json=_BODY).status_code == 200
        assert _served(judge, 1) == 3
        with contextlib.closing(_other_worker(server, judge)) as other:
            spec = {"to": 2, "steps": [50, 100], "interval": "1s", "min_samples": 10,
                    "max_p99_ratio": 50}  # fmt: skip
            # The worker that takes the call runs the rollout: the one behind ``judge``.
            started = judge.post(f"/v2/models/{MODEL}/rollout", json=spec)
            assert started.status_code == 200, started.text
            deadline = time.monotonic() + _PATIENCE_SECS
            while True:
                for _ in range(20):  # every request on the other worker
                    assert other.post(f"/v2/models/{MODEL}/infer", json=_BODY).status_code == 200
                status = judge.get(f"/v2/models/{MODEL}/rollout").json()
                if status["state"] != "running" or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert status["state"] == "promoted", (status["history"], server.log()[-3000:])
            advances = [h["reason"] for h in status["history"] if h["action"] == "advance"]
            assert len(advances) == 2 and all("within the criteria" in r for r in advances)
            # The judge's own worker served none of the canary's traffic: it judged the
            # other worker's.
            assert _served(judge, 2) == 0
            assert _served(judge, 1) == 3
            assert _served(other, 2) >= 20
