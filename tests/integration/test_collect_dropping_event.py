"""io.sluice.collect.dropping from the real server: collection that drops records (a
full queue behind a sink that never answers) is reported to a real signed webhook
receiver, with the reason and the count, while every request still succeeds."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.integration.server_process import ServerProcess
from tests.integration.test_monitoring import SECRET, _infer, _model
from tests.unit.serving.monitoring.receiver import Receiver

pytestmark = pytest.mark.integration


def test_dropping_collection_sends_collect_dropping(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    _model(repo, "full", {})
    logs = tmp_path / "logs"
    logs.mkdir()
    stuck = socket.socket()  # a sink that accepts and never answers: the writer waits on it
    stuck.bind(("127.0.0.1", 0))
    stuck.listen(64)
    sink = f"http://127.0.0.1:{stuck.getsockname()[1]}/"
    with Receiver(SECRET) as rx:
        events = tmp_path / "events.toml"
        events.write_text(f'[[webhook]]\nurl = "{rx.url}"\nsecret = "{SECRET}"\ntypes = ["io.sluice.collect.*"]\n')  # fmt: skip
        server = ServerProcess(
            repo, "--collect", str(tmp_path / "collected"), "--collect-queue-size", "2",
            "--collect-sink", sink, "--events", str(events), log_dir=logs,
        )  # fmt: skip
        try:
            with httpx.Client(base_url=server.http_url) as client:
                ones = np.ones((1, 4), np.float32)
                codes = [_infer(client, "full", f"r{i}", ones, ["u"]) for i in range(30)]
            assert codes == [200] * 30
            deadline = time.monotonic() + 60
            while not rx.events and time.monotonic() < deadline:
                time.sleep(0.05)
            assert rx.events, server.log()
        finally:
            server.proc.send_signal(signal.SIGKILL)
            server.stop()
            stuck.close()
    event = rx.events[0]
    assert event["type"] == "io.sluice.collect.dropping"
    assert event["data"]["reason"] == "queue_full" and event["data"]["dropped_total"] >= 1
    assert rx.bad_signatures == 0
