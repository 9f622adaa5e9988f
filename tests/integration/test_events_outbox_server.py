"""A server whose events receiver is down drops what passes its outbox's bound and
counts it in sluice_events_dropped_total on its metrics port."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.integration.server_process import ServerProcess
from tests.integration.test_monitoring import SECRET, _model
from tests.unit.serving.monitoring.receiver import Receiver

pytestmark = pytest.mark.integration

DROPPED = 'sluice_events_dropped_total{reason="max_outbox_bytes",sink="sink-0"} 1.0'


def test_dropped_events_are_counted_on_the_metrics_port(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    _model(repo, "good", {})
    (tmp_path / "logs").mkdir()
    with Receiver(SECRET) as rx:
        rx.status = 500  # down
        events = tmp_path / "events.toml"
        events.write_text(f'max_outbox_bytes = 1\n[[webhook]]\nurl = "{rx.url}"\n'
                          f'secret = "{SECRET}"\n')  # fmt: skip
        server = ServerProcess(repo, "--events", str(events), log_dir=tmp_path / "logs")
        try:
            deadline = time.monotonic() + 30
            text = ""
            while DROPPED not in text:  # version.loaded, dropped at a delivery pass
                assert time.monotonic() < deadline, text[-3000:]
                time.sleep(0.1)
                text = httpx.get(server.metrics_url, timeout=5).text
        finally:
            server.stop()
    assert not list((tmp_path / "events.toml.outbox" / "sink-0").glob("*.json"))
    log = "".join(p.read_text() for p in (tmp_path / "logs").iterdir())
    assert "dropped the 1 oldest undelivered event(s) past max_outbox_bytes (1 bytes)" in log
