"""The container image, built for real by deploy/build-image.sh and run with podman: health and
its HEALTHCHECK, inference over HTTP and gRPC with tritonclient, a non-root process, native
twins in the image, and a SIGTERM drain (a request in flight completes, exit code 0 within the
grace period). The build takes a few minutes, once per session; containers, images and the
podman storage are removed afterwards (build-image.sh --clean)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from serving.examples import mlp_reference, write_repository

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "deploy" / "build-image.sh"
TAG = "localhost/sluice:container-test"
UID = 10001  # USER in deploy/Containerfile
GRACE_SECS = 45  # above the 30 s drain, as terminationGracePeriodSeconds in deploy/kubernetes
# Waits for the container to do something; a safety net, not a timing assertion.
_PATIENCE_SECS = 90
_LISTEN = re.compile(r"(HTTP|gRPC|metrics) service listening on ([^\s:]+):(\d+)")

# Every request waits 60 s in the batcher for company, even a lone one, so it is still queued
# when SIGTERM comes; the drain runs it at once (as in tests/integration/test_workers.py).
_HELD_CONFIG = """\
name: "held"
max_batch_size: 32
input [ { name: "INPUT0", data_type: TYPE_FP32, dims: [ 64 ] } ]
output [ { name: "OUTPUT0", data_type: TYPE_FP32, dims: [ 10 ] } ]
dynamic_batching { max_queue_delay_microseconds: 60000000 }
parameters [ { key: "sluice.run_lone_at_once" value: { string_value: "false" } } ]
"""


def _skip_reason() -> str | None:
    if os.environ.get("SLUICE_NO_EXTENSIONS") == "1":
        return (
            "the image is built and run once per CI run, in the native leg: it always holds "
            "the native twins, whatever SLUICE_NO_EXTENSIONS selects on the host"
        )
    missing = [tool for tool in ("podman", "runc", "debootstrap") if shutil.which(tool) is None]
    if os.geteuid() != 0:
        return f"deploy/build-image.sh runs podman as root; running as uid {os.geteuid()}"
    if missing and shutil.which("apt-get") is None:
        return f"{', '.join(missing)} not installed and no apt-get to install them"
    return None


pytestmark = [
    pytest.mark.integration,
    pytest.mark.container,
    pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or ""),
]


class Image:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.podman = str(work / "podman")  # written by build-image.sh: its storage and config

    def run(self, *args: str, check: bool = True, timeout: float = 120) -> str:
        done = subprocess.run([self.podman, *args], capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)}: {done.returncode}\n{done.stderr}")
        return done.stdout

    def inspect(self, template: str) -> Any:
        return json.loads(
            self.run("image", "inspect", "--format", "{{json " + template + "}}", TAG)
        )


@pytest.fixture(scope="module")
def image() -> Iterator[Image]:
    # A short path: conmon's attach sockets live under it and must fit in 108 bytes.
    work = Path(tempfile.mkdtemp(prefix="sluice-img-", dir="/tmp"))
    try:
        started = time.monotonic()
        build = subprocess.run(
            ["bash", str(BUILD), "--tag", TAG, str(work)],
            capture_output=True, text=True, env=os.environ | {"PYTHON": sys.executable},
        )  # fmt: skip
        if build.returncode != 0:
            pytest.fail(f"build-image.sh exited {build.returncode}:\n{build.stdout[-4000:]}\n{build.stderr[-4000:]}")  # fmt: skip
        image = Image(work)
        size = int(image.inspect(".Size"))
        print(f"\nimage {TAG}: {size / 1e6:.0f} MB uncompressed, built in {time.monotonic() - started:.0f} s")  # fmt: skip
        yield image
    finally:
        subprocess.run(["bash", str(BUILD), "--clean", str(work)], check=True, timeout=300)
    assert not work.exists()


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("container-repository")
    write_repository(repo, ["simple", "mlp"])
    shutil.copytree(repo / "mlp", repo / "held")
    (repo / "held" / "config.pbtxt").write_text(_HELD_CONFIG)
    # The container's user is not the owner: the repository is mounted read-only, readable to all.
    for path in [repo, *repo.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return repo


def _free_ports(count: int) -> list[int]:
    with ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


def _wait_for(condition: Callable[[], Any], what: str, container: Container) -> Any:
    deadline = time.monotonic() + _PATIENCE_SECS
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"no {what} within {_PATIENCE_SECS} s:\n{container.logs()}")


class Container:
    """``podman run`` of the image on the host's network (no bridge, no firewall rules), with
    the settings in SLUICE_* variables and the repository mounted read-only at /models."""

    def __init__(self, image: Image, repository: Path, name: str) -> None:
        self.image = image
        self.name = name
        for _ in range(3):  # a port taken between picking and binding: pick again
            self.http_port, self.grpc_port, self.metrics_port = _free_ports(3)
            image.run(
                "run", "--detach", "--name", name, "--network", "host", "--read-only",
                "--stop-timeout", str(GRACE_SECS),
                "--volume", f"{repository}:/models:ro",
                "--env", "SLUICE_HOST=127.0.0.1",
                "--env", f"SLUICE_HTTP_PORT={self.http_port}",
                "--env", f"SLUICE_GRPC_PORT={self.grpc_port}",
                "--env", f"SLUICE_METRICS_PORT={self.metrics_port}",
                TAG,
            )  # fmt: skip
            _wait_for(lambda: self.listening() or not self.running(), "listening sockets", self)
            if self.listening():
                break
            if "cannot listen" not in self.logs():
                raise AssertionError(f"container exited:\n{self.logs()}")
            image.run("rm", "--force", name)
        else:
            raise AssertionError(f"no free ports in three tries:\n{self.logs()}")
        self.http_url = f"http://127.0.0.1:{self.http_port}"
        self.grpc_url = f"127.0.0.1:{self.grpc_port}"
        _wait_for(self.ready, "readiness", self)

    def logs(self) -> str:
        done = subprocess.run(
            [self.image.podman, "logs", self.name], capture_output=True, text=True, timeout=60
        )
        return done.stdout + done.stderr

    def running(self) -> bool:
        return self.state("{{.State.Running}}") == "true"

    def state(self, template: str) -> str:
        return self.image.run("inspect", "--format", template, self.name).strip()

    def listening(self) -> bool:
        ports = {kind: int(port) for kind, _host, port in _LISTEN.findall(self.logs())}
        expected = {"HTTP": self.http_port, "gRPC": self.grpc_port, "metrics": self.metrics_port}
        return ports == expected

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.http_url}/v2/health/ready", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    def metric(self, name: str, model: str) -> float:
        text = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10).text
        found = re.search(rf'^{name}{{model="{model}",version="1"}} (\S+)$', text, re.M)
        return float(found.group(1)) if found else 0.0

    def remove(self) -> None:
        self.image.run("rm", "--force", "--time", "0", self.name, check=False)


@pytest.fixture(scope="module")
def container(image: Image, repository: Path) -> Iterator[Container]:
    running = Container(image, repository, "sluice-smoke")
    yield running
    running.remove()


@pytest.fixture
def fresh_container(image: Image, repository: Path) -> Iterator[Container]:
    """A container of its own, for tests that stop it."""
    running = Container(image, repository, "sluice-drain")
    yield running
    running.remove()


def _simple_http(url: str) -> dict[str, np.ndarray]:
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    b = np.full((1, 16), 3, dtype=np.int32)
    with httpclient.InferenceServerClient(url.removeprefix("http://")) as client:
        inputs = [httpclient.InferInput(n, [1, 16], "INT32") for n in ("INPUT0", "INPUT1")]
        inputs[0].set_data_from_numpy(a)
        inputs[1].set_data_from_numpy(b)
        result = client.infer("simple", inputs)
    return {"sum": result.as_numpy("OUTPUT0"), "diff": result.as_numpy("OUTPUT1"), "a": a, "b": b}


def test_health_routes_and_the_image_healthcheck_say_ready(
    image: Image, container: Container
) -> None:
    for route in ("/v2/health/live", "/v2/health/ready", "/v2/models/simple/ready"):
        assert httpx.get(container.http_url + route, timeout=10).status_code == 200
    # the image's HEALTHCHECK, run inside the container as docker and podman run it
    image.run("healthcheck", "run", container.name)


def test_infer_over_http_with_tritonclient(container: Container) -> None:
    out = _simple_http(container.http_url)
    np.testing.assert_array_equal(out["sum"], out["a"] + out["b"])
    np.testing.assert_array_equal(out["diff"], out["a"] - out["b"])


def test_infer_over_grpc_with_tritonclient(container: Container) -> None:
    x = np.random.default_rng(7).standard_normal((3, 64)).astype(np.float32)
    with grpcclient.InferenceServerClient(container.grpc_url) as client:
        assert client.is_server_ready()
        inp = grpcclient.InferInput("INPUT0", [3, 64], "FP32")
        inp.set_data_from_numpy(x)
        result = client.infer("mlp", [inp])
    np.testing.assert_allclose(result.as_numpy("OUTPUT0"), mlp_reference(x), rtol=1e-4, atol=1e-5)


def test_the_server_runs_as_a_non_root_user(image: Image, container: Container) -> None:
    assert image.inspect(".Config.User") == f"{UID}:{UID}"
    status = image.run("exec", container.name, "cat", "/proc/1/status")
    uids = re.search(r"^Uid:\s+(\d+)\s+(\d+)", status, re.M)
    assert uids is not None and {int(uids.group(1)), int(uids.group(2))} == {UID}
    assert "sluice" in image.run("exec", container.name, "cat", "/proc/1/cmdline")


def test_the_image_serves_with_the_native_twins(container: Container) -> None:
    assert "codecs: native; batch assembly: native" in container.logs()


def test_image_metadata(image: Image) -> None:
    config = image.inspect(".Config")
    with (ROOT / "pyproject.toml").open("rb") as f:
        version = tomllib.load(f)["project"]["version"]
    labels = config["Labels"]
    assert labels["org.opencontainers.image.version"] == version
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert re.fullmatch(r"[0-9a-f]{40}|unknown", labels["org.opencontainers.image.revision"])
    assert config["StopSignal"] in ("SIGTERM", "15")
    assert config["Entrypoint"] == ["sluice", "serve"]
    assert not config.get("Cmd")  # no arguments: the repository is a variable
    assert "SLUICE_MODEL_REPOSITORY=/models" in config["Env"]
    assert "/models" in config["Volumes"]
    healthcheck = image.inspect(".Config.Healthcheck")["Test"]
    assert healthcheck == ["CMD", "sluice", "health", "--timeout", "3"]
    # no compiler, no pip in the runtime stage
    assert image.run("run", "--rm", "--entrypoint", "sh", TAG, "-c",
                     "command -v gcc cc pip pip3 || true").strip() == ""  # fmt: skip


def test_sigterm_drains_requests_in_flight_and_exits_0(
    image: Image, fresh_container: Container
) -> None:
    x = np.ones((1, 64), dtype=np.float32)

    def over_http() -> np.ndarray:
        with httpclient.InferenceServerClient(
            fresh_container.http_url.removeprefix("http://"), network_timeout=_PATIENCE_SECS
        ) as client:
            inp = httpclient.InferInput("INPUT0", [1, 64], "FP32")
            inp.set_data_from_numpy(x)
            return client.infer("held", [inp]).as_numpy("OUTPUT0")

    def over_grpc() -> np.ndarray:
        with grpcclient.InferenceServerClient(fresh_container.grpc_url) as client:
            inp = grpcclient.InferInput("INPUT0", [1, 64], "FP32")
            inp.set_data_from_numpy(x)
            return client.infer("held", [inp], client_timeout=_PATIENCE_SECS).as_numpy("OUTPUT0")

    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(over_http), pool.submit(over_grpc)]
        # both wait in the batcher ...
        _wait_for(lambda: fresh_container.metric("sluice_queue_depth", "held") == 2,
                  "two queued requests", fresh_container)  # fmt: skip
        # ... when the container is stopped: STOPSIGNAL, then SIGKILL after the grace period
        image.run("stop", "--time", str(GRACE_SECS), fresh_container.name, timeout=GRACE_SECS + 30)
        for future in futures:
            np.testing.assert_allclose(future.result(), mlp_reference(x), rtol=1e-4, atol=1e-5)
    # 0, not 137: it exited on its own inside the grace period
    assert fresh_container.state("{{.State.ExitCode}}") == "0", fresh_container.logs()
    assert "shutting down" in fresh_container.logs()
    assert signal.SIGTERM.name in image.inspect(".Config.StopSignal")
