"""Pulls from a real MLflow server, models registered through MLflow's own client."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from registry_client import LocalRegistry, NotFound, Puller, open_registry
from serving.examples import build_simple
from tests.integration.registry.conftest import MlflowServer

pytestmark = pytest.mark.integration


@pytest.fixture
def onnx_file(tmp_path: Path) -> Path:
    path = tmp_path / "model.onnx"
    path.write_bytes(build_simple())
    return path


def _pull(uri: str, repo: Path, ref: str):  # type: ignore[no-untyped-def]
    async def run():  # type: ignore[no-untyped-def]
        async with open_registry(uri) as registry:
            return await Puller(registry, repo).pull(ref)

    return asyncio.run(run())


def _sluice(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "serving", *args], capture_output=True, text=True)


def test_pull_a_run_artifact_version_by_alias(
    mlflow_server: MlflowServer, onnx_file: Path, tmp_path: Path
) -> None:
    version = mlflow_server.register("run", "runmodel", str(onnx_file), "--alias", "champion",
                                     "--git-commit", "abc123")  # fmt: skip
    result = _pull(mlflow_server.uri, tmp_path, "models:/runmodel@champion")
    assert result.path == tmp_path / "runmodel" / str(version)
    assert (result.path / "model.onnx").read_bytes() == onnx_file.read_bytes()
    lineage = json.loads((result.path / "lineage.json").read_text())
    assert lineage["lineage"]["git_commit"] == "abc123"
    assert lineage["lineage"]["source"].startswith("runs:/")
    assert lineage["digest_source"] == "first-pull"


def test_pull_an_mlflow3_logged_model_by_latest(
    mlflow_server: MlflowServer, onnx_file: Path, tmp_path: Path
) -> None:
    mlflow_server.register("logged", "logged", str(onnx_file))
    second = mlflow_server.register("logged", "logged", str(onnx_file))
    result = _pull(mlflow_server.uri, tmp_path, "models:/logged@latest")
    assert result.version.version == second
    assert result.version.lineage.source.startswith("models:/m-")
    assert (result.path / "model.onnx").read_bytes() == onnx_file.read_bytes()


def test_a_missing_alias_is_not_found_with_its_exit_code(
    mlflow_server: MlflowServer, onnx_file: Path, tmp_path: Path
) -> None:
    mlflow_server.register("run", "aliasless", str(onnx_file))
    repo = tmp_path / "repo"
    repo.mkdir()
    with pytest.raises(NotFound, match="no alias 'champion'"):
        _pull(mlflow_server.uri, repo, "models:/aliasless@champion")
    out = _sluice("pull", "models:/aliasless@champion", "--registry", mlflow_server.uri,
                  "--model-repository", str(repo))  # fmt: skip
    assert out.returncode == 3, out.stderr
    assert "no alias 'champion'" in out.stderr
    assert [p.name for p in repo.iterdir() if not p.name.startswith(".")] == []


def test_push_writes_a_manifest_that_pulls_verify(
    mlflow_server: MlflowServer, onnx_file: Path, tmp_path: Path
) -> None:
    local = LocalRegistry(tmp_path / "reg")
    local.register("pushed", [onnx_file], git_commit="feed", aliases=["champion"])
    out = _sluice("registry", "push", "models:/pushed@champion", "--registry", str(local.root),
                  "--to", mlflow_server.uri, "--alias", "champion")  # fmt: skip
    assert out.returncode == 0, out.stderr
    repo = tmp_path / "repo"
    repo.mkdir()
    out = _sluice("pull", "models:/pushed@champion", "--registry", mlflow_server.uri,
                  "--model-repository", str(repo))  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "model.onnx" in out.stdout and "sluice-manifest.json" in out.stdout
    installed = sorted(p.name for p in (repo / "pushed" / "1").iterdir())
    assert installed == ["lineage.json", "model.onnx"]
    lineage = json.loads((repo / "pushed" / "1" / "lineage.json").read_text())
    assert lineage["digest_source"] == "manifest"
    assert lineage["lineage"]["git_commit"] == "feed"
