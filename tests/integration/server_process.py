"""Start the real ``sluice serve`` process on free ports and wait until it is ready."""

from __future__ import annotations

import os
import re
import resource
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

__all__ = ["ServerProcess", "terminate"]

_LISTEN = re.compile(r"(HTTP|gRPC|metrics) service listening on ([^\s:]+):(\d+)")


def _limit(memory_limit: int | None) -> Callable[[], None] | None:
    if memory_limit is None:
        return None
    return lambda: resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))


def terminate(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM, 30 s to exit, then SIGKILL; the exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return int(proc.returncode)


class ServerProcess:
    """A running server; its log is kept in a file and shown when a test fails."""

    def __init__(
        self,
        repository: Path | None,
        *args: str,
        log_dir: Path,
        wait_ready: bool = True,
        ssl_context: ssl.SSLContext | None = None,
        memory_limit: int | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        """``ssl_context``: the server runs TLS (--tls-cert); readiness is polled over
        https with this client context (CA, and a client certificate for mutual TLS).
        ``memory_limit``: the server's address space in bytes (RLIMIT_AS), so a test of a
        memory bomb cannot take the machine down with it. ``repository`` None: no
        --model-repository flag (``env`` gives $SLUICE_MODEL_REPOSITORY); ``env``: variables
        added to this process's environment."""
        self.ssl_context = ssl_context
        scheme = "https" if ssl_context is not None else "http"
        self.log_path = log_dir / f"sluice-{os.getpid()}-{time.monotonic_ns()}.log"
        self._log = self.log_path.open("wb")
        cmd = [
            sys.executable, "-m", "serving", "serve",
            *(["--model-repository", str(repository)] if repository is not None else []),
            "--http-port", "0", "--metrics-port", "0", "--grpc-port", "0",
            *args,
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            cmd, stdout=self._log, stderr=subprocess.STDOUT, preexec_fn=_limit(memory_limit),
            env=None if env is None else {**os.environ, **env},
        )  # fmt: skip
        self.http_port = self.grpc_port = self.metrics_port = 0
        self._wait_listening(timeout=60)
        self.url = f"127.0.0.1:{self.http_port}"
        self.http_url = f"{scheme}://{self.url}"
        self.grpc_url = f"127.0.0.1:{self.grpc_port}"  # host:port, as tritonclient.grpc takes it
        self.metrics_url = f"{scheme}://127.0.0.1:{self.metrics_port}/metrics"
        if wait_ready:
            self.wait_ready()

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def _wait_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ports = {kind: int(port) for kind, _host, port in _LISTEN.findall(self.log())}
            if {"HTTP", "gRPC", "metrics"} <= ports.keys():
                self.http_port, self.metrics_port = ports["HTTP"], ports["metrics"]
                self.grpc_port = ports["gRPC"]
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server did not start listening within {timeout}s:\n{self.log()}")

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                url = f"{self.http_url}/v2/health/ready"
                verify = self.ssl_context if self.ssl_context is not None else True
                if httpx.get(url, timeout=5, verify=verify).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            time.sleep(0.1)
        raise RuntimeError(f"server not ready within {timeout}s:\n{self.log()}")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int:
        returncode = terminate(self.proc)
        self._log.close()
        return returncode
