"""A real mosquitto broker on a free loopback port, persistence in a test directory."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

__all__ = ["Mosquitto", "free_port"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Mosquitto:
    def __init__(self, directory: Path, *, tls: Any = None, client_certs: bool = False) -> None:
        """``tls``: a ``tests.tls_certs.Pki``; the listener then speaks TLS with its server
        certificate, and with ``client_certs`` requires a client certificate its client CA
        signed."""
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            raise RuntimeError("mosquitto is not installed: scripts/test.sh installs it (apt-get install -y mosquitto)")  # fmt: skip
        self.binary = binary
        self.directory = directory
        self.data = directory / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data, 0o777)  # started as root, mosquitto drops to its own user
        self.port = free_port()
        self.conf = directory / "mosquitto.conf"
        user = "user root\n" if os.geteuid() == 0 else ""
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {self.data}/\nmax_queued_messages 1000\n{user}"
        )
        self.tls = tls is not None
        if tls is not None:
            with self.conf.open("a") as conf:
                conf.write(f"certfile {tls.server_cert}\nkeyfile {tls.server_key}\n")
                if client_certs:
                    conf.write(f"cafile {tls.client_ca}\nrequire_certificate true\n")
        self.log_path = directory / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log_path.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("mosquitto did not listen within 10s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None
