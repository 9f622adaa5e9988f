"""Servers under test as subprocesses, and their CPU and memory while a load runs."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ResourceMonitor",
    "ResourceUsage",
    "ServerProcess",
    "free_port",
    "wait_http_ready",
]

_LISTEN = re.compile(r"(HTTP|gRPC|metrics) service listening on ([^\s:]+):(\d+)")


def free_port() -> int:
    """A port the OS just handed out (for peers that cannot bind port 0 and say so)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http_ready(url: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before it was ready")
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready within {timeout:.0f}s")


class ServerProcess:
    """A server subprocess whose output goes to a log file in the run directory."""

    def __init__(
        self,
        name: str,
        cmd: Sequence[str],
        log_path: Path,
        *,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            list(cmd),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        self.pid = self.proc.pid

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def listening(self) -> dict[str, tuple[str, int]]:
        """``{"HTTP": (host, port), "gRPC": ..., "metrics": ...}`` as the log says so far."""
        return {kind: (host, int(port)) for kind, host, port in _LISTEN.findall(self.log())}

    def wait_listening(self, kinds: Sequence[str], timeout: float) -> dict[str, tuple[str, int]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.listening()
            if all(k in found for k in kinds):
                return found
            self.check_alive()
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not log {list(kinds)} within {timeout:.0f}s")

    def wait_log(self, text: str, timeout: float) -> None:
        """Wait until the log contains ``text`` (e.g. a supervisor's "server ready")."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return
            self.check_alive()
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not log {text!r} within {timeout:.0f}s")

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            tail = "\n".join(self.log().splitlines()[-30:])
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{tail}")

    def stop(self, timeout: float = 30) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(frozen=True, slots=True)
class ResourceUsage:
    cpu_percent: float  # of one core: 200 means two cores busy
    peak_rss_mb: float


class ResourceMonitor:
    """Samples a process tree's CPU time and RSS (psutil) on a thread while a load runs."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        self._pid = pid
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._peak_rss = 0
        self._cpu_start = 0.0
        self._wall_start = 0.0
        self.usage = ResourceUsage(0.0, 0.0)

    def _tree(self) -> list:
        import psutil

        root = psutil.Process(self._pid)
        return [root, *root.children(recursive=True)]

    def _cpu_and_rss(self) -> tuple[float, int]:
        import psutil

        cpu, rss = 0.0, 0
        for p in self._tree():
            try:
                t = p.cpu_times()
                cpu += t.user + t.system
                rss += p.memory_info().rss
            except psutil.Error:
                pass
        return cpu, rss

    def __enter__(self) -> ResourceMonitor:
        self._cpu_start, self._peak_rss = self._cpu_and_rss()
        self._wall_start = time.monotonic()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self._interval):
            _, rss = self._cpu_and_rss()
            self._peak_rss = max(self._peak_rss, rss)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        cpu, rss = self._cpu_and_rss()
        wall = time.monotonic() - self._wall_start
        self._peak_rss = max(self._peak_rss, rss)
        self.usage = ResourceUsage(
            cpu_percent=100.0 * (cpu - self._cpu_start) / wall if wall > 0 else 0.0,
            peak_rss_mb=self._peak_rss / 2**20,
        )
