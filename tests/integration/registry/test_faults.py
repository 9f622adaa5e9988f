"""Every pull through a misbehaving network resumes to a verified install or fails
clearly, and never leaves a partial model where the server would load it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry_client import (
    HttpOptions,
    LocalRegistry,
    NetworkError,
    Puller,
    RetryPolicy,
    VerificationError,
    open_registry,
)
from tests.integration.registry.conftest import MlflowServer
from tests.integration.registry.fault_proxy import FaultProxy

pytestmark = pytest.mark.integration

SIZE = 3 * 1024 * 1024 + 17


@pytest.fixture(scope="module")
def big_model(mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A 3 MiB version pushed with a digest manifest (so every byte is verifiable)."""
    work = tmp_path_factory.mktemp("big")
    data = os.urandom(SIZE)
    (work / "model.onnx").write_bytes(data)
    local = LocalRegistry(work / "reg")
    local.register("big", [work / "model.onnx"], aliases=["champion"])
    out = subprocess.run(
        [sys.executable, "-m", "serving", "registry", "push", "models:/big@champion",
         "--registry", str(local.root), "--to", mlflow_server.uri, "--alias", "champion"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return data


@pytest.fixture
def proxy(mlflow_server: MlflowServer) -> Iterator[FaultProxy]:
    p = FaultProxy(mlflow_server.url)
    yield p
    p.close()


_FAST = HttpOptions(connect_timeout=5, stall_timeout=1.0, total_timeout=120,
                    retry=RetryPolicy(max_attempts=4, base_delay=0.05, max_delay=0.2))  # fmt: skip


def _pull(uri: str, repo: Path, options: HttpOptions = _FAST):  # type: ignore[no-untyped-def]
    async def run():  # type: ignore[no-untyped-def]
        async with open_registry(uri, options=options) as registry:
            return await Puller(registry, repo, options=options).pull("models:/big@champion")

    return asyncio.run(run())


def _visible(repo: Path) -> list[str]:
    return sorted(str(p.relative_to(repo)) for p in repo.rglob("*") if ".sluice" not in p.parts)


@pytest.mark.parametrize("mode", ["drop", "stall", "ignore-range"])
def test_interrupted_downloads_resume_to_a_verified_install(
    big_model: bytes, proxy: FaultProxy, tmp_path: Path, mode: str
) -> None:
    proxy.set(mode)
    result = _pull(proxy.uri, tmp_path)
    assert (result.path / "model.onnx").read_bytes() == big_model
    if mode in ("drop", "stall"):
        assert (
            proxy.range_headers and proxy.range_headers[0] != "bytes=0-"
        )  # resumed, not restarted


def test_a_flipped_byte_is_refetched_once_then_verified(
    big_model: bytes, proxy: FaultProxy, tmp_path: Path
) -> None:
    proxy.set("flip", times=1)
    result = _pull(proxy.uri, tmp_path)
    assert (result.path / "model.onnx").read_bytes() == big_model


def test_a_persistently_corrupt_file_fails_and_installs_nothing(
    big_model: bytes, proxy: FaultProxy, tmp_path: Path
) -> None:
    proxy.set("flip", times=100)
    with pytest.raises(VerificationError, match=r"model\.onnx: digest mismatch"):
        _pull(proxy.uri, tmp_path)
    assert _visible(tmp_path) == []


def test_a_network_that_keeps_dropping_gives_up_clearly(
    big_model: bytes, proxy: FaultProxy, tmp_path: Path
) -> None:
    proxy.set("stall", times=100)
    proxy.stall_secs = 3
    options = HttpOptions(connect_timeout=5, stall_timeout=0.5, total_timeout=60,
                          retry=RetryPolicy(max_attempts=2, base_delay=0.05, max_delay=0.1))  # fmt: skip
    with pytest.raises(NetworkError, match="giving up"):
        _pull(proxy.uri, tmp_path, options)
    assert _visible(tmp_path) == []


def test_a_pull_killed_with_sigkill_resumes_and_ends_consistent(
    big_model: bytes, proxy: FaultProxy, tmp_path: Path
) -> None:
    proxy.set("slow")
    cmd = [sys.executable, "-m", "serving", "pull", "models:/big@champion", "--registry",
           proxy.uri, "--model-repository", str(tmp_path), "--progress", "none"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    staging = tmp_path / ".sluice" / "staging"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        parts = list(staging.rglob("*.part"))
        if parts and parts[0].stat().st_size > SIZE // 4:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _visible(tmp_path) == []  # nothing where the server would load it
    proxy.set("none")
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert proxy.range_headers, "the second pull should resume with a Range request"
    assert (tmp_path / "big" / "1" / "model.onnx").read_bytes() == big_model
    assert not list(staging.rglob("*.part"))
