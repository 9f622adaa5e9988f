"""Online drift in the real server: a version shipping drift_baseline.json, shifted
inputs -> sluice_drift_score and io.sluice.drift.detected at a real signed webhook
receiver; unshifted inputs afterwards -> io.sluice.drift.recovered. Collection goes
to a file:// URL."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.integration.server_process import ServerProcess
from tests.integration.test_monitoring import SECRET, _infer, _model
from tests.unit.serving.monitoring.receiver import Receiver

pytestmark = pytest.mark.integration

WINDOW = 1000


def _until(
    check: Callable[[], bool], what: str, server: ServerProcess, timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout} s; server log:\n{server.log()}")
        time.sleep(0.05)


def _send(client: httpx.Client, rng: np.random.Generator, shift: float, tag: str) -> None:
    for i in range(WINDOW // 8):
        x = rng.normal(size=(8, 4)).astype(np.float32)
        x[:, 1] += shift
        assert _infer(client, "drifty", f"{tag}{i}", x, ["u"] * 8) == 200


def _scores(text: str) -> dict[tuple[str, str], float]:
    """sluice_drift_score of model drifty version 1, by (feature, method)."""
    out = {}
    for labels, value in re.findall(r"^sluice_drift_score\{(.*)\} (\S+)$", text, re.M):
        found = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if found["model"] == "drifty" and found["version"] == "1":
            out[(found["feature"], found["method"])] = float(value)
    return out


def _types(rx: Receiver, kind: str) -> list[str]:
    return [e["data"]["feature"] for e in rx.events if e["type"] == f"io.sluice.drift.{kind}"]


def test_shifted_inputs_detected_then_recovered(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    _model(repo, "drifty", {"sluice.collect.inputs": "x"})
    rng = np.random.default_rng(11)
    np.savez(tmp_path / "train.npz", x=rng.normal(size=(5000, 4)).astype(np.float32))
    subprocess.run(
        [sys.executable, "-m", "serving.monitoring", "drift", "profile",
         str(tmp_path / "train.npz"), "-o", str(repo / "drifty" / "1" / "drift_baseline.json")],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    dest = tmp_path / "collected"
    logs = tmp_path / "logs"
    logs.mkdir()
    with Receiver(SECRET) as rx:
        events = tmp_path / "events.toml"
        events.write_text(f'[[webhook]]\nurl = "{rx.url}"\nsecret = "{SECRET}"\ntypes = ["io.sluice.drift.*"]\n')  # fmt: skip
        server = ServerProcess(
            repo, "--collect", f"file://{dest}", "--events", str(events),
            "--drift-window", str(WINDOW), "--drift-interval-secs", "0.2", log_dir=logs,
        )  # fmt: skip
        try:
            with httpx.Client(base_url=server.http_url) as client:
                _send(client, rng, 1.5, "shifted")
                _until(lambda: _types(rx, "detected"), "drift.detected event", server)
                assert _types(rx, "detected") == ["x[1]"]
                scores = _scores(httpx.get(server.metrics_url).text)
                assert scores[("x[1]", "psi")] > 0.1
                assert {f for f, _ in scores} == {f"x[{i}]" for i in range(4)}
                assert {m for _, m in scores} == {"chi2", "psi"}  # against a profile
                assert not _types(rx, "recovered")
                _send(client, rng, 0.0, "plain")
                _until(lambda: _types(rx, "recovered"), "drift.recovered event", server)
        finally:
            assert server.stop() == 0
    assert _types(rx, "detected") == ["x[1]"] and _types(rx, "recovered") == ["x[1]"]
    assert rx.bad_signatures == 0
    (recovered,) = [e for e in rx.events if e["type"] == "io.sluice.drift.recovered"]
    assert recovered["data"]["model"] == "drifty" and recovered["data"]["window"] == WINDOW
    # the file:// destination is a local directory: the collected rows landed there
    assert list(dest.glob("model=drifty/version=1/date=*/part-*.parquet"))
