"""A real MLflow tracking server (sqlite backend, artifacts proxied) from .venv-mlflow.

MLflow lives in its own virtualenv (``bash scripts/setup_mlflow.sh``) so its large
dependency tree never touches Sluice's; without it these tests are skipped.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[3]
VENV = Path(os.environ.get("SLUICE_MLFLOW_VENV", ROOT / ".venv-mlflow"))
HELPER = Path(__file__).with_name("mlflow_helper.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MlflowServer:
    def __init__(self, workdir: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.uri = f"mlflow+{self.url}"
        self.log_path = workdir / "mlflow.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [str(VENV / "bin" / "mlflow"), "server", "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{workdir / 'mlflow.db'}",
             "--artifacts-destination", str(workdir / "artifacts"), "--serve-artifacts"],
            stdout=self._log, stderr=subprocess.STDOUT, cwd=workdir,
            # its own process group, so stop() ends uvicorn and every worker with it;
            # no job runner (a dozen idle processes the registry API does not need)
            start_new_session=True,
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"mlflow server not healthy within 120s:\n{self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-6000:]

    def register(self, how: str, name: str, *args: str) -> int:
        """``how``: run (runs:/ source), logged (MLflow 3 logged model) or alias."""
        out = subprocess.run([str(VENV / "bin" / "python"), str(HELPER), self.url, how, name, *args],
                             capture_output=True, text=True)  # fmt: skip
        if out.returncode != 0:
            raise RuntimeError(
                f"mlflow helper failed:\n{out.stderr[-4000:]}\nserver:\n{self.log()}"
            )
        return int(json.loads(out.stdout.strip().splitlines()[-1])["version"])

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._log.close()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    if not (VENV / "bin" / "mlflow").exists():
        pytest.skip(f"MLflow is not installed in {VENV}: run `bash scripts/setup_mlflow.sh`")
    server = MlflowServer(tmp_path_factory.mktemp("mlflow"))
    yield server
    server.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        server = getattr(item, "funcargs", {}).get("mlflow_server")
        if isinstance(server, MlflowServer):
            report.sections.append(("mlflow server log", server.log()))
