"""A load or unload through the repository API reaches every worker of ``--workers 2``
(serving.desired_sync, docs/workers.md), over HTTP and gRPC, and a restarted worker
starts from it."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from serving.examples import write_repository
from tests.integration.server_process import ServerProcess

pytestmark = pytest.mark.integration

LOADED = "identity_int32"  # loaded at start (--load-model)
MODEL = "identity_fp32"  # loaded and unloaded through the API
_PATIENCE_SECS = 90  # a safety net for the server to do something, not a timing assertion
_FRESH = 30  # fresh connections that must all agree
_WORKER_STARTED = re.compile(r"worker (\d+) started \(pid (\d+)\)")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    repo = tmp_path / "repo"
    write_repository(repo, [LOADED, MODEL])
    proc = ServerProcess(
        repo, "--workers", "2", "--model-control-mode", "explicit", "--load-model", LOADED,
        log_dir=tmp_path, wait_ready=False,
    )  # fmt: skip
    _wait_for(lambda: "server ready: 2 workers serving" in proc.log(), "ready workers", proc)
    yield proc
    assert proc.stop() == 0


def _wait_for(condition: Callable[[], bool], what: str, server: ServerProcess) -> None:
    deadline = time.monotonic() + _PATIENCE_SECS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {_PATIENCE_SECS}s:\n{server.log()[-6000:]}")
        time.sleep(0.05)


def _ready_on_fresh_connection(server: ServerProcess, model: str) -> bool:
    with httpx.Client(base_url=server.http_url, timeout=30) as client:  # a new connection
        return client.get(f"/v2/models/{model}/ready").status_code == 200


def _all_fresh_connections_see(server: ServerProcess, model: str, ready: bool) -> bool:
    return all(_ready_on_fresh_connection(server, model) == ready for _ in range(_FRESH))


def _worker_views(server: ServerProcess, model: str) -> set[tuple[int, int]]:
    """Infer on fresh connections, then read (successes, ns) on fresh connections until two
    workers have answered: each worker counts only its own."""
    data = np.array([[1.5, 2.5, 3.5, 4.5]], dtype=np.float32)
    body = {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 4], "data": data.ravel().tolist()}]}  # fmt: skip
    seen: set[tuple[int, int]] = set()
    for _ in range(200):  # one worker 200 times in a row: 2**-199
        with httpx.Client(base_url=server.http_url, timeout=30) as client:
            answer = client.post(f"/v2/models/{model}/infer", json=body)
            assert answer.status_code == 200, answer.text
            assert answer.json()["outputs"][0]["data"] == data.ravel().tolist()
        with httpx.Client(base_url=server.http_url, timeout=30) as client:
            stats = client.get(f"/v2/models/{model}/stats").json()
        success = stats["model_stats"][0]["inference_stats"]["success"]
        seen.add((int(success["count"]), int(success["ns"])))
        if len(seen) == 2:
            break
    return seen


def test_api_load_and_unload_reach_every_worker(server: ServerProcess) -> None:
    assert _all_fresh_connections_see(server, MODEL, ready=False)

    with httpx.Client(base_url=server.http_url, timeout=60) as client:
        answer = client.post(f"/v2/repository/models/{MODEL}/load")
        assert answer.status_code == 200, answer.text
    _wait_for(lambda: _all_fresh_connections_see(server, MODEL, ready=True), "load everywhere", server)  # fmt: skip
    assert len(_worker_views(server, MODEL)) == 2  # both workers served it

    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        client.unload_model(MODEL)
    _wait_for(lambda: _all_fresh_connections_see(server, MODEL, ready=False), "unload everywhere", server)  # fmt: skip
    assert _all_fresh_connections_see(server, LOADED, ready=True)  # the other model is untouched
    assert "from another worker's request" not in server.log()  # no worker failed to follow


def test_a_restarted_worker_starts_from_the_api_changes(server: ServerProcess) -> None:
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        client.load_model(MODEL)
    with httpx.Client(base_url=server.http_url, timeout=60) as client:
        assert client.post(f"/v2/repository/models/{LOADED}/unload").status_code == 200
    _wait_for(lambda: _all_fresh_connections_see(server, MODEL, ready=True), "load everywhere", server)  # fmt: skip
    _wait_for(lambda: _all_fresh_connections_see(server, LOADED, ready=False), "unload everywhere", server)  # fmt: skip

    pids = {int(i): int(p) for i, p in _WORKER_STARTED.findall(server.log())}
    os.kill(pids[1], signal.SIGKILL)
    _wait_for(lambda: "worker 1 (pid" in server.log() and "restarted and serving" in server.log(), "a restart", server)  # fmt: skip
    # the restarted worker serves what the API asked for, not what --load-model named
    assert _all_fresh_connections_see(server, MODEL, ready=True)
    assert _all_fresh_connections_see(server, LOADED, ready=False)
    assert len(_worker_views(server, MODEL)) == 2
