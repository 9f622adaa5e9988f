"""The monitoring loop against the real server process: collected Parquet read back,
SIGKILL then restart, a full queue, and drift reported to a real webhook receiver."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pyarrow.dataset as ds
import pytest

from tests.integration.server_process import ServerProcess
from tests.unit.serving.monitoring.receiver import Receiver

pytestmark = pytest.mark.integration

SECRET = "whsec_" + base64.b64encode(b"integration secret, 32 bytes...").decode()


def _model(directory: Path, name: str, parameters: dict[str, str]) -> None:
    """y = 2 * x over FP32 [-1, 4], and a BYTES input 'user' passed through as 'tag'."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])
    user = helper.make_tensor_value_info("user", TensorProto.STRING, [None, 1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])
    tag = helper.make_tensor_value_info("tag", TensorProto.STRING, [None, 1])
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["y"]), helper.make_node("Identity", ["user"], ["tag"])],
        name, [x, user], [y, tag], [two],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    (directory / name / "1").mkdir(parents=True)
    (directory / name / "1" / "model.onnx").write_bytes(model.SerializeToString())
    params = "".join(
        f'parameters {{ key: "{k}" value {{ string_value: "{v}" }} }}\n'
        for k, v in parameters.items()
    )
    (directory / name / "config.pbtxt").write_text(f'name: "{name}"\nmax_batch_size: 8\n{params}')


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("repo")
    _model(repo, "full", {"sluice.collect.hash": "user"})
    _model(repo, "half", {"sluice.collect.sample_rate": "0.5", "sluice.collect.by_request_id": "true"})  # fmt: skip
    _model(repo, "off", {"sluice.collect.sample_rate": "0"})
    return repo


def _body(rid: str, x: np.ndarray, users: list[str]) -> dict:
    return {
        "id": rid,
        "inputs": [
            {"name": "x", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()},
            {"name": "user", "datatype": "BYTES", "shape": [len(users), 1], "data": users},
        ],
    }


def _infer(client: httpx.Client, model: str, rid: str, x: np.ndarray, users: list[str]) -> int:
    return client.post(f"/v2/models/{model}/infer", json=_body(rid, x, users)).status_code


def _rows(dest: Path) -> list[dict]:
    table = ds.dataset(dest, format="parquet", partitioning="hive").to_table()
    return table.to_pylist()


def _spooled(dest: Path) -> int:
    """Records in the open spool segments (a frame holds one drained batch of them)."""
    from serving.monitoring._record import frame_records
    from serving.monitoring._spool import read_frames

    paths = (dest / "_spool").glob("*.open")
    return sum(frame_records(frame) for p in paths for frame in read_frames(p))


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    (tmp_path / "logs").mkdir()
    return tmp_path / "logs"


def test_requests_become_parquet_rows(repository: Path, tmp_path: Path, logs: Path) -> None:
    dest = tmp_path / "collected"
    server = ServerProcess(repository, "--collect", str(dest), log_dir=logs)
    rng = np.random.default_rng(0)
    sent: dict[str, np.ndarray] = {}
    try:
        with httpx.Client(base_url=server.http_url) as client:
            for i in range(20):
                x = rng.normal(size=(2, 4)).astype(np.float32)
                sent[f"full-{i}"] = x
                assert _infer(client, "full", f"full-{i}", x, [f"alice{i}", f"bob{i}"]) == 200
            half_ids = [f"half-{i}" for i in range(200)]
            for rid in half_ids:
                assert _infer(client, "half", rid, np.ones((1, 4), np.float32), ["u"]) == 200
            assert _infer(client, "off", "off-1", np.ones((1, 4), np.float32), ["u"]) == 200
            bad = client.post("/v2/models/full/infer", json=_body("bad-1", np.ones((1, 3), np.float32), ["u"]))  # fmt: skip
            assert bad.status_code == 400
    finally:
        assert server.stop() == 0  # SIGTERM: the queue is written and the spool rolled
    rows = _rows(dest)
    full = sorted((r for r in rows if r["model"] == "full"), key=lambda r: (r["request_id"], r["batch_index"]))  # fmt: skip
    ok = [r for r in full if r["status"] == "ok"]
    assert len(ok) == 40
    for r in ok:
        x = sent[r["request_id"]][r["batch_index"]]
        assert r["x"] == pytest.approx(x.tolist()) and r["y"] == pytest.approx((2 * x).tolist())
        i = int(r["request_id"].split("-")[1])
        name = ("alice" if r["batch_index"] == 0 else "bob") + str(i)
        assert r["user"] == hashlib.sha256(name.encode()).hexdigest()  # hashed, never stored
        assert r["tag"] == name.encode()
        assert r["version"] == 1 and r["sample_rate"] == 1.0
    (failed,) = [r for r in full if r["status"] == "error"]
    assert failed["request_id"] == "bad-1" and "shape [1, 3]" in failed["error"]
    day = ok[0]["timestamp"].date().isoformat()
    assert list(dest.glob(f"model=full/version=1/date={day}/part-*.parquet"))
    # By request-id hash: exactly the ids a client can predict, about half of them.
    from serving.monitoring import CollectConfig, sampled

    config = CollectConfig.from_parameters(
        "half", {"sluice.collect.sample_rate": "0.5", "sluice.collect.by_request_id": "true"},
        [], [],
    )  # fmt: skip
    expected = {rid for rid in half_ids if sampled(config, rid, 1.0)}
    got = {r["request_id"] for r in rows if r["model"] == "half"}
    assert got == expected and 70 <= len(got) <= 130
    assert not [r for r in rows if r["model"] == "off"]


def test_sigkill_under_load_then_restart_rolls_the_spool(
    repository: Path, tmp_path: Path, logs: Path
) -> None:
    dest = tmp_path / "collected"
    args = ("--collect", str(dest), "--collect-roll-secs", "3600")
    server = ServerProcess(repository, *args, log_dir=logs)
    x = np.ones((1, 4), np.float32)
    try:
        with httpx.Client(base_url=server.http_url) as client:
            acked = [f"k-{i}" for i in range(50)]
            for rid in acked:
                assert _infer(client, "full", rid, x, ["u"]) == 200
            deadline = time.monotonic() + 30
            while _spooled(dest) < len(acked) and time.monotonic() < deadline:
                time.sleep(0.05)  # waiting for a condition: the writer spooled them
            assert _spooled(dest) == len(acked)

            def load(i: int) -> None:
                try:
                    _infer(client, "full", f"load-{i}", x, ["u"])
                except httpx.HTTPError:
                    pass

            with ThreadPoolExecutor(8) as pool:
                futures = [pool.submit(load, i) for i in range(200)]
                while not any(f.done() for f in futures[50:]):
                    time.sleep(0.01)
                server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(10)
    finally:
        server.stop()
    assert not list(dest.glob("model=*"))  # nothing rolled before the kill
    restarted = ServerProcess(repository, *args, log_dir=logs)
    try:
        ids = {r["request_id"] for r in _rows(dest)}  # rolled during start-up
    finally:
        restarted.stop()
    assert set(acked) <= ids


def test_a_full_queue_drops_and_counts_and_requests_still_succeed(
    repository: Path, tmp_path: Path, logs: Path
) -> None:
    stuck = socket.socket()  # a sink that accepts and never answers: the writer waits on it
    stuck.bind(("127.0.0.1", 0))
    stuck.listen(64)
    sink = f"http://127.0.0.1:{stuck.getsockname()[1]}/"
    dest = tmp_path / "collected"
    server = ServerProcess(
        repository, "--collect", str(dest), "--collect-queue-size", "2", "--collect-sink", sink,
        log_dir=logs,
    )  # fmt: skip
    try:
        with httpx.Client(base_url=server.http_url) as client:
            codes = [_infer(client, "full", f"r{i}", np.ones((1, 4), np.float32), ["u"]) for i in range(30)]  # fmt: skip
            assert codes == [200] * 30
            text = httpx.get(server.metrics_url).text
        dropped = re.search(r'sluice_collect_dropped_total\{reason="queue_full"\} (\S+)', text)
        assert dropped is not None and float(dropped.group(1)) >= 20
    finally:
        server.proc.send_signal(signal.SIGKILL)
        server.stop()
        stuck.close()


def test_drift_on_shifted_data_reaches_a_receiver_signed(
    repository: Path, tmp_path: Path, logs: Path
) -> None:
    dest = tmp_path / "collected"
    rng = np.random.default_rng(3)
    server = ServerProcess(repository, "--collect", str(dest), log_dir=logs)
    try:
        with httpx.Client(base_url=server.http_url) as client:
            for i in range(100):
                x = rng.normal(size=(8, 4)).astype(np.float32)
                x[:, 1] += 1.0  # feature x[1] shifted in production
                assert _infer(client, "full", f"d{i}", x, ["u"] * 8) == 200
    finally:
        server.stop()
    np.savez(tmp_path / "train.npz", x=rng.normal(size=(3000, 4)).astype(np.float32))
    with Receiver(SECRET) as rx:
        events = tmp_path / "events.toml"
        events.write_text(f'[[webhook]]\nurl = "{rx.url}"\nsecret = "{SECRET}"\ntypes = ["io.sluice.drift.*"]\n')  # fmt: skip
        out = tmp_path / "report.json"
        proc = subprocess.run(
            [sys.executable, "-m", "serving.monitoring", "drift", "--baseline",
             str(tmp_path / "train.npz"), "--current", str(dest), "--model", "full",
             "--out", str(out), "--html", str(tmp_path / "report.html"), "--fail-on-drift",
             "--events", str(events)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    report = json.loads(out.read_text())
    assert report["drifted_features"] == ["x[1]"]
    assert {f["name"] for f in report["features"]} == {f"x[{i}]" for i in range(4)}
    assert rx.bad_signatures == 0
    (event,) = rx.events
    assert event["type"] == "io.sluice.drift.detected" and event["data"]["features"] == ["x[1]"]
    assert "x[1]" in (tmp_path / "report.html").read_text()
