"""Model lifecycle over the wire: versions, explicit load/unload/index, poll mode, metrics."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from serving.examples import write_repository
from tests.integration.server_process import ServerProcess

pytestmark = pytest.mark.integration


def _versioned_repository(root: Path) -> Path:
    write_repository(root, ["simple", "identity_fp32"])
    model = root / "versioned"
    for v in (1, 2, 3):
        (model / str(v)).mkdir(parents=True)
        shutil.copy(root / "identity_fp32" / "1" / "model.onnx", model / str(v) / "model.onnx")
    (model / "config.pbtxt").write_text('name: "versioned"\nversion_policy: { all: {} }\n')
    return root


@pytest.fixture(scope="module")
def explicit_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = _versioned_repository(tmp_path_factory.mktemp("explicit-repo"))
    proc = ServerProcess(
        repo, "--model-control-mode", "explicit", "--load-model", "simple",
        log_dir=tmp_path_factory.mktemp("explicit-logs"),
    )  # fmt: skip
    yield proc
    proc.stop()


@pytest.fixture
def client(explicit_server: ServerProcess) -> Iterator[httpclient.InferenceServerClient]:
    c = httpclient.InferenceServerClient(explicit_server.url)
    yield c
    c.close()


def _fp32(client: httpclient.InferenceServerClient, model: str, version: str = "") -> dict:
    inp = httpclient.InferInput("INPUT0", [1, 3], "FP32")
    inp.set_data_from_numpy(np.array([[1.0, 2.0, 3.0]], dtype=np.float32))
    result = client.infer(model, [inp], model_version=version)
    response = result.get_response()
    response["values"] = result.as_numpy("OUTPUT0").tolist()
    return response


def test_explicit_mode_loads_only_what_was_asked(client: httpclient.InferenceServerClient) -> None:
    index = {e["name"]: e for e in client.get_model_repository_index()}
    assert index["simple"]["state"] == "READY"
    assert index["identity_fp32"]["state"] in ("", "UNAVAILABLE")
    assert not client.is_model_ready("identity_fp32")


def test_load_unload_and_index(client: httpclient.InferenceServerClient) -> None:
    client.load_model("identity_fp32")
    assert client.is_model_ready("identity_fp32")
    assert _fp32(client, "identity_fp32")["values"] == [[1.0, 2.0, 3.0]]
    client.unload_model("identity_fp32")
    assert not client.is_model_ready("identity_fp32")
    entry = [e for e in client.get_model_repository_index() if e["name"] == "identity_fp32"]
    assert entry == [
        {"name": "identity_fp32", "version": "1", "state": "UNAVAILABLE", "reason": "unloaded"}
    ]
    with pytest.raises(InferenceServerException, match="identity_fp32"):
        _fp32(client, "identity_fp32")
    ready_only = client.get_model_repository_index()
    assert all(e["name"] != "identity_fp32" or e["state"] != "READY" for e in ready_only)


def test_load_unknown_model_is_not_found(client: httpclient.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException, match="no_such_model"):
        client.load_model("no_such_model")


def test_versions_served_and_addressed(client: httpclient.InferenceServerClient) -> None:
    client.load_model("versioned")
    meta = client.get_model_metadata("versioned")
    assert meta["versions"] == ["1", "2", "3"]
    for v in ("1", "2", "3"):
        assert client.is_model_ready("versioned", v)
        assert _fp32(client, "versioned", v)["model_version"] == v
    assert _fp32(client, "versioned")["model_version"] == "3"  # default: the highest
    stats = client.get_inference_statistics("versioned", "2")["model_stats"]
    assert [s["version"] for s in stats] == ["2"]
    assert stats[0]["inference_count"] == 1


def test_load_with_config_override(client: httpclient.InferenceServerClient) -> None:
    override = {"name": "versioned", "version_policy": {"specific": {"versions": [2]}}}
    client.load_model("versioned", config=json.dumps(override))
    assert client.get_model_metadata("versioned")["versions"] == ["2"]
    assert not client.is_model_ready("versioned", "3")
    assert client.get_model_config("versioned")["version_policy"] == {"specific": {"versions": [2]}}


def test_bad_config_override_is_refused(client: httpclient.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException):
        client.load_model("simple", config='{"max_batch_size": "lots"}')
    assert client.is_model_ready("simple")  # what was serving is untouched


def test_load_api_refused_outside_explicit_mode(server: ServerProcess) -> None:
    c = httpclient.InferenceServerClient(server.url)
    with pytest.raises(InferenceServerException, match="explicit"):
        c.load_model("simple")
    assert c.is_model_ready("simple")


def test_metrics_endpoint(server: ServerProcess) -> None:
    body = {"inputs": [{"name": "INPUT0", "datatype": "INT32", "shape": [1, 2], "data": [1, 2]}]}
    assert (
        httpx.post(f"{server.http_url}/v2/models/identity_int32/infer", json=body).status_code
        == 200
    )
    bad = {"inputs": [{"name": "INPUT0", "datatype": "INT32", "shape": [1, 2], "data": [1]}]}
    assert (
        httpx.post(f"{server.http_url}/v2/models/identity_int32/infer", json=bad).status_code == 400
    )
    text = httpx.get(server.metrics_url).text
    assert (
        'sluice_inference_requests_total{model="identity_int32",outcome="success",version="1"}'
        in text
    )
    assert 'sluice_inference_count_total{model="identity_int32",version="1"}' in text
    assert 'sluice_inference_exec_count_total{model="identity_int32",version="1"}' in text
    assert (
        'sluice_queue_duration_seconds_bucket{le="0.0001",model="identity_int32",version="1"}'
        in text
    )
    assert (
        'sluice_compute_duration_seconds_count{model="identity_int32",phase="infer",version="1"}'
        in text
    )
    assert 'sluice_model_load_duration_seconds_count{model="simple",version="1"} 1.0' in text
    assert 'sluice_model_load_failures_total{model="broken",' in text


def test_poll_mode_loads_a_version_only_after_its_copy_settles(tmp_path: Path) -> None:
    """A version is loaded only once two scans in a row see the same files.

    Version 2 is copied in two halves, and the second half is written only after a scan has
    seen the first (the server logs each change it waits on). With the rule that scan waits;
    without it, it would try the half-written model, and the failed load would show in the
    load-failure metric. Scans are 2 s apart, so the second half lands long before the next.
    """
    repo = tmp_path / "repo"
    write_repository(repo, ["identity_fp32"])
    proc = ServerProcess(
        repo, "--model-control-mode", "poll", "--repository-poll-secs", "2", log_dir=tmp_path
    )
    failures: list[str] = []
    versions_seen: list[str] = []
    stop = threading.Event()
    waiting = "'identity_fp32' changed on disk"

    def load() -> None:
        with httpx.Client(base_url=proc.http_url, timeout=30) as c:
            body = {
                "inputs": [
                    {"name": "INPUT0", "datatype": "FP32", "shape": [1, 2], "data": [1.0, 2.0]}
                ]
            }
            while not stop.is_set():
                r = c.post("/v2/models/identity_fp32/infer", json=body)
                if r.status_code != 200:
                    failures.append(r.text)
                else:
                    versions_seen.append(r.json()["model_version"])

    def wait_for(condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + 30
        while not condition():
            assert time.monotonic() < deadline, f"no {what} within 30 s:\n{proc.log()[-3000:]}"
            time.sleep(0.02)

    try:
        thread = threading.Thread(target=load)
        thread.start()
        wait_for(lambda: bool(versions_seen or failures), "first answer")
        data = (repo / "identity_fp32" / "1" / "model.onnx").read_bytes()
        (repo / "identity_fp32" / "2").mkdir()
        with (repo / "identity_fp32" / "2" / "model.onnx").open("wb") as f:
            f.write(data[: len(data) // 2])
            f.flush()
            wait_for(lambda: waiting in proc.log(), "scan of the half-written copy")
            f.write(data[len(data) // 2 :])
        wait_for(lambda: bool(versions_seen) and versions_seen[-1] == "2", "switch to version 2")
        stop.set()
        thread.join()
        assert failures == []
        assert versions_seen[0] == "1" and versions_seen[-1] == "2"
        meta = httpx.get(f"{proc.http_url}/v2/models/identity_fp32").json()
        assert meta["versions"] == ["2"]
        metrics = httpx.get(proc.metrics_url).text
        assert "sluice_model_load_failures_total{" not in metrics  # no half-written load
    finally:
        stop.set()
        proc.stop()
