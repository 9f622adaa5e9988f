"""Twenty agents on one broker, half of them offline while the fleet publishes.

The agents run with ``serve.enabled = false`` (download, verify, commit, report; no
serving core): twenty ONNX Runtime servers would not fit the 2-core CI machine, and
serving is covered by the other edge tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.integration.edge.conftest import Agents, Fleet, wait_for


def sluice_edge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge_agent", *args], capture_output=True, text=True, timeout=60
    )


def test_twenty_agents_half_offline_all_converge(agents: Agents, fleet: Fleet, tmp_path: Path) -> None:  # fmt: skip
    devices = [f"dev-{i:02d}" for i in range(20)]
    for device in devices[:10]:
        agents.start(device, serve__enabled=False)
    desired = tmp_path / "desired.json"
    desired.write_text(json.dumps({"version": 1, "models": {"mlp": {"ref": "models:/mlp/2"}}}))
    device_args = [a for d in devices for a in ("--device", d)]
    published = sluice_edge("publish", "--broker", agents.broker.url, *device_args, str(desired))
    assert published.returncode == 0, published.stderr
    assert "published desired version 1" in published.stdout

    wait_for(lambda: all(fleet.model(d).get("applied") == 2 for d in devices[:10]), timeout=60, what="online half")  # fmt: skip
    for device in devices[10:]:  # offline until now: they find the retained document
        agents.start(device, serve__enabled=False)
    wait_for(lambda: all(fleet.model(d).get("applied") == 2 for d in devices), timeout=60, what="all")  # fmt: skip

    status = sluice_edge("status", "--broker", agents.broker.url)
    assert status.returncode == 0, status.stderr
    lines = [line for line in status.stdout.splitlines() if line.startswith("dev-")]
    assert len(lines) == 20
    assert all(line.split()[1:5] == ["online", "mlp", "2", "committed"] for line in lines), status.stdout  # fmt: skip

    agents.started[0].stop()  # a clean stop says offline; a vanished device's will says so too
    one = sluice_edge("status", "--broker", agents.broker.url, "--device", devices[0], "--json")
    assert json.loads(one.stdout)[devices[0]]["status"] == "offline"


def test_publish_refuses_a_malformed_document(agents: Agents, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"version": 1, "models": {"mlp": {"ref": "mlp"}}}))
    result = sluice_edge("publish", "--broker", agents.broker.url, "--device", "d", str(bad))
    assert result.returncode == 1 and "models.mlp.ref" in result.stderr
