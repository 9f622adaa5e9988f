"""A pull from MLflow cut by a dropped connection resumes where it stopped."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry_client import LocalRegistry
from tests.integration.edge.conftest import Agents, Fleet, MlflowServer, scale_model, wait_for
from tests.integration.edge.test_rollout import answer
from tests.integration.registry.fault_proxy import FaultProxy


@pytest.fixture
def proxy(mlflow_server: MlflowServer, tmp_path: Path) -> Iterator[FaultProxy]:
    """MLflow holding ``edgemlp@champion`` (y = 2x), behind a proxy that cuts downloads."""
    local = LocalRegistry(tmp_path / "push")
    model = scale_model(tmp_path / "model.onnx", 2.0)
    local.register("edgemlp", [model], aliases=["champion"])
    out = subprocess.run(
        [sys.executable, "-m", "serving", "registry", "push", "models:/edgemlp@champion",
         "--registry", str(local.root), "--to", mlflow_server.uri, "--alias", "champion"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    p = FaultProxy(mlflow_server.url)
    yield p
    p.close()


def test_a_pull_cut_mid_file_resumes_and_the_alias_is_pinned(agents: Agents, fleet: Fleet, proxy: FaultProxy) -> None:  # fmt: skip
    proxy.set("drop", times=1)  # the first download of the model file stops half way
    fleet.publish("dev-r", {"version": 1, "models": {"mlp": {"ref": "models:/edgemlp@champion"}}})
    agent = agents.start("dev-r", registry=proxy.uri)
    wait_for(lambda: fleet.model("dev-r").get("state") == "committed", timeout=60, what="committed")
    model = fleet.model("dev-r")
    version = model["applied"]
    assert isinstance(version, int) and model["desired_ref"] == "models:/edgemlp@champion"
    assert answer(agent.http_port) == (200, str(version), [2.0] * 4)
    resumed = proxy.range_headers  # the second request asks for the rest, not from byte 0
    assert resumed and resumed[0].startswith("bytes=") and resumed[0] != "bytes=0-", resumed
