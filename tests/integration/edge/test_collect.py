"""Records collected on a device reach the fleet through the agent's outbox and mosquitto."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import paho.mqtt.client as mqtt
import pyarrow.dataset as ds
import pytest

from edge_agent._chunk import decode_chunk
from edge_agent._receiver import Received, receive_collected
from edge_agent._shipper import CollectShipper
from edge_agent._topics import Topics
from tests.integration.edge.broker import Mosquitto
from tests.integration.edge.conftest import Agents, Fleet, wait_for
from tests.integration.edge.test_rollout import doc
from tests.unit.edge_agent.test_shipper import parquet

COLLECT = {
    "collect__enabled": True,
    "collect__roll_secs": 0.3,
    "collect__scan_secs": 0.2,
    "collect__chunk_bytes": 1024,  # several chunks per file
    "outbox__drain_per_sec": 1000.0,
}


class Receiver:
    """``edge_agent.receive_collected`` in a thread, as the fleet side runs it."""

    def __init__(self, broker: Mosquitto, out: Path) -> None:
        self.out = out
        self.files: list[Received] = []
        self.refused: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=receive_collected, args=(broker.url, out),
            kwargs={"on_file": self.files.append, "on_refused": self.refused.append, "stop": self._stop},
            daemon=True,
        )  # fmt: skip
        self._thread.start()

    def rows(self) -> list[dict[str, Any]]:
        if not self.files:
            return []
        return ds.dataset(self.out, format="parquet", partitioning="hive").to_table().to_pylist()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)


@pytest.fixture
def receiver(broker: Mosquitto, tmp_path: Path) -> Iterator[Receiver]:
    r = Receiver(broker, tmp_path / "fleet-collected")
    wait_for(lambda: "sluice-collect-receiver" in broker.log_path.read_text(), 10, "receiver subscribed")  # fmt: skip
    yield r
    r.close()


def infer(port: int, request_id: str, x: list[float]) -> int:
    body = {"id": request_id, "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": x}]}  # fmt: skip
    return httpx.post(f"http://127.0.0.1:{port}/v2/models/mlp/infer", json=body, timeout=30).status_code  # fmt: skip


def pending_files(agents: Agents, device: str) -> int:
    with sqlite3.connect(agents.tmp_path / "devices" / device / "collect-outbox.db") as db:
        return int(db.execute("SELECT COUNT(*) FROM files").fetchone()[0])


def pending_rows(agents: Agents, device: str) -> int:
    with sqlite3.connect(agents.tmp_path / "devices" / device / "collect-outbox.db") as db:
        return int(db.execute("SELECT COALESCE(SUM(rows), 0) FROM files").fetchone()[0])


def by_id(rows: list[dict[str, Any]], prefix: str) -> dict[str, dict[str, Any]]:
    return {r["request_id"]: r for r in rows if r["request_id"].startswith(prefix)}


def test_collected_records_arrive_at_the_fleet_as_parquet(
    agents: Agents, fleet: Fleet, receiver: Receiver
) -> None:
    fleet.publish("dev-c", doc(1, "models:/mlp/1"))
    agent = agents.start("dev-c", **COLLECT)
    wait_for(lambda: fleet.model("dev-c").get("applied") == 1, what="v1 committed")
    sent = {f"req-{i}": [float(i), i + 0.5, -i, 1.0] for i in range(30)}
    for rid, x in sent.items():
        assert infer(agent.http_port, rid, x) == 200
    wait_for(lambda: len(by_id(receiver.rows(), "req-")) == 30, what="30 records at the fleet")
    rows = by_id(receiver.rows(), "req-")
    for rid, x in sent.items():
        assert rows[rid]["x"] == pytest.approx(x) and rows[rid]["y"] == pytest.approx([2 * v for v in x])  # fmt: skip
        assert (rows[rid]["model"], rows[rid]["version"], rows[rid]["status"]) == ("mlp", 1, "ok")
    assert all(f.device == "dev-c" and f.file.name.startswith("dev-c--part-") for f in receiver.files)  # fmt: skip
    assert receiver.refused == []
    # Acknowledged, so gone from the device: no Parquet left, the outbox empty.
    wait_for(lambda: pending_files(agents, "dev-c") == 0, what="collection outbox drained")
    assert not list((agents.tmp_path / "devices/dev-c/collect").glob("model=*/**/*.parquet"))
    # The fleet runs drift on it: sluice drift reads the receiver's directory as it is.
    baseline = agents.tmp_path / "baseline.npz"
    np.savez(baseline, x=np.array(list(sent.values()), dtype=np.float32))
    report = agents.tmp_path / "report.json"
    out = subprocess.run(
        [sys.executable, "-m", "serving.monitoring", "drift", "--baseline", str(baseline),
         "--current", str(receiver.out), "--model", "mlp", "--out", str(report)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    collected = [r for r in receiver.rows() if r["status"] == "ok"]  # the golden request too
    features = {f["name"]: f for f in json.loads(report.read_text())["features"]}
    assert set(features) == {"x[0]", "x[1]", "x[2]", "x[3]"}
    assert {f["n_current"] for f in features.values()} == {len(collected)}


def test_records_collected_while_the_broker_is_down_arrive_after_it_returns_despite_a_sigkill(
    agents: Agents, fleet: Fleet, broker: Mosquitto, receiver: Receiver
) -> None:
    fleet.publish("dev-o", doc(1, "models:/mlp/1"))
    agent = agents.start("dev-o", **COLLECT)
    wait_for(lambda: fleet.model("dev-o").get("applied") == 1, what="v1 committed")
    wait_for(lambda: receiver.rows(), what="the golden request's record")
    broker.stop()
    sent = {f"off-{i}": [float(i), 2.0, 3.0, 4.0] for i in range(40)}
    for rid, x in sent.items():
        assert infer(agent.http_port, rid, x) == 200
    # Rolled, taken into the outbox, and waiting there: nothing is left as Parquet.
    wait_for(lambda: pending_rows(agents, "dev-o") == 40, what="every record in the collection outbox")  # fmt: skip
    collect = agents.tmp_path / "devices/dev-o/collect"
    assert not list(collect.glob("model=*/**/*.parquet"))
    assert not by_id(receiver.rows(), "off-")
    agent.kill()  # the outbox is on disk: a crash loses none of it

    broker.start()
    agents.start("dev-o", **COLLECT)
    wait_for(lambda: len(by_id(receiver.rows(), "off-")) == 40, what="every record after the outage")  # fmt: skip
    rows = by_id(receiver.rows(), "off-")
    for rid, x in sent.items():
        assert rows[rid]["x"] == pytest.approx(x) and rows[rid]["y"] == pytest.approx([2 * v for v in x])  # fmt: skip
    wait_for(lambda: pending_files(agents, "dev-o") == 0, what="collection outbox drained")
    collect_info = wait_for(lambda: fleet.reported.get("dev-o", {}).get("device_info", {}).get("collect"), what="collect stats reported")  # fmt: skip
    assert collect_info["dropped"] == {"full_oldest": {"files": 0, "rows": 0}, "too_large": {"files": 0, "rows": 0}}  # fmt: skip


def test_the_receiver_refuses_an_altered_chunk_and_names_a_missing_one(
    broker: Mosquitto, tmp_path: Path
) -> None:
    """Through the real broker to ``sluice-edge collect-receive``: one file with a chunk
    altered on the way, one with a chunk that never came, one intact."""
    shipper = CollectShipper(tmp_path / "o.db", tmp_path / "collect", Topics("dev-t"), max_bytes=1 << 20, chunk_bytes=1024)  # fmt: skip
    for segment, rows in (("0001-1", 30), ("0002-1", 31), ("0003-1", 32)):
        parquet(tmp_path / "collect", segment, rows)
    shipper.scan()
    messages = shipper.pending(limit=1000)
    files = sorted({m.id.rsplit("-", 1)[0] for m in messages}, key=lambda d: min(m.row for m in messages if m.id.startswith(d)))  # fmt: skip
    altered, missing, _intact = files
    digest = {decode_chunk(m.payload).file_id: decode_chunk(m.payload).digest for m in messages}
    out = tmp_path / "fleet"
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_agent", "collect-receive", "--broker", broker.url,
         "--out", str(out), "--idle-secs", "3"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_for(lambda: "sluice-collect-receiver" in broker.log_path.read_text(), 10, "receiver subscribed")  # fmt: skip
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-device", clean_session=True)  # fmt: skip
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    for m in messages:
        payload = m.payload
        if m.id == f"{altered}-1":
            payload = payload[:-1] + bytes([payload[-1] ^ 0xFF])
        if m.id == f"{missing}-2":
            continue
        client.publish(m.topic, payload, qos=1).wait_for_publish(10)
    client.disconnect()
    client.loop_stop()
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1, stderr
    count = max(int(m.id.rsplit("-", 1)[1]) for m in messages if m.id.startswith(altered)) + 1
    assert f"refused: dev-t: model=mlp/version=1/date=2026-12-01/part-0001-1.parquet (sha256 {digest[altered][:12]}) chunk 2/{count}" in stderr  # fmt: skip
    assert "altered on the way" in stderr
    assert f"part-0001-1.parquet (sha256 {digest[altered][:12]}) is incomplete: chunk(s) 2 of {count} missing" in stderr  # fmt: skip
    assert (
        f"part-0002-1.parquet (sha256 {digest[missing][:12]}) is incomplete: chunk(s) 3 of"
        in stderr
    )
    written = sorted(p.name for p in out.glob("model=*/**/*.parquet"))
    assert written == ["dev-t--part-0003-1.parquet"]
    assert "dev-t model=mlp/version=1/date=2026-12-01/part-0003-1.parquet: 32 rows" in stdout
    assert len(ds.dataset(out, format="parquet", partitioning="hive").to_table()) == 32


def test_over_its_cap_the_outbox_drops_the_oldest_files_and_the_fleet_hears_how_many_rows(
    agents: Agents, fleet: Fleet, broker: Mosquitto, receiver: Receiver
) -> None:
    fleet.publish("dev-p", doc(1, "models:/mlp/1"))
    agent = agents.start("dev-p", **(COLLECT | {"collect__max_bytes": 12_000}))
    wait_for(lambda: fleet.model("dev-p").get("applied") == 1, what="v1 committed")
    wait_for(lambda: receiver.rows(), what="the golden request's record")
    before = len(receiver.rows())
    broker.stop()
    sent = 0
    for burst in range(6):  # a file or more per burst, each taken in before the next burst
        for i in range(20):
            assert infer(agent.http_port, f"cap-{burst}-{i}", [float(i), 1.0, 2.0, float(burst)]) == 200  # fmt: skip
        sent += 20
        wait_for(lambda n=sent: dropped_rows(agents, "dev-p") + pending_rows(agents, "dev-p") == n, what="every record rolled")  # fmt: skip
    lost = dropped_rows(agents, "dev-p")
    assert lost > 0 and pending_rows(agents, "dev-p") > 0

    broker.start()
    wait_for(lambda: pending_files(agents, "dev-p") == 0, what="collection outbox drained")
    wait_for(lambda: len(receiver.rows()) == before + sent - lost, what="what was kept, at the fleet")  # fmt: skip
    order = [f"cap-{burst}-{i}" for burst in range(6) for i in range(20)]
    got = {r["request_id"] for r in receiver.rows() if r["request_id"].startswith("cap-")}
    assert got == set(order[lost:])  # the oldest went, the newest were kept
    events = wait_for(lambda: [e for e in fleet.events if e.get("device") == "dev-p" and e["kind"] == "collect_dropped"], what="collect_dropped events")  # fmt: skip
    wait_for(lambda: sum(e["rows"] for e in fleet.events if e.get("device") == "dev-p" and e["kind"] == "collect_dropped") == lost, what="every drop told")  # fmt: skip
    assert {e["reason"] for e in events} == {"full_oldest"}
    reported = wait_for(lambda: fleet.reported.get("dev-p", {}).get("device_info", {}).get("collect"), what="collect stats")  # fmt: skip
    assert reported["dropped"]["full_oldest"]["rows"] == lost


def dropped_rows(agents: Agents, device: str) -> int:
    with sqlite3.connect(agents.tmp_path / "devices" / device / "collect-outbox.db") as db:
        return int(db.execute("SELECT COALESCE(SUM(rows), 0) FROM drops").fetchone()[0])
