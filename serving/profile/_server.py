"""The ``sluice serve`` process a profile measures, one per configuration."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from serving.convert import ToolError

__all__ = ["ProfiledServer"]

_LISTEN = re.compile(r"(HTTP|gRPC|metrics) service listening on ([^\s:]+):(\d+)")


class ProfiledServer:
    """``sluice serve`` on free ports, its log in ``log_path``; a context manager."""

    def __init__(self, repository: Path, log_path: Path, extra_args: list[str]) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        cmd = [sys.executable, "-m", "serving", "serve", "--model-repository", str(repository),
               "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0",
               *extra_args]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        self.port = 0
        self.url = ""

    def __enter__(self) -> ProfiledServer:
        try:
            self._wait(timeout=120)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def _wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.port:
                found = {k: int(p) for k, _h, p in _LISTEN.findall(self.log())}
                if "HTTP" in found:
                    self.port = found["HTTP"]
                    self.url = f"http://127.0.0.1:{self.port}"
            if self.port:
                try:
                    if httpx.get(f"{self.url}/v2/health/ready", timeout=5).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
            if self.proc.poll() is not None:
                raise ToolError(f"the server exited with {self.proc.returncode}:\n"
                                f"{self.log()[-3000:]}")  # fmt: skip
            time.sleep(0.1)
        raise ToolError(f"the server was not ready within {timeout:.0f}s:\n{self.log()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
