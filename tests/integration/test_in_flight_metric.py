"""``sluice_requests_in_flight{model}``: requests a model has taken and not yet answered,
what an autoscaler reads (docs/kubernetes.md), in one process and under ``--workers 2``."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from serving.examples import write_repository
from tests.integration.protocol_client import PROTOCOLS
from tests.integration.server_process import ServerProcess

pytestmark = pytest.mark.integration

MODEL = "held"
_ROWS = 32  # max_batch_size: a batch runs when it is full, else after the queue delay
_PATIENCE_SECS = 90  # a safety net for the server to act, not a timing assertion
_OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]
_WORKER_STARTED = re.compile(r"worker (\d+) started \(pid (\d+)\)")
# Requests wait in the batcher for company, even a lone one, until the batch is full or
# the delay runs out: they stay in flight until the test fills the batch (or, under
# --workers, until the delay, which a test cannot fill on a worker of its choosing).
_CONFIG = """\
name: "held"
max_batch_size: 32
input [ { name: "INPUT0", data_type: TYPE_FP32, dims: [ 64 ] } ]
output [ { name: "OUTPUT0", data_type: TYPE_FP32, dims: [ 10 ] } ]
dynamic_batching { max_queue_delay_microseconds: %d }
parameters [ { key: "sluice.run_lone_at_once" value: { string_value: "false" } } ]
"""


def _repository(root: Path, delay_secs: int) -> Path:
    repo = root / "repo"
    write_repository(repo, ["mlp"])
    shutil.copytree(repo / "mlp", repo / MODEL)
    shutil.rmtree(repo / "mlp")
    (repo / MODEL / "config.pbtxt").write_text(_CONFIG % (delay_secs * 1_000_000))
    return repo


def _in_flight(server: ServerProcess) -> float | None:
    """``sluice_requests_in_flight{model="held"}`` on the metrics port, None when absent."""
    text = httpx.get(server.metrics_url, timeout=30).text
    found = re.findall(rf'^sluice_requests_in_flight{{model="{MODEL}"}} (\S+)$', text, re.M)
    return float(found[0]) if found else None


def _wait_for(condition: Callable[[], bool], what: str, server: ServerProcess) -> None:
    deadline = time.monotonic() + _PATIENCE_SECS
    while not condition():
        if time.monotonic() > deadline:
            text = httpx.get(server.metrics_url, timeout=30).text
            flight = [line for line in text.splitlines() if "in_flight" in line]
            raise AssertionError(
                f"no {what} within {_PATIENCE_SECS}s; {flight}\n{server.log()[-4000:]}"
            )
        time.sleep(0.05)


def _infer(protocol: str, server: ServerProcess, rows: int) -> np.ndarray:
    """One request of ``rows`` rows on a new connection of its own."""
    data = np.ones((rows, 64), np.float32)
    if protocol == "grpc":
        client = grpcclient.InferenceServerClient(server.grpc_url, channel_args=_OWN_CONNECTION)
        with contextlib.closing(client):
            inp = grpcclient.InferInput("INPUT0", list(data.shape), "FP32")
            inp.set_data_from_numpy(data)
            out = client.infer(MODEL, [inp], client_timeout=120).as_numpy("OUTPUT0")
            assert out is not None
            return out
    body = {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": list(data.shape),
                        "data": data.ravel().tolist()}]}  # fmt: skip
    with httpx.Client(base_url=server.http_url, timeout=120) as client:
        response = client.post(f"/v2/models/{MODEL}/infer", json=body)
    assert response.status_code == 200, response.text
    return np.array(response.json()["outputs"][0]["shape"])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("in-flight")
    proc = ServerProcess(_repository(root, 600), log_dir=root)
    yield proc
    assert proc.stop() == 0


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_requests_held_in_a_model_show_in_flight_until_answered(
    server: ServerProcess, protocol: str
) -> None:
    held = 5
    assert _in_flight(server) in (None, 0.0)  # no request yet (or the other protocol's, done)
    with ThreadPoolExecutor(held + 1) as pool:
        waiting = [pool.submit(_infer, protocol, server, 1) for _ in range(held)]
        _wait_for(lambda: _in_flight(server) == held, f"{held} requests in flight", server)
        assert not any(f.done() for f in waiting)  # still held: the gauge counted the queue
        # A request that fills the batch runs it: every request is answered.
        pool.submit(_infer, protocol, server, _ROWS - held).result(timeout=_PATIENCE_SECS)
        for future in waiting:
            future.result(timeout=_PATIENCE_SECS)
    assert _in_flight(server) == 0


def _workers(server: ServerProcess) -> dict[int, int]:
    """Worker index -> pid of its latest process, from the supervisor's log."""
    return {int(i): int(pid) for i, pid in _WORKER_STARTED.findall(server.log())}


def _failed(futures: list[Future[np.ndarray]]) -> int:
    return sum(1 for f in futures if f.done() and f.exception() is not None)


def test_under_two_workers_the_gauge_sums_the_live_workers(tmp_path: Path) -> None:
    sent = 12  # on new connections each: all on one worker has odds of 2 ** -11
    # Long enough for the test to see them all held, short enough to wait out.
    proc = ServerProcess(_repository(tmp_path, 30), "--workers", "2", log_dir=tmp_path)
    try:
        _wait_for(lambda: "server ready: 2 workers serving" in proc.log(), "ready workers", proc)
        assert _in_flight(proc) == 0  # each worker's series exists from the load on
        with ThreadPoolExecutor(sent) as pool:
            futures = [pool.submit(_infer, "http", proc, 1) for _ in range(sent)]
            _wait_for(lambda: _in_flight(proc) == sent, f"{sent} requests in flight", proc)
            victim = _workers(proc)[1]
            os.kill(victim, signal.SIGKILL)
            # The killed worker's requests fail; the gauge drops its share, not more.
            _wait_for(
                lambda: _failed(futures) > 0 and _in_flight(proc) == sent - _failed(futures),
                "the killed worker's requests gone from the gauge",
                proc,
            )
            assert not all(f.done() for f in futures)  # the other worker still holds its share
            survivors = sent - _failed(futures)
            # The queue delay runs out: the other worker answers all it held.
            _wait_for(lambda: all(f.done() for f in futures), "answers", proc)
            assert sent - _failed(futures) == survivors
        _wait_for(lambda: _in_flight(proc) == 0, "nothing in flight", proc)
        assert f"worker 1 (pid {victim}) was killed by SIGKILL" in proc.log()
    finally:
        proc.stop()
