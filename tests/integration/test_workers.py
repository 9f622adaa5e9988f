"""``sluice serve --workers 2``: shared ports, merged metrics, draining, restarts (docs/workers.md)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from serving.examples import write_repository
from tests.integration.protocol_client import PROTOCOLS
from tests.integration.server_process import ServerProcess

pytestmark = pytest.mark.integration

# gRPC channels in one process share their connections unless told not to.
_OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]
# Each protocol counts on a model of its own, so the module's shared server keeps them apart.
_MODEL = {"http": "identity_int32", "grpc": "identity_int64"}
_DTYPE = {"identity_int32": np.int32, "identity_int64": np.int64, "held": np.float32}
_WORKER_STARTED = re.compile(r"worker (\d+) started \(pid (\d+)\)")
# Waits for the server to do something; a safety net, not a timing assertion.
_PATIENCE_SECS = 90

_HELD_CONFIG = """\
name: "held"
max_batch_size: 32
input [ { name: "INPUT0", data_type: TYPE_FP32, dims: [ 64 ] } ]
output [ { name: "OUTPUT0", data_type: TYPE_FP32, dims: [ 10 ] } ]
dynamic_batching { max_queue_delay_microseconds: 60000000 }
parameters [ { key: "sluice.run_lone_at_once" value: { string_value: "false" } } ]
"""


@pytest.fixture(scope="module")
def workers_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("workers-repository")
    write_repository(repo, ["mlp", "identity_int32", "identity_int64"])
    # Every request waits 60 s in its batcher for company, even a lone one: they are all still
    # queued when SIGTERM comes, and the drain runs them at once (its timeout is 30 s).
    shutil.copytree(repo / "mlp", repo / "held")
    (repo / "held" / "config.pbtxt").write_text(_HELD_CONFIG)
    return repo


def _start(repository: Path, log_dir: Path) -> ServerProcess:
    """``--workers 2``, once both are ready: the health routes answer for the one worker
    a connection lands on, the supervisor's log for all of them."""
    proc = ServerProcess(repository, "--workers", "2", log_dir=log_dir)
    _wait_for(lambda: "server ready: 2 workers serving" in proc.log(), "ready workers", proc)
    return proc


@pytest.fixture(scope="module")
def workers_server(
    workers_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    proc = _start(workers_repository, tmp_path_factory.mktemp("logs"))
    yield proc
    assert proc.stop() == 0


@pytest.fixture
def fresh_server(workers_repository: Path, tmp_path: Path) -> Iterator[ServerProcess]:
    """A server of its own, for tests that signal it."""
    proc = _start(workers_repository, tmp_path)
    yield proc
    proc.stop()


def _data(model: str) -> np.ndarray:
    shape = (1, 64) if model == "held" else (1, 4)
    return np.arange(np.prod(shape)).reshape(shape).astype(_DTYPE[model])


def _grpc_client(server: ServerProcess) -> grpcclient.InferenceServerClient:
    """A client on a new connection of its own, so the kernel picks a worker for it."""
    return grpcclient.InferenceServerClient(server.grpc_url, channel_args=_OWN_CONNECTION)


def _connect(protocol: str, server: ServerProcess) -> Any:
    """A client on a new connection of its own, made now; the kernel picks its worker."""
    if protocol == "grpc":
        client = _grpc_client(server)
        assert client.is_server_live()
        return client
    client = httpx.Client(base_url=server.http_url, timeout=120)
    assert client.get("/v2/health/live").status_code == 200
    return client


def _infer_on(client: Any, model: str) -> None:
    data = _data(model)
    datatype = {np.float32: "FP32", np.int32: "INT32", np.int64: "INT64"}[_DTYPE[model]]
    if isinstance(client, grpcclient.InferenceServerClient):
        inp = grpcclient.InferInput("INPUT0", list(data.shape), datatype)
        inp.set_data_from_numpy(data)
        out = client.infer(model, [inp]).as_numpy("OUTPUT0")
    else:
        body = {"inputs": [{"name": "INPUT0", "datatype": datatype, "shape": list(data.shape),
                            "data": data.ravel().tolist()}]}  # fmt: skip
        response = client.post(f"/v2/models/{model}/infer", json=body)
        assert response.status_code == 200, response.text
        out = np.array(response.json()["outputs"][0]["data"])
    if model != "held":
        np.testing.assert_array_equal(out.ravel(), data.ravel())


def _infer(protocol: str, server: ServerProcess, model: str) -> None:
    """One inference on a new connection of its own."""
    with contextlib.closing(_connect(protocol, server)) as client:
        _infer_on(client, model)


def _worker_view(protocol: str, server: ServerProcess, model: str) -> tuple[int, int]:
    """(successes, their total ns) for ``model`` as the worker this new connection lands on
    counts them; the nanoseconds tell two workers apart even when their counts match."""
    if protocol == "grpc":
        with _grpc_client(server) as client:
            success = client.get_inference_statistics(model).model_stats[0].inference_stats.success
            return int(success.count), int(success.ns)
    stats = httpx.get(f"{server.http_url}/v2/models/{model}/stats", timeout=30).json()
    success = stats["model_stats"][0]["inference_stats"]["success"]
    return int(success["count"]), int(success["ns"])


def _both_workers(protocol: str, server: ServerProcess, model: str) -> set[tuple[int, int]]:
    """Ask on new connections until two workers have answered."""
    seen: set[tuple[int, int]] = set()
    for _ in range(200):  # one worker 200 times in a row: 2**-199
        seen.add(_worker_view(protocol, server, model))
        if len(seen) == 2:
            break
    return seen


def _metric(server: ServerProcess, name: str, model: str) -> float:
    """The sum of ``name``'s samples for ``model`` on the supervisor's metrics port."""
    text = httpx.get(server.metrics_url, timeout=30).text
    pattern = re.compile(rf'^{name}{{[^}}]*model="{model}"[^}}]*}} (\S+)$', re.M)
    return sum(float(v) for v in pattern.findall(text))


def _workers(server: ServerProcess) -> dict[int, int]:
    """Worker index -> pid of its latest process, from the supervisor's log."""
    return {int(i): int(pid) for i, pid in _WORKER_STARTED.findall(server.log())}


def _wait_for(condition: object, what: str, server: ServerProcess) -> None:
    deadline = time.monotonic() + _PATIENCE_SECS
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {_PATIENCE_SECS}s:\n{server.log()[-6000:]}")
        time.sleep(0.05)


def test_the_ports_are_named_once(workers_server: ServerProcess) -> None:
    log = workers_server.log()
    for kind in ("HTTP", "gRPC", "metrics"):
        assert len(re.findall(rf"{kind} service listening on", log)) == 1
    assert len(_workers(workers_server)) == 2
    assert "server ready: 2 workers serving" in log


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_new_connections_land_on_both_workers_and_metrics_add_up(
    workers_server: ServerProcess, protocol: str
) -> None:
    model, sent = _MODEL[protocol], 24
    for _ in range(sent):
        _infer(protocol, workers_server, model)
    seen = _both_workers(protocol, workers_server, model)
    # Statistics are each worker's own; both served, and together they served all.
    assert len(seen) == 2, seen
    assert all(count > 0 for count, _ns in seen), seen
    assert sum(count for count, _ns in seen) == sent
    # Metrics are the sum over the workers, under the names and labels of one process.
    assert _metric(workers_server, "sluice_inference_count_total", model) == sent
    assert _metric(workers_server, "sluice_inference_requests_total", model) == sent
    assert _metric(workers_server, "sluice_model_ready", model) == 1


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_sigterm_drains_requests_in_flight_and_exits_0(
    fresh_server: ServerProcess, protocol: str
) -> None:
    clients = 16
    connections = [_connect(protocol, fresh_server) for _ in range(clients)]

    def call(client: Any) -> None:
        with contextlib.closing(client):
            _infer_on(client, "held")

    with ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(call, client) for client in connections]

        def all_queued() -> bool:
            waiting = _metric(fresh_server, "sluice_queue_depth", "held")
            done = _metric(fresh_server, "sluice_inference_requests_total", "held")
            return waiting == clients and done == 0

        # Every request waits in a worker's batcher ...
        _wait_for(all_queued, "requests in the batchers", fresh_server)
        # ... when the supervisor is told to stop.
        fresh_server.proc.send_signal(signal.SIGTERM)
        for future in futures:
            future.result()  # none fails
    assert fresh_server.proc.wait(timeout=_PATIENCE_SECS) == 0
    assert "all workers exited" in fresh_server.log()


def test_a_killed_worker_is_restarted_and_the_server_keeps_serving(
    fresh_server: ServerProcess,
) -> None:
    for _ in range(10):
        _infer("http", fresh_server, "identity_int32")
    victim = _workers(fresh_server)[1]
    os.kill(victim, signal.SIGKILL)
    restarted = re.compile(r"worker 1 \(pid (\d+)\) restarted and serving")
    _wait_for(lambda: restarted.search(fresh_server.log()), "restarted worker", fresh_server)
    assert f"worker 1 (pid {victim}) was killed by SIGKILL; restarting it" in fresh_server.log()
    assert _workers(fresh_server)[1] != victim
    for protocol in PROTOCOLS:
        for _ in range(10):
            _infer(protocol, fresh_server, "identity_int32")
    # The new process takes connections too, and the dead one's counts stay in the totals.
    assert len(_both_workers("http", fresh_server, "identity_int32")) == 2
    assert _metric(fresh_server, "sluice_inference_count_total", "identity_int32") == 30
    assert fresh_server.stop() == 0


def _serve(repository: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "serving", "serve", "--model-repository", str(repository),
           "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0", *args]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=_PATIENCE_SECS)


def test_a_port_in_use_fails_loudly_with_workers(
    workers_repository: Path, workers_server: ServerProcess
) -> None:
    """Another server's port is a clash, though it too shares its port with SO_REUSEPORT."""
    for flag, port in (("--http-port", workers_server.http_port),
                       ("--grpc-port", workers_server.grpc_port)):  # fmt: skip
        done = _serve(workers_repository, "--workers", "2", flag, str(port))
        assert done.returncode != 0
        assert f"sluice: error: cannot listen on 127.0.0.1:{port}" in done.stderr
