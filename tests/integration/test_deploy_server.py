"""What a container and a Kubernetes pod need of the real server and CLI (issue 15): settings
from SLUICE_ variables alone, ``sluice pull REF DEST``, gRPC connections that end after an
age, the drain timeout as gRPC's grace on SIGTERM, and ``sluice health`` with TLS on."""

from __future__ import annotations

import os
import queue
import signal
import ssl
import subprocess
import sys
import threading
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from registry_client import LocalRegistry
from serving.examples import build_simple, write_repository
from serving.grpc import grpc_service_pb2 as pb
from serving.grpc import grpc_service_pb2_grpc as pb_grpc
from tests.integration.server_process import ServerProcess
from tests.tls_certs import make_pki

pytestmark = pytest.mark.integration

A = np.arange(16, dtype=np.int32).reshape(1, 16)
B = np.ones((1, 16), dtype=np.int32)


def _sluice(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "serving", *args],
        capture_output=True, text=True, timeout=120,
        env=None if env is None else {**os.environ, **env},
    )  # fmt: skip


@pytest.fixture
def registry(tmp_path: Path) -> LocalRegistry:
    model = tmp_path / "files" / "model.onnx"
    model.parent.mkdir()
    model.write_bytes(build_simple())
    registry = LocalRegistry(tmp_path / "registry")
    registry.register("simple", [model], aliases=["champion"])
    return registry


def _infer_simple(grpc_url: str) -> np.ndarray:
    client = grpcclient.InferenceServerClient(grpc_url)
    inputs = [grpcclient.InferInput("INPUT0", [1, 16], "INT32"),
              grpcclient.InferInput("INPUT1", [1, 16], "INT32")]  # fmt: skip
    inputs[0].set_data_from_numpy(A)
    inputs[1].set_data_from_numpy(B)
    out = client.infer("simple", inputs).as_numpy("OUTPUT0")
    client.close()
    return out


def test_serve_with_no_argument_from_variables_alone(
    tmp_path: Path, registry: LocalRegistry
) -> None:
    """As the image runs it: the repository and the followed reference from variables."""
    repo = tmp_path / "models"
    repo.mkdir()
    env = {
        "SLUICE_MODEL_REPOSITORY": str(repo),
        "SLUICE_MODEL": "models:/simple@champion",
        "SLUICE_REGISTRY": str(registry.root),
    }
    server = ServerProcess(None, log_dir=tmp_path, env=env)
    try:
        assert httpx.get(f"{server.http_url}/v2/models/simple").json()["versions"] == ["1"]
        np.testing.assert_array_equal(_infer_simple(server.grpc_url), A + B)
    finally:
        assert server.stop() == 0
    assert (repo / "simple" / "1" / "model.onnx").read_bytes() == build_simple()


def test_pull_takes_the_repository_as_a_second_argument(
    tmp_path: Path, registry: LocalRegistry
) -> None:
    """KServe's storage initializer runs the container with two arguments: REF, /mnt/models."""
    dest = tmp_path / "mnt" / "models"
    done = _sluice("pull", "models:/simple@champion", str(dest),
                   env={"SLUICE_REGISTRY": str(registry.root)})  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (dest / "simple" / "1" / "model.onnx").read_bytes() == build_simple()


@pytest.mark.parametrize("where", [[], ["DEST", "--model-repository", "DIR"]])
def test_pull_needs_the_repository_once(
    tmp_path: Path, registry: LocalRegistry, where: list[str]
) -> None:
    args = [str(tmp_path / w) if w.isupper() else w for w in where]
    done = _sluice("pull", "models:/simple@champion", *args, "--registry", str(registry.root))
    assert done.returncode == 2
    assert done.stderr == (
        "sluice: error: sluice pull: give the model repository once: "
        "DEST or --model-repository DIR\n"
    )


def test_grpc_connections_end_after_their_age_and_clients_reconnect(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write_repository(repo, ["simple"])
    server = ServerProcess(repo, "--grpc-max-connection-age-secs", "1",
                           "--grpc-max-connection-age-grace-secs", "1", log_dir=tmp_path)  # fmt: skip
    states: queue.Queue[grpc.ChannelConnectivity] = queue.Queue()
    channel = grpc.insecure_channel(server.grpc_url)
    try:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        assert stub.ServerReady(pb.ServerReadyRequest(), timeout=10).ready
        channel.subscribe(states.put, try_to_connect=False)
        # GOAWAY after about a second: the channel drops its connection (READY -> IDLE)
        seen = []
        while grpc.ChannelConnectivity.IDLE not in seen:
            seen.append(states.get(timeout=15))
        assert grpc.ChannelConnectivity.READY in seen[: seen.index(grpc.ChannelConnectivity.IDLE)]
        # the next call opens a new connection and succeeds
        assert stub.ServerReady(pb.ServerReadyRequest(), timeout=10).ready
        np.testing.assert_array_equal(_infer_simple(server.grpc_url), A + B)
    finally:
        channel.close()
        assert server.stop() == 0


SLOW = """
import pathlib
import time

import numpy as np


class Slow:
    def predict(self, inputs):
        pathlib.Path({started!r}).write_text("running")
        time.sleep(7)
        return {{"Y": (inputs["X"] * 2).astype(np.float32)}}
"""

SLOW_CONFIG = """
name: "slow"
backend: "python"
input [{ name: "X" data_type: TYPE_FP32 dims: [ 2 ] }]
output [{ name: "Y" data_type: TYPE_FP32 dims: [ 2 ] }]
"""


def test_sigterm_gives_grpc_calls_the_drain_timeout(tmp_path: Path) -> None:
    """A call still running 7 s after SIGTERM (past the 5 s gRPC grace there used to be)
    is answered, and the server exits 0."""
    started = tmp_path / "started"
    model = tmp_path / "repo" / "slow"
    (model / "1").mkdir(parents=True)
    (model / "1" / "model.py").write_text(SLOW.format(started=str(started)))
    (model / "config.pbtxt").write_text(SLOW_CONFIG)
    server = ServerProcess(tmp_path / "repo", "--allow-python-models",
                           "--drain-timeout-secs", "20", log_dir=tmp_path)  # fmt: skip
    answers: list[object] = []

    def call() -> None:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        x = grpcclient.InferInput("X", [2], "FP32")
        x.set_data_from_numpy(np.array([1.5, 2.0], dtype=np.float32))
        try:
            answers.append(client.infer("slow", [x], client_timeout=60).as_numpy("Y"))
        except Exception as exc:  # the test reports what the client saw
            answers.append(exc)
        finally:
            client.close()

    caller = threading.Thread(target=call)
    caller.start()
    try:
        # the call is inside the model once it wrote its marker; then stop the server
        deadline = 30.0
        while not started.exists() and deadline > 0 and caller.is_alive():
            caller.join(0.05)
            deadline -= 0.05
        assert started.exists(), server.log()
        server.proc.send_signal(signal.SIGTERM)
        caller.join(60)
        assert server.proc.wait(timeout=60) == 0, server.log()
    finally:
        server.stop()
        caller.join(60)
    assert len(answers) == 1 and isinstance(answers[0], np.ndarray), answers
    np.testing.assert_array_equal(answers[0], np.array([3.0, 4.0], dtype=np.float32))


def test_sluice_health_against_a_tls_server(tmp_path: Path) -> None:
    """The image's HEALTHCHECK with TLS on: the server's own variables are all it reads."""
    pki = make_pki(tmp_path / "pki")
    repo = tmp_path / "repo"
    write_repository(repo, ["simple"])
    context = ssl.create_default_context(cafile=str(pki.ca))
    server = ServerProcess(repo, "--tls-cert", str(pki.server_cert), "--tls-key",
                           str(pki.server_key), log_dir=tmp_path, ssl_context=context)  # fmt: skip
    try:
        env = {"SLUICE_HTTP_PORT": str(server.http_port), "SLUICE_TLS_CERT": str(pki.server_cert)}
        done = _sluice("health", env=env)
        assert (done.returncode, done.stdout) == (
            0, f"https://127.0.0.1:{server.http_port}/v2/health/ready: 200\n"
        ), done.stderr  # fmt: skip
        plain = _sluice("health", env={"SLUICE_HTTP_PORT": str(server.http_port)})
        assert plain.returncode == 1  # what the plain-HTTP HEALTHCHECK met
    finally:
        assert server.stop() == 0
