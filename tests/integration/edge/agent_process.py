"""A real ``python -m edge_agent run`` process, its log kept and shown on failure."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.integration.server_process import terminate

__all__ = ["AgentProcess", "write_config"]

_SERVING = re.compile(r"edge agent serving: http=(\d+) grpc=(\d+) metrics=(\d+)")


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | Path):
        return '"' + str(value) + '"'
    return repr(value)


def write_config(path: Path, values: dict[str, Any]) -> Path:
    """``values``: dotted keys as in docs/edge.md (``"mqtt.url": ...``)."""
    top = {k: v for k, v in values.items() if "." not in k}
    tables: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        if "." in key:
            table, name = key.split(".", 1)
            tables.setdefault(table, {})[name] = value
    lines = [f"{k} = {_toml(v)}" for k, v in top.items()]
    for table, entries in tables.items():
        lines.append(f"[{table}]")
        lines += [f"{k} = {_toml(v)}" for k, v in entries.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


class AgentProcess:
    def __init__(self, config: Path, log_dir: Path, *, serving: bool = True) -> None:
        self.log_path = log_dir / f"agent-{os.getpid()}-{time.monotonic_ns()}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edge_agent", "run", "--config", str(config)],
            stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.http_port = self.grpc_port = self.metrics_port = 0
        self.wait_log("edge agent serving" if serving else "edge agent running", timeout=60)
        if serving:
            m = _SERVING.search(self.log())
            assert m is not None
            self.http_port, self.grpc_port, self.metrics_port = map(int, m.groups())

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"agent exited {self.proc.returncode}:\n{self.log()[-4000:]}")
            time.sleep(0.02)
        raise TimeoutError(f"{text!r} not in the agent's log within {timeout}s:\n{self.log()[-4000:]}")  # fmt: skip

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self._log.close()

    def stop(self) -> int:
        returncode = terminate(self.proc)
        self._log.close()
        return returncode
