"""Traffic splits with the real server: weights, sticky keys, shadows, the admin surface."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from serving.examples import write_repository
from serving.grpc import sluice_admin_pb2 as admin_pb
from serving.grpc import sluice_admin_pb2_grpc as admin_grpc
from tests.integration.server_process import ServerProcess

pytestmark = pytest.mark.integration

MODEL = "identity_fp32"
_PATIENCE_SECS = 30  # a safety net for the shadows to finish, not a timing assertion
_CONFIG = """\
version_policy: { all: {} }
parameters [
  { key: "sluice.traffic" value: { string_value: "1:80,2:20" } },
  { key: "sluice.shadow" value: { string_value: "3:100" } },
  { key: "sluice.sticky" value: { string_value: "header:x-user-id" } }
]
"""
_BODY = {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 2], "data": [1.5, 2.5]}]}


@pytest.fixture(scope="module")
def split_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = tmp_path_factory.mktemp("traffic-repository")
    write_repository(repo, [MODEL])
    (repo / MODEL / "config.pbtxt").write_text(_CONFIG)
    for version in (2, 3):
        (repo / MODEL / str(version)).mkdir()
        shutil.copy(repo / MODEL / "1" / "model.onnx", repo / MODEL / str(version))
    proc = ServerProcess(repo, log_dir=tmp_path_factory.mktemp("logs"))
    yield proc
    proc.stop()


def _infer(client: httpx.Client, user: str | None = None, version: str = "") -> str:
    path = f"/v2/models/{MODEL}" + (f"/versions/{version}" if version else "") + "/infer"
    headers = {"x-user-id": user} if user is not None else {}
    response = client.post(path, json=_BODY, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["data"] == [1.5, 2.5]
    return str(response.json()["model_version"])


def _show(client: httpx.Client) -> dict:
    response = client.get(f"/v2/models/{MODEL}/traffic")
    assert response.status_code == 200, response.text
    return response.json()


def _shadows_done(client: httpx.Client) -> dict:
    deadline = time.monotonic() + _PATIENCE_SECS
    while True:
        shadow = _show(client)["arms"]["shadow"].get("3", {})
        if shadow.get("compared", 0) + shadow.get("errors", 0) >= shadow.get("sent", 0):
            return shadow
        assert time.monotonic() < deadline, shadow
        time.sleep(0.05)


def test_an_80_20_split_sticky_keys_and_shadows_never_answer(split_server: ServerProcess) -> None:
    rng = random.Random(20240601)
    users = [f"user-{rng.getrandbits(64):016x}" for _ in range(2000)]
    with httpx.Client(base_url=split_server.http_url, timeout=30) as client:
        served = {user: _infer(client, user) for user in users}
        counts = Counter(served.values())
        # binomial(2000, 0.8): sd 17.9; 4.5 sd either side. Version 3 is a shadow only.
        assert set(counts) == {"1", "2"}
        assert abs(counts["1"] - 1600) <= 80
        for user in users[:100]:  # sticky: the same user, the same version
            assert _infer(client, user) == served[user]
        assert _infer(client, users[0], version="3") == "3"  # a named version is served
        shadow = _shadows_done(client)
        shown = _show(client)
    assert shown["source"] == "config"
    assert shown["split"] == {
        "traffic": {"1": 80, "2": 20},
        "shadow": {"3": 100},
        "sticky": "header:x-user-id",
    }
    primary = shown["arms"]["primary"]
    assert primary["1"]["requests"] + primary["2"]["requests"] == 2100
    assert primary["3"]["requests"] == 1  # the request that named it
    # every split request was copied to 3 (or dropped when it fell behind), all agreeing
    assert shadow["sent"] + shadow["dropped"] == 2100
    assert shadow["requests"] == shadow["compared"] == shadow["sent"] > 0
    assert shadow["agreement"] == 1.0 and shadow["max_abs_diff"] == 0.0
    metrics = httpx.get(split_server.metrics_url).text
    assert (
        f'sluice_arm_requests_total{{arm="shadow",model="{MODEL}",outcome="ok",version="3"}}'
        in metrics
    )


def test_grpc_metadata_is_the_same_sticky_key(split_server: ServerProcess) -> None:
    users = [f"grpc-user-{i}" for i in range(40)]
    with httpx.Client(base_url=split_server.http_url, timeout=30) as client:
        over_http = {user: _infer(client, user) for user in users}
    client = grpcclient.InferenceServerClient(split_server.grpc_url)
    inp = grpcclient.InferInput("INPUT0", [1, 2], "FP32")
    inp.set_data_from_numpy(np.array([[1.5, 2.5]], dtype=np.float32))
    for user in users:
        result = client.infer(MODEL, [inp], headers={"x-user-id": user})
        assert result.get_response().model_version == over_http[user]
    assert len(set(over_http.values())) == 2  # the keys did spread over both arms


def test_the_admin_surface_over_http_grpc_and_the_cli(split_server: ServerProcess) -> None:
    url = split_server.http_url
    cli = [sys.executable, "-m", "serving", "traffic"]
    out = subprocess.run(
        [*cli, "set", MODEL, "2=100", "--shadow", "1=50", "--url", url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert f"model {MODEL}: 2=100  (source: api)" in out
    with httpx.Client(base_url=url, timeout=30) as client:
        assert {_infer(client) for _ in range(20)} == {"2"}
        bad = client.post(f"/v2/models/{MODEL}/traffic", json={"traffic": {"7": 1}})
        assert bad.status_code == 400 and "no ready version 7" in bad.json()["error"]
    with grpc.insecure_channel(split_server.grpc_url) as channel:
        stub = admin_grpc.SluiceAdminStub(channel)
        shown = stub.TrafficShow(admin_pb.TrafficShowRequest(model=MODEL))
        assert (shown.source, dict(shown.split.traffic), dict(shown.split.shadow)) == (
            "api",
            {"2": 100},
            {"1": 50},
        )
        assert json.loads(shown.arms_json)["primary"]["2"]["requests"] >= 20
        stub.TrafficSet(admin_pb.TrafficSetRequest(model=MODEL, clear=True))
        with pytest.raises(grpc.RpcError) as refused:
            stub.TrafficShow(admin_pb.TrafficShowRequest(model="nope"))
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    out = subprocess.run(
        [*cli, "show", MODEL, "--url", url], capture_output=True, text=True, check=True
    ).stdout
    assert f"model {MODEL}: 1=80 2=20  (source: config)" in out
    failed = subprocess.run(
        [*cli, "set", MODEL, "1=x", "--url", url], capture_output=True, text=True
    )
    assert failed.returncode == 1 and "'1=x' is not VERSION:WEIGHT" in failed.stderr
