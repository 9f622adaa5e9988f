"""``sluice serve --registry --model``: the real server follows an alias under steady load."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from registry_client import LocalRegistry
from serving.examples import build_simple
from tests.integration.registry.conftest import MlflowServer
from tests.integration.server_process import ServerProcess

pytestmark = pytest.mark.integration

A = list(range(16))
B = [1] * 16
SUM = [a + b for a, b in zip(A, B, strict=True)]
DIFFERENCE = [a - b for a, b in zip(A, B, strict=True)]


def build_swapped_simple() -> bytes:
    """``simple``'s inputs and outputs, with OUTPUT0 and OUTPUT1 swapped: tells v2 from v1."""
    from onnx import TensorProto, helper

    def tensor(name: str) -> Any:
        return helper.make_tensor_value_info(name, TensorProto.INT32, [None, 16])

    graph = helper.make_graph(
        [
            helper.make_node("Sub", ["INPUT0", "INPUT1"], ["OUTPUT0"]),
            helper.make_node("Add", ["INPUT0", "INPUT1"], ["OUTPUT1"]),
        ],
        "simple_swapped",
        [tensor("INPUT0"), tensor("INPUT1")],
        [tensor("OUTPUT0"), tensor("OUTPUT1")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


@pytest.fixture
def model_files(tmp_path: Path) -> tuple[Path, Path]:
    v1 = tmp_path / "v1" / "model.onnx"
    v2 = tmp_path / "v2" / "model.onnx"
    for path, content in ((v1, build_simple()), (v2, build_swapped_simple())):
        path.parent.mkdir()
        path.write_bytes(content)
    return v1, v2


class SteadyLoad:
    """Threads sending inference requests back to back; every outcome is recorded."""

    def __init__(self, url: str, model: str, threads: int = 2) -> None:
        self.url = f"{url}/v2/models/{model}/infer"
        self.ok: list[tuple[str, list[int]]] = []  # (model_version, OUTPUT0)
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        body = {"inputs": [
            {"name": "INPUT0", "datatype": "INT32", "shape": [1, 16], "data": A},
            {"name": "INPUT1", "datatype": "INT32", "shape": [1, 16], "data": B},
        ], "outputs": [{"name": "OUTPUT0"}]}  # fmt: skip
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                try:
                    response = client.post(self.url, json=body)
                except httpx.HTTPError as exc:
                    with self._lock:
                        self.failures.append(repr(exc))
                    continue
                with self._lock:
                    if response.status_code == 200:
                        result = response.json()
                        self.ok.append((result["model_version"], result["outputs"][0]["data"]))
                    else:
                        self.failures.append(f"{response.status_code}: {response.text}")

    def count(self, version: str) -> int:
        with self._lock:
            return sum(1 for v, _ in self.ok if v == version)

    def wait_for(self, version: str, count: int = 50, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while self.count(version) < count:
            assert time.monotonic() < deadline, f"no {count} responses from version {version}"
            time.sleep(0.02)

    @contextmanager
    def running(self) -> Iterator[SteadyLoad]:
        for t in self._threads:
            t.start()
        try:
            yield self
        finally:
            self._stop.set()
            for t in self._threads:
                t.join(timeout=30)


def _sluice(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "serving", *args], capture_output=True, text=True)


def _follow_under_load(
    server: ServerProcess, name: str, move_alias: Callable[[int], None], new: int, old: int
) -> SteadyLoad:
    """Move the alias from ``old`` to ``new`` while requests flow; return what they saw."""
    load = SteadyLoad(server.http_url, name)
    with load.running():
        load.wait_for(str(old))
        move_alias(new)
        load.wait_for(str(new))
    assert load.failures == [], server.log()[-6000:]
    versions = [v for v, _ in load.ok]
    switch = versions.index(str(new))
    # Once the new version answers, the old one is retired (two threads: allow one straggler).
    assert versions[switch + 2 :].count(str(old)) == 0
    return load


def test_alias_moves_switch_versions_with_zero_failed_requests(
    tmp_path: Path, model_files: tuple[Path, Path]
) -> None:
    v1, v2 = model_files
    registry = LocalRegistry(tmp_path / "registry")
    registry.register("simple", [v1], aliases=["champion"], git_commit="1111aaaa", run_id="r1")
    repo = tmp_path / "repo"
    repo.mkdir()
    server = ServerProcess(repo, "--registry", str(registry.root),
                           "--model", "models:/simple@champion", "--registry-poll-secs", "0.2",
                           log_dir=tmp_path)  # fmt: skip
    try:
        meta = httpx.get(f"{server.http_url}/v2/models/simple").json()
        assert meta["versions"] == ["1"]
        assert meta["parameters"]["lineage.git_commit"] == "1111aaaa"

        registry.register("simple", [v2], git_commit="2222bbbb", run_id="r2")

        def move(version: int) -> None:
            out = _sluice("registry", "alias", "simple", "champion", str(version),
                          "--registry", str(registry.root))  # fmt: skip
            assert out.returncode == 0, out.stderr

        load = _follow_under_load(server, "simple", move, new=2, old=1)
        outputs = {v: data for v, data in load.ok}
        assert outputs == {"1": SUM, "2": DIFFERENCE}  # really the other model
        meta = httpx.get(f"{server.http_url}/v2/models/simple").json()
        assert meta["versions"] == ["2"]
        params = meta["parameters"]
        assert params["lineage.version"] == "2"
        assert params["lineage.git_commit"] == "2222bbbb"
        assert params["lineage.run_id"] == "r2"
        assert params["lineage.registry"] == registry.uri

        out = _sluice("registry", "delete", "simple", "2", "--registry", str(registry.root))
        assert out.returncode == 8, out.stderr
        assert "pinned by deployment 'sluice-" in out.stderr

        _follow_under_load(server, "simple", move, new=1, old=2)  # rollback
        assert sorted(p.name for p in (repo / "simple").iterdir()) == ["1", "2"]
    finally:
        assert server.stop() == 0, server.log()[-6000:]
    assert registry.pins() == []  # cleared on a clean shutdown
    out = _sluice("registry", "delete", "simple", "2", "--registry", str(registry.root))
    assert out.returncode == 0, out.stderr


def test_a_server_started_while_the_registry_is_unreachable_serves_the_disk(
    tmp_path: Path, model_files: tuple[Path, Path]
) -> None:
    v1, v2 = model_files
    repo = tmp_path / "repo"
    (repo / "simple" / "1").mkdir(parents=True)
    (repo / "simple" / "1" / "model.onnx").write_bytes(v1.read_bytes())
    root = tmp_path / "registry"  # does not exist yet
    server = ServerProcess(repo, "--registry", str(root), "--model", "models:/simple@champion",
                           "--registry-poll-secs", "0.2", log_dir=tmp_path)  # fmt: skip
    try:
        meta = httpx.get(f"{server.http_url}/v2/models/simple").json()
        assert meta["versions"] == ["1"]
        registry = LocalRegistry(root)
        registry.register("simple", [v1])
        registry.register("simple", [v2], aliases=["champion"])
        deadline = time.monotonic() + 60
        while httpx.get(f"{server.http_url}/v2/models/simple").json()["versions"] != ["2"]:
            assert time.monotonic() < deadline, server.log()[-6000:]
            time.sleep(0.1)
        assert server.log().count("unavailable") == 1, server.log()[-6000:]
    finally:
        assert server.stop() == 0, server.log()[-6000:]


def test_every_worker_follows_the_alias(tmp_path: Path, model_files: tuple[Path, Path]) -> None:
    """``--workers 2``: each worker follows on its own (and pins what it serves); an alias
    move reaches both, whichever one a new connection lands on."""
    v1, v2 = model_files
    registry = LocalRegistry(tmp_path / "registry")
    registry.register("simple", [v1], aliases=["champion"])
    registry.register("simple", [v2])
    repo = tmp_path / "repo"
    repo.mkdir()
    server = ServerProcess(repo, "--workers", "2", "--registry", str(registry.root),
                           "--model", "models:/simple@champion", "--registry-poll-secs", "0.2",
                           log_dir=tmp_path, wait_ready=False)  # fmt: skip

    def served() -> set[tuple[str, ...]]:
        """What 30 new connections (spread by the kernel over the workers) are told."""
        answers = set()
        for _ in range(30):
            meta = httpx.get(f"{server.http_url}/v2/models/simple", timeout=30).json()
            answers.add(tuple(meta.get("versions", ())))
        return answers

    try:
        deadline = time.monotonic() + 90
        while "server ready: 2 workers serving" not in server.log():
            assert time.monotonic() < deadline, server.log()[-6000:]
            time.sleep(0.1)
        assert served() == {("1",)}
        assert len(registry.pins()) == 2  # one deployment per worker process
        out = _sluice("registry", "alias", "simple", "champion", "2",
                      "--registry", str(registry.root))  # fmt: skip
        assert out.returncode == 0, out.stderr
        deadline = time.monotonic() + 60
        while served() != {("2",)}:
            assert time.monotonic() < deadline, server.log()[-6000:]
            time.sleep(0.2)
        assert sorted(p.name for p in (repo / "simple").iterdir()) == ["1", "2"]
    finally:
        assert server.stop() == 0, server.log()[-6000:]
    assert registry.pins() == []


def test_following_an_mlflow_alias_under_load(
    mlflow_server: MlflowServer, tmp_path: Path, model_files: tuple[Path, Path]
) -> None:
    v1, v2 = model_files
    first = mlflow_server.register("run", "followed", str(v1), "--alias", "champion",
                                   "--git-commit", "abc123")  # fmt: skip
    second = mlflow_server.register("run", "followed", str(v2))
    repo = tmp_path / "repo"
    repo.mkdir()
    server = ServerProcess(repo, "--registry", mlflow_server.uri,
                           "--model", "models:/followed@champion", "--registry-poll-secs", "0.2",
                           log_dir=tmp_path)  # fmt: skip
    try:

        def move(version: int) -> None:
            mlflow_server.register("alias", "followed", "champion", str(version))

        load = _follow_under_load(server, "followed", move, new=second, old=first)
        assert {v: data for v, data in load.ok} == {str(first): SUM, str(second): DIFFERENCE}
        params = httpx.get(f"{server.http_url}/v2/models/followed").json()["parameters"]
        assert params["lineage.version"] == str(second)
        assert params["lineage.registry"] == mlflow_server.uri
        assert params["lineage.run_id"]
        assert params["lineage.digest_source"] == "first-pull"
    finally:
        assert server.stop() == 0, server.log()[-6000:]
