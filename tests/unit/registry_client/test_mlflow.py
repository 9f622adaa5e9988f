"""The MLflow REST client against a scripted server: error mapping and source forms."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from registry_client import (
    MANIFEST_NAME,
    MlflowRegistry,
    NotFound,
    UnsupportedSource,
    parse_reference,
)
from registry_client._manifest import build_manifest
from registry_client._version import FileEntry
from tests.unit.registry_client.conftest import sha

_VERSION = {"name": "m", "version": "4", "source": "runs:/r1/model", "run_id": "r1",
            "creation_timestamp": 1700000000000, "tags": [{"key": "stage", "value": "prod"}],
            "aliases": ["champion"]}  # fmt: skip


def _handler(download_uri: str, with_manifest: bool = False) -> Any:
    manifest = build_manifest([FileEntry("model.onnx", 5, sha(b"graph"))])

    def handle(request: httpx.Request) -> httpx.Response:
        path, q = request.url.path, request.url.params
        if path.endswith("/registered-models/alias"):
            if q["alias"] == "champion":
                return httpx.Response(200, json={"model_version": _VERSION})
            return httpx.Response(400, json={"error_code": "INVALID_PARAMETER_VALUE",
                                             "message": f"Registered model alias {q['alias']} not found."})  # fmt: skip
        if path.endswith("/registered-models/get"):
            return httpx.Response(200, json={"registered_model": {"name": "m"}})
        if path.endswith("/get-download-uri"):
            return httpx.Response(200, json={"artifact_uri": download_uri})
        if path.endswith("/runs/get"):
            return httpx.Response(200, json={"run": {
                "info": {"artifact_uri": "mlflow-artifacts:/0/r1/artifacts"},
                "data": {"tags": [{"key": "mlflow.source.git.commit", "value": "abc"}]},
                "inputs": {"dataset_inputs": [{"dataset": {"name": "imgs", "digest": "d1"}}]}}})  # fmt: skip
        if path.endswith("/logged-models/m-1"):
            return httpx.Response(200, json={"model": {"info": {"artifact_uri": "mlflow-artifacts:/0/models/m-1/artifacts"}}})  # fmt: skip
        if path == "/api/2.0/mlflow-artifacts/artifacts":
            files = [{"path": "model.onnx", "is_dir": False, "file_size": 5}]
            if with_manifest:
                files.append({"path": MANIFEST_NAME, "is_dir": False, "file_size": len(manifest)})
            return httpx.Response(200, json={"files": files})
        if path.endswith(MANIFEST_NAME):
            return httpx.Response(200, content=manifest)
        return httpx.Response(404, json={"error_code": "RESOURCE_DOES_NOT_EXIST", "message": path})

    return handle


def _resolve(ref: str, download_uri: str, **kw: Any) -> Any:
    async def run() -> Any:
        transport = httpx.MockTransport(_handler(download_uri, **kw))
        async with MlflowRegistry("http://mlflow.test", transport=transport) as registry:
            return await registry.resolve(parse_reference(ref))

    return asyncio.run(run())


@pytest.mark.parametrize(
    ("uri", "root"),
    [("runs:/r1/model", "0/r1/artifacts/model"), ("models:/m-1", "0/models/m-1/artifacts"),
     ("mlflow-artifacts:/0/x/model", "0/x/model"), ("mlflow-artifacts://host:5000/0/x", "0/x")],
)  # fmt: skip
def test_every_source_form_resolves_to_the_artifact_proxy(uri: str, root: str) -> None:
    version = _resolve("models:/m@champion", uri)
    assert version.version == 4
    assert (
        version.files[0].source
        == f"http://mlflow.test/api/2.0/mlflow-artifacts/artifacts/{root}/model.onnx"
    )
    assert version.lineage.git_commit == "abc" and version.lineage.dataset == "imgs@d1"
    assert version.lineage.tags == {"stage": "prod"} and version.digest_source == "none"


def test_a_missing_alias_is_not_found() -> None:
    with pytest.raises(NotFound, match="no alias 'gone'"):
        _resolve("models:/m@gone", "runs:/r1/model")


def test_a_manifest_supplies_digests_and_is_not_installed() -> None:
    version = _resolve("models:/m@champion", "runs:/r1/model", with_manifest=True)
    assert [(f.path, f.digest) for f in version.files] == [("model.onnx", sha(b"graph"))]
    assert version.digest_source == "manifest"


def test_an_unproxied_store_is_unsupported() -> None:
    with pytest.raises(UnsupportedSource, match="--serve-artifacts"):
        _resolve("models:/m@champion", "s3://bucket/model")


def test_closed_client_says_so() -> None:
    async def run() -> None:
        registry = MlflowRegistry(
            "http://mlflow.test", transport=httpx.MockTransport(_handler("x"))
        )
        await registry.aclose()
        await registry.resolve(parse_reference("models:/m/1"))

    with pytest.raises(Exception, match="closed"):
        asyncio.run(run())
    json.dumps({})
