"""``sluice profile REF`` and ``--registry``: a model from a local registry, profiled on a real
server, and the recommendation recorded as tags on the version that was profiled."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from registry_client import LocalRegistry
from serving.examples import write_repository

pytestmark = pytest.mark.integration

SWEEP = ["--max-batch-sizes", "8", "--queue-delays-us", "0", "--concurrency", "1",
         "--duration", "0.4s", "--warmup", "0.1s", "--slo-p99-ms", "500"]  # fmt: skip


@pytest.fixture
def registry(tmp_path: Path) -> LocalRegistry:
    write_repository(tmp_path / "src", ["mlp"])
    mlp = tmp_path / "src" / "mlp"
    reg = LocalRegistry(tmp_path / "registry")
    reg.register("mlp", [mlp / "1" / "model.onnx", mlp / "config.pbtxt"], aliases=["champion"])
    reg.register("mlp", [mlp / "1" / "model.onnx", mlp / "config.pbtxt"])
    return reg


def sluice(tmp_path: Path, *args: str | Path, env: dict[str, str] | None = None) -> Any:
    scratch = tmp_path / "tmp"  # the temporary repository a reference is pulled into
    scratch.mkdir(exist_ok=True)
    environment = {**os.environ, "TMPDIR": str(scratch), **(env or {})}
    if not env:
        environment.pop("SLUICE_REGISTRY", None)
    return subprocess.run(
        [sys.executable, "-m", "serving", *map(str, args)],
        capture_output=True, text=True, timeout=300, env=environment,
    )  # fmt: skip


def profile_tags(registry: LocalRegistry, version: int) -> dict[str, str]:
    tags = registry.get_version("mlp", version).lineage.tags
    return {k: v for k, v in tags.items() if k.startswith("sluice.profile.")}


def test_a_reference_is_pulled_profiled_and_its_version_tagged(
    registry: LocalRegistry, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    done = sluice(tmp_path, "profile", "mlp@champion", "--registry", registry.root, *SWEEP,
                  "--out", out)  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "profile.json").read_text())
    assert report["pulled"] == {"registry": registry.uri, "name": "mlp", "version": 1}
    assert report["reference"] == "mlp@champion" and report["model_dir"] is None
    rec = report["recommendation"]
    best = report["points"][rec["point"]]
    tags = profile_tags(registry, 1)
    assert tags == report["registry_tags"]["tags"]
    assert tags["sluice.profile.configuration"] == "i1-b8-d0"
    assert tags["sluice.profile.load"] == "c1"
    assert tags["sluice.profile.throughput"] == f"{best['throughput']:.1f}"
    assert tags["sluice.profile.p99_ms"] == f"{best['latency_ms']['p99']:.3f}"
    assert tags["sluice.profile.slo_p99_ms"] == "500"
    assert tags["sluice.profile.rerun_slo_held"] == str(report["rerun_slo_held"]).lower()
    assert tags["sluice.profile.cpu_request"] == f"{rec['cpu_request_cores']:g}"
    assert tags["sluice.profile.memory_request"] == rec["memory_request"]
    assert profile_tags(registry, 2) == {}  # only the version profiled
    assert "tagged mlp version 1 in " in done.stdout
    assert list((tmp_path / "tmp").glob("sluice-profile-*")) == []  # the pulled repo is gone


def test_a_reference_without_registry_is_pulled_from_the_default_and_tags_nothing(
    registry: LocalRegistry, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    done = sluice(tmp_path, "profile", "mlp", *SWEEP, "--out", out,
                  env={"SLUICE_REGISTRY": str(registry.root)})  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "profile.json").read_text())
    assert report["pulled"]["version"] == 2  # the latest
    assert "registry_tags" not in report
    assert profile_tags(registry, 1) == profile_tags(registry, 2) == {}


def test_a_pulled_directory_is_tagged_by_its_lineage_and_another_is_refused(
    registry: LocalRegistry, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    pulled = sluice(tmp_path, "pull", "models:/mlp/2", "--model-repository", repo,
                    "--registry", registry.root, "--progress", "none")  # fmt: skip
    assert pulled.returncode == 0, pulled.stderr
    done = sluice(tmp_path, "profile", repo / "mlp", "--registry", registry.root, *SWEEP,
                  "--out", tmp_path / "out")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert profile_tags(registry, 2)["sluice.profile.configuration"] == "i1-b8-d0"
    assert profile_tags(registry, 1) == {}
    write_repository(tmp_path / "local", ["mlp"])
    refused = sluice(tmp_path, "profile", tmp_path / "local" / "mlp", "--registry",
                     registry.root, *SWEEP, "--out", tmp_path / "out2")  # fmt: skip
    assert refused.returncode == 1
    assert refused.stderr == (
        f"sluice: error: {tmp_path / 'local' / 'mlp'} was not pulled from a registry (no "
        "lineage.json in its newest version): profile its registry reference instead\n"
    )
    assert not (tmp_path / "out2").exists()


def test_a_bad_reference_is_one_line(tmp_path: Path) -> None:
    done = sluice(tmp_path, "profile", "mlp/not-a-version", *SWEEP, "--out", tmp_path / "o")
    assert done.returncode == 1
    assert done.stderr.startswith(
        "sluice: error: mlp/not-a-version is neither a model directory nor a registry reference"
    )
    assert done.stderr.count("\n") == 1
