"""A canary rollout under ``--workers 2``: one worker runs it, both serve its splits."""

from __future__ import annotations

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
