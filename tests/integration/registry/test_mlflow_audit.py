"""The audit trail of an MLflow registry, kept in the MLflow server (experiment
``sluice-audit``): the registry verbs and a follower write it through a real MLflow
server, ``sluice registry history NAME --verify`` reads and checks it, tampering through
MLflow's own API is named, and concurrent writers do not fork the chain.

One MLflow server for the module (its trail grows test by test; each test looks at its
own model's records and at the whole chain)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from registry_client import AUDIT_EXPERIMENT, Follower, MlflowRegistry
from registry_client._audit import _digest
from serving.cli import main
from serving.examples import build_identity
from serving.manager import ModelManager
from tests.integration.registry.conftest import VENV, MlflowServer
from tests.unit.registry_client.test_follow import NAME, _run

pytestmark = pytest.mark.integration

API = "/api/2.0/mlflow"


@pytest.fixture(scope="module")
def mlflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    if not (VENV / "bin" / "mlflow").exists():
        pytest.skip(f"MLflow is not installed in {VENV}: run `bash scripts/setup_mlflow.sh`")
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-audit"))
    yield server
    server.stop()


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "files" / "model.onnx"
    path.parent.mkdir()
    path.write_bytes(build_identity("FP32"))
    return path


def _sluice(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as exited:
        main(argv)
        raise SystemExit(0)
    return int(exited.value.code or 0)


def _history(
    mlflow: MlflowServer, name: str, capsys: pytest.CaptureFixture[str]
) -> tuple[int, list[str], str]:
    capsys.readouterr()
    code = _sluice(["registry", "history", name, "--registry", mlflow.uri, "--verify"])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


def _api(mlflow: MlflowServer, method: str, endpoint: str, body: dict[str, Any]) -> Any:
    response = httpx.request(method, f"{mlflow.url}{API}/{endpoint}", json=body, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def _records(mlflow: MlflowServer) -> list[dict[str, Any]]:
    """The record experiments, by seq."""
    return _api(mlflow, "POST", "experiments/search", {
        "filter": f"name LIKE '{AUDIT_EXPERIMENT}/%'", "view_type": "ALL",
        "max_results": 1000, "order_by": ["name ASC"],
    }).get("experiments", [])  # fmt: skip


def _tags(experiment: dict[str, Any]) -> dict[str, str]:
    return {t["key"]: t["value"] for t in experiment.get("tags", [])}


def test_registry_verbs_on_mlflow_are_audited(
    mlflow: MlflowServer,
    model_file: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reg = ["--registry", mlflow.uri]
    monkeypatch.setenv("SLUICE_USER", "ci-bot")
    assert _sluice(["registry", "register", "fraud", str(model_file), *reg,
                    "--user", "ana", "-m", "retrained on May data"]) == 0  # fmt: skip
    assert _sluice(["registry", "register", "fraud", str(model_file), *reg, "--alias", "staging"]) == 0  # fmt: skip
    assert _sluice(["registry", "alias", "fraud", "prod", "1", *reg, "-m", "go"]) == 0
    assert _sluice(["registry", "alias", "fraud", "prod", "2", *reg]) == 0
    assert _sluice(["registry", "tag", "fraud", "2", "stage=prod", "team=risk", *reg]) == 0
    assert _sluice(["registry", "tag", "fraud", "2", "--remove", "team", *reg]) == 0
    assert _sluice(["registry", "alias", "fraud", "staging", "--delete", *reg]) == 0
    assert _sluice(["registry", "delete", "fraud", "1", *reg, "--user", "bo", "-m", "bad"]) == 0
    assert _sluice(["registry", "register", "churn", str(model_file), *reg]) == 0

    # The changes themselves reached MLflow.
    version = httpx.get(f"{mlflow.url}{API}/model-versions/get",
                        params={"name": "fraud", "version": "2"}).json()["model_version"]  # fmt: skip
    assert {t["key"]: t["value"] for t in version["tags"]}.get("stage") == "prod"
    assert "team" not in {t["key"] for t in version["tags"]}
    assert version["aliases"] == ["prod"]
    gone = httpx.get(
        f"{mlflow.url}{API}/model-versions/get", params={"name": "fraud", "version": "1"}
    )
    assert gone.status_code == 404

    code, out, err = _history(mlflow, "fraud", capsys)
    assert code == 0, err
    assert out[0] == (f"audit log {mlflow.url} experiments '{AUDIT_EXPERIMENT}/*': "
                      "9 record(s), the chain is intact")  # fmt: skip
    rows = [line.split() for line in out[1:]]
    assert [(r[0], r[2], r[3], r[4]) for r in rows] == [
        ("1", "ana", "register", "fraud:1"), ("2", "ci-bot", "register", "fraud:2"),
        ("3", "ci-bot", "alias", "fraud@prod"), ("4", "ci-bot", "alias", "fraud@prod"),
        ("5", "ci-bot", "tag", "fraud:2"), ("6", "ci-bot", "tag", "fraud:2"),
        ("7", "ci-bot", "alias", "fraud@staging"), ("8", "bo", "delete", "fraud:1"),
    ]  # fmt: skip
    assert '"retrained on May data"' in out[1]
    assert '"previous": 1' in out[4] and '"version": 2' in out[4]
    assert '"removed": ["team"]' in out[6]
    assert '"previous": 2' in out[7] and '"version": null' in out[7]
    assert '"bad"' in out[8] and '"aliases_removed": []' in out[8]
    # Everyone using the server reads the same trail: it lives in MLflow.
    records = _records(mlflow)
    assert [r["name"] for r in records] == [f"{AUDIT_EXPERIMENT}/{n:012d}" for n in range(1, 10)]
    assert _tags(records[-1])["sluice.audit.subject"] == "churn:1"


def test_a_follower_of_an_mlflow_alias_records_deploy_and_undeploy(
    mlflow: MlflowServer, tmp_path: Path, model_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reg = ["--registry", mlflow.uri]
    assert _sluice(["registry", "register", NAME, str(model_file), *reg, "--alias", "champion"]) == 0  # fmt: skip
    assert _sluice(["registry", "register", NAME, str(model_file), *reg]) == 0
    repo = tmp_path / "repo"
    repo.mkdir()

    async def scenario(m: ModelManager, f: Follower) -> None:
        assert m.ready_versions(NAME) == ["1"]
        async with MlflowRegistry(mlflow.url) as client:
            await client.set_alias(NAME, "champion", 2)
        assert await f.sync()
        assert m.ready_versions(NAME) == ["2"]
        assert await f.sync()  # nothing moved: nothing recorded

    _run(repo, mlflow.uri, scenario)
    code, out, err = _history(mlflow, NAME, capsys)
    assert code == 0, err
    rows = [line.split() for line in out[1:]]
    assert [(r[2], r[3], r[4]) for r in rows if r[2] == "unit-test"] == [
        ("unit-test", "deploy", f"{NAME}:1"),
        ("unit-test", "deploy", f"{NAME}:2"),
        ("unit-test", "undeploy", f"{NAME}:2"),
    ]
    deploy_2 = next(line for line in out if f"deploy    {NAME}:2" in line)
    assert '"was": [1]' in deploy_2 and f'"model_repository": "{repo}"' in deploy_2


def test_concurrent_writers_do_not_fork_the_chain(mlflow: MlflowServer) -> None:
    writers, each = 4, 4

    async def write(writer: int) -> None:
        async with MlflowRegistry(mlflow.url) as registry:  # one client (connection) each
            for i in range(each):
                await registry.audit.append("tag", f"race:{writer}", user=f"w{writer}",
                                            details={"i": i})  # fmt: skip

    async def run_all() -> tuple[int, list[dict[str, Any]]]:
        await asyncio.gather(*(write(w) for w in range(writers)))
        async with MlflowRegistry(mlflow.url) as registry:
            return await registry.audit.verify(), await registry.audit.records()

    count, records = asyncio.run(run_all())
    assert [r["seq"] for r in records] == list(range(1, count + 1))
    raced = [r for r in records if r["subject"].startswith("race:")]
    assert sorted((r["user"], r["details"]["i"]) for r in raced) == sorted(
        (f"w{w}", i) for w in range(writers) for i in range(each)
    )
    for w in range(writers):  # each writer's records in its own order
        assert [r["details"]["i"] for r in raced if r["user"] == f"w{w}"] == list(range(each))


def test_verify_names_a_record_tampered_with_through_mlflow(
    mlflow: MlflowServer, model_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for _ in range(3):
        assert _sluice(["registry", "register", "audited", str(model_file),
                        "--registry", mlflow.uri]) == 0  # fmt: skip
    code, _, err = _history(mlflow, "audited", capsys)
    assert code == 0, err
    middle, last = _records(mlflow)[-2:]
    seq = int(middle["name"].rsplit("/", 1)[1])

    def change(experiment: dict[str, Any], action: str, **body: str) -> None:
        _api(mlflow, "POST", f"experiments/{action}", {"experiment_id": experiment["experiment_id"], **body})  # fmt: skip

    # An edited record: another user written into its JSON, its hash left alone.
    original = _tags(middle)["sluice.audit.record.0"]
    change(middle, "set-experiment-tag", key="sluice.audit.record.0",
           value=original.replace('"user": "', '"user": "x'))  # fmt: skip
    code, _, err = _history(mlflow, "audited", capsys)
    assert code == 1
    assert f"experiment '{middle['name']}' (seq {seq})" in err and "edited" in err
    change(middle, "set-experiment-tag", key="sluice.audit.record.0", value=original)
    assert _history(mlflow, "audited", capsys)[0] == 0

    # A deleted record in the middle is named.
    change(middle, "delete")
    code, _, err = _history(mlflow, "audited", capsys)
    assert code == 1
    assert f"experiment '{middle['name']}' (seq {seq}): the record was deleted" in err
    change(middle, "restore")

    # A record renamed away leaves a gap: the next one names it.
    change(middle, "update", new_name=f"{AUDIT_EXPERIMENT}-moved")
    code, _, err = _history(mlflow, "audited", capsys)
    assert code == 1
    assert f"experiment '{last['name']}' (seq {seq + 1})" in err and f"seq {seq} is missing" in err
    change(middle, "update", new_name=middle["name"])

    # A forged record appended with a fresh hash, but not after the last record.
    forged = json.loads(_tags(last)["sluice.audit.record.0"])
    forged.update(seq=seq + 2, user="mallory", prev=forged["prev"])
    forged["hash"] = _digest(forged)
    _api(mlflow, "POST", "experiments/create", {
        "name": f"{AUDIT_EXPERIMENT}/{seq + 2:012d}",
        "tags": [{"key": "sluice.audit.parts", "value": "1"},
                 {"key": "sluice.audit.record.0", "value": json.dumps(forged)},
                 {"key": "sluice.audit.hash", "value": forged["hash"]},
                 {"key": "sluice.audit.prev", "value": forged["prev"]}],
    })  # fmt: skip
    code, _, err = _history(mlflow, "audited", capsys)
    assert code == 1
    assert f"experiment '{AUDIT_EXPERIMENT}/{seq + 2:012d}' (seq {seq + 2})" in err
    assert "removed, inserted or reordered" in err
