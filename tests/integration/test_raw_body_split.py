"""A raw body over real HTTP is shaped by the version a traffic split sends it to.

Version 2 of a model, with a narrower input, is added while version 1 serves; a split
then sends every request to version 1. A raw body (``Inference-Header-Content-Length: 0``)
of version 1's width must be answered by version 1, not refused with version 2's shape.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from tests.integration.server_process import ServerProcess
from tests.unit.serving.http.test_raw_body_routing import MODEL, _add_version

pytestmark = pytest.mark.integration

_RAW = {"Inference-Header-Content-Length": "0", "Content-Type": "application/octet-stream"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = tmp_path_factory.mktemp("raw-split-repository")
    _add_version(repo, 1)
    (repo / MODEL / "config.pbtxt").write_text("version_policy: { all: {} }\n")
    proc = ServerProcess(
        repo,
        "--model-control-mode",
        "explicit",
        "--load-model",
        MODEL,
        log_dir=tmp_path_factory.mktemp("logs"),
    )
    try:
        with httpx.Client(base_url=proc.http_url, timeout=30) as client:
            _add_version(repo, 2)
            loaded = client.post(f"/v2/repository/models/{MODEL}/load")
            assert loaded.status_code == 200, loaded.text
        yield proc
    finally:
        proc.stop()


def _raw_infer(client: httpx.Client, values: list[float]) -> httpx.Response:
    body = np.array(values, dtype=np.float32).tobytes()
    return client.post(f"/v2/models/{MODEL}/infer", content=body, headers=_RAW)


@pytest.mark.parametrize(("version", "values"), [("1", [0.5, 1.5, 2.5, 3.5]), ("2", [4.0, 5.0])])
def test_the_split_s_version_shapes_a_raw_body(
    server: ServerProcess, version: str, values: list[float]
) -> None:
    with httpx.Client(base_url=server.http_url, timeout=30) as client:
        split = client.post(f"/v2/models/{MODEL}/traffic", json={"traffic": {version: 100}})
        assert split.status_code == 200, split.text
        response = _raw_infer(client, values)
        assert response.status_code == 200, response.text
        length = int(response.headers["Inference-Header-Content-Length"])
        header = json.loads(response.content[:length])
        assert header["model_version"] == version
        assert header["outputs"][0]["shape"] == [1, len(values)]
        data = np.frombuffer(response.content[length:], dtype=np.float32)
        assert data.tolist() == values
