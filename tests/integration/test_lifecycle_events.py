"""A server with --events tells a real webhook receiver as versions load, fail to load
and unload (io.sluice.version.*), signed as Standard Webhooks specifies."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.integration.server_process import ServerProcess
from tests.integration.test_monitoring import SECRET, _model
from tests.unit.serving.monitoring.receiver import Receiver

pytestmark = pytest.mark.integration


def _until_events(rx: Receiver, count: int, timeout: float = 30.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while len(rx.events) < count:
        assert time.monotonic() < deadline, f"events so far: {rx.events}"
        time.sleep(0.05)
    return rx.events


def test_version_events_reach_a_receiver(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    _model(repo, "good", {})
    (repo / "broken" / "1").mkdir(parents=True)
    (repo / "broken" / "1" / "model.onnx").write_bytes(b"not an onnx graph")
    (tmp_path / "logs").mkdir()
    with Receiver(SECRET) as rx:
        events = tmp_path / "events.toml"
        events.write_text(f'[[webhook]]\nurl = "{rx.url}"\nsecret = "{SECRET}"\n'
                          'types = ["io.sluice.version.*"]\n')  # fmt: skip
        server = ServerProcess(repo, "--model-control-mode", "explicit", "--load-model", "good",
                               "--events", str(events), log_dir=tmp_path / "logs")  # fmt: skip
        try:
            (loaded,) = _until_events(rx, 1)
            with httpx.Client(base_url=server.http_url, timeout=30) as client:
                assert client.post("/v2/repository/models/broken/load").status_code == 400
                failed = _until_events(rx, 2)[1]
                assert client.post("/v2/repository/models/good/unload").status_code == 200
                unloaded = _until_events(rx, 3)[2]
        finally:
            server.stop()
    assert rx.bad_signatures == 0
    assert (loaded["type"], loaded["subject"]) == ("io.sluice.version.loaded", "good:1")
    assert loaded["data"] == {"model": "good", "version": "1"}
    assert failed["type"] == "io.sluice.version.load_failed"
    assert failed["data"]["model"] == "broken" and failed["data"]["reason"]
    assert (unloaded["type"], unloaded["data"]) == (
        "io.sluice.version.unloaded", {"model": "good", "version": "1"},
    )  # fmt: skip
