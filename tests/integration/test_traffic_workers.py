"""A traffic split under ``--workers 2``: set on one worker, held by both, sticky in both."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from serving.examples import write_repository
from tests.integration.server_process import ServerProcess

pytestmark = pytest.mark.integration

MODEL = "identity_fp32"
_PATIENCE_SECS = 60  # a safety net for the relay, not a timing assertion
_FRESH = 20  # fresh connections that must all agree (both workers, all but surely)
_BODY = {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 2], "data": [1.5, 2.5]}]}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    write_repository(tmp_path / "repo", [MODEL])
    (tmp_path / "repo" / MODEL / "config.pbtxt").write_text("version_policy: { all: {} }\n")
    for version in (2, 3):
        (tmp_path / "repo" / MODEL / str(version)).mkdir()
        shutil.copy(tmp_path / "repo" / MODEL / "1" / "model.onnx", tmp_path / "repo" / MODEL / str(version))  # fmt: skip
    proc = ServerProcess(tmp_path / "repo", "--workers", "2", log_dir=tmp_path)
    yield proc
    proc.stop()


def _wait_for(condition: Callable[[], bool], what: str, server: ServerProcess) -> None:
    deadline = time.monotonic() + _PATIENCE_SECS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {_PATIENCE_SECS}s:\n{server.log()[-6000:]}")
        time.sleep(0.05)


def _fresh(server: ServerProcess, method: str, path: str, **kwargs: object) -> httpx.Response:
    with httpx.Client(base_url=server.http_url, timeout=30) as client:  # a new connection
        return client.request(method, path, **kwargs)  # type: ignore[arg-type]


def _split_everywhere(server: ServerProcess) -> bool:
    return all(
        _fresh(server, "GET", f"/v2/models/{MODEL}/traffic").json()["source"] == "api"
        for _ in range(_FRESH)
    )


def test_a_split_set_on_one_worker_holds_in_both_and_keys_stick(server: ServerProcess) -> None:
    split = {"traffic": {"1": 50, "2": 50}, "sticky": "header:x-user-id"}
    answer = _fresh(server, "POST", f"/v2/models/{MODEL}/traffic", json=split)
    assert answer.status_code == 200, answer.text
    _wait_for(lambda: _split_everywhere(server), "split in every worker", server)
    served: dict[str, set[str]] = {}
    for i in range(40):
        user = f"user-{i}"
        for _ in range(3):  # each on a fresh connection: either worker
            reply = _fresh(server, "POST", f"/v2/models/{MODEL}/infer", json=_BODY,
                           headers={"x-user-id": user})  # fmt: skip
            assert reply.status_code == 200, reply.text
            served.setdefault(user, set()).add(reply.json()["model_version"])
    assert all(len(versions) == 1 for versions in served.values()), served
    assert set().union(*served.values()) == {"1", "2"}  # never 3, the highest
    # each worker counts only its own requests: two views, so both answered
    views: set[str] = set()
    for _ in range(200):  # one worker 200 times in a row: 2**-199
        views.add(repr(_fresh(server, "GET", f"/v2/models/{MODEL}/traffic").json()["arms"]))
        if len(views) == 2:
            break
    assert len(views) == 2
