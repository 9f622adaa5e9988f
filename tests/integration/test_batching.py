"""Concurrent HTTP clients against the real server get batched, each with its own outputs."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from serving.examples import mlp_reference, write_repository
from tests.integration.server_process import ServerProcess

pytestmark = pytest.mark.integration

CLIENTS = 16
ROUNDS = 4

_CONFIG = """\
name: "mlp"
platform: "onnxruntime_onnx"
max_batch_size: 32
input [ { name: "INPUT0", data_type: TYPE_FP32, dims: [ 64 ] } ]
output [ { name: "OUTPUT0", data_type: TYPE_FP32, dims: [ 10 ] } ]
dynamic_batching { max_queue_delay_microseconds: 20000 }
instance_group [ { kind: KIND_CPU, count: 1 } ]
"""


@pytest.fixture(scope="module")
def batching_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = tmp_path_factory.mktemp("batching-repository")
    write_repository(repo, ["mlp"])
    (repo / "mlp" / "config.pbtxt").write_text(_CONFIG)
    proc = ServerProcess(repo, log_dir=tmp_path_factory.mktemp("logs"))
    yield proc
    proc.stop()


def _infer(url: str, x: np.ndarray) -> np.ndarray:
    body = {
        "inputs": [
            {
                "name": "INPUT0",
                "datatype": "FP32",
                "shape": list(x.shape),
                "data": x.ravel().tolist(),
            }
        ]
    }
    response = httpx.post(f"{url}/v2/models/mlp/infer", json=body, timeout=60)
    assert response.status_code == 200, response.text
    out = response.json()["outputs"][0]
    return np.array(out["data"], dtype=np.float32).reshape(out["shape"])


def test_concurrent_clients_are_batched_and_get_their_own_outputs(
    batching_server: ServerProcess,
) -> None:
    rng = np.random.default_rng(3)
    inputs = [
        rng.standard_normal((1 + i % 3, 64)).astype(np.float32) for i in range(CLIENTS * ROUNDS)
    ]
    with ThreadPoolExecutor(CLIENTS) as pool:
        outputs = list(pool.map(lambda x: _infer(batching_server.http_url, x), inputs))
    for x, y in zip(inputs, outputs, strict=True):
        np.testing.assert_allclose(y, mlp_reference(x), rtol=1e-4, atol=1e-5)
    stats = httpx.get(f"{batching_server.http_url}/v2/models/mlp/stats").json()["model_stats"][0]
    rows = sum(x.shape[0] for x in inputs)
    assert stats["inference_count"] == rows  # warmup runs bypass the statistics
    assert stats["execution_count"] < len(inputs) < stats["inference_count"]
    assert stats["inference_stats"]["success"]["count"] == len(inputs)
    assert (
        sum(b["compute_infer"]["count"] for b in stats["batch_stats"]) == stats["execution_count"]
    )
    metrics = httpx.get(batching_server.metrics_url).text
    assert 'sluice_batch_size_count{model="mlp",version="1"}' in metrics
    assert 'sluice_queue_depth{model="mlp",version="1"} 0.0' in metrics


# -- padding: a sentence-encoder-shaped model ------------------------------------------------

EMBED = 384
VOCAB = 1000
ENCODER_REQUESTS = 32

_ENCODER_CONFIG = """\
name: "encoder"
max_batch_size: 32
input [ { name: "ids", data_type: TYPE_INT64, dims: [ -1 ] },
        { name: "mask", data_type: TYPE_INT64, dims: [ -1 ] } ]
output [ { name: "emb", data_type: TYPE_FP32, dims: [ -1, 384 ] } ]
dynamic_batching { max_queue_delay_microseconds: 3000000 }
instance_group [ { kind: KIND_CPU, count: 1 } ]
parameters [
  { key: "sluice.pad.ids", value: { string_value: "0" } },
  { key: "sluice.pad.mask", value: { string_value: "0" } },
  { key: "sluice.pad_max_waste", value: { string_value: "1" } },
  { key: "sluice.run_lone_at_once", value: { string_value: "false" } }
]
"""


def _write_encoder(path: Path) -> None:
    """emb = table[ids] * mask: an embedding lookup, as a transformer encoder begins."""
    table = np.random.default_rng(11).standard_normal((VOCAB, EMBED)).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["table", "ids"], ["looked_up"]),
        helper.make_node("Cast", ["mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask_f", "axis2"], ["mask_3d"]),
        helper.make_node("Mul", ["looked_up", "mask_3d"], ["emb"]),
    ]
    graph = helper.make_graph(
        nodes,
        "encoder",
        [
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("mask", TensorProto.INT64, ["batch", "seq"]),
        ],
        [helper.make_tensor_value_info("emb", TensorProto.FLOAT, ["batch", "seq", EMBED])],
        initializer=[
            numpy_helper.from_array(table, "table"),
            numpy_helper.from_array(np.array([2], dtype=np.int64), "axis2"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


@pytest.fixture(scope="module")
def encoder_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("encoder-repository")
    _write_encoder(repo / "encoder" / "1" / "model.onnx")
    (repo / "encoder" / "config.pbtxt").write_text(_ENCODER_CONFIG)
    return repo


@pytest.fixture(scope="module")
def encoder_server(encoder_repository: Path, tmp_path_factory) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        encoder_repository, "--model-control-mode", "explicit", "--load-model", "encoder",
        log_dir=tmp_path_factory.mktemp("encoder-logs"),
    )  # fmt: skip
    yield proc
    proc.stop()


def _encoder_request(index: int) -> tuple[np.ndarray, np.ndarray]:
    length = 1 + (index * 7) % 19  # 19 different lengths, as a sentence encoder sees them
    ids = np.random.default_rng(index).integers(1, VOCAB, size=(1, length), dtype=np.int64)
    mask = np.ones_like(ids)
    mask[0, length // 2 + 1 :] = 0  # a tokenizer's padding inside the request itself
    return ids, mask


def _encode(url: str, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    body = {
        "inputs": [
            {"name": name, "datatype": "INT64", "shape": list(x.shape), "data": x.ravel().tolist()}
            for name, x in (("ids", ids), ("mask", mask))
        ]
    }
    response = httpx.post(f"{url}/v2/models/encoder/infer", json=body, timeout=60)
    assert response.status_code == 200, response.text
    out = response.json()["outputs"][0]
    return np.array(out["data"], dtype=np.float32).reshape(out["shape"])


def test_an_encoder_batches_requests_of_different_lengths(
    encoder_server: ServerProcess, encoder_repository: Path
) -> None:
    import onnxruntime as ort

    requests = [_encoder_request(i) for i in range(ENCODER_REQUESTS)]
    with ThreadPoolExecutor(ENCODER_REQUESTS) as pool:
        answers = list(pool.map(lambda r: _encode(encoder_server.http_url, *r), requests))

    session = ort.InferenceSession(
        str(encoder_repository / "encoder" / "1" / "model.onnx"),
        providers=["CPUExecutionProvider"],
    )
    for (ids, mask), answer in zip(requests, answers, strict=True):
        (alone,) = session.run(["emb"], {"ids": ids, "mask": mask})
        assert answer.shape == (1, ids.shape[1], EMBED)
        np.testing.assert_array_equal(answer, alone)
    url = f"{encoder_server.http_url}/v2/models/encoder"
    stats = httpx.get(f"{url}/stats").json()["model_stats"][0]
    assert stats["inference_count"] == ENCODER_REQUESTS
    assert stats["execution_count"] <= ENCODER_REQUESTS // 4
    assert max(b["batch_size"] for b in stats["batch_stats"]) > 1
    assert "model 'encoder' pads inputs 'ids', 'mask'" in encoder_server.log()


def test_sluice_config_says_whether_a_model_pads(encoder_repository: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "serving", "config", str(encoder_repository / "encoder")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert 'key: "sluice.pad.ids"' in done.stdout
    assert done.stderr == (
        "sluice: model 'encoder' pads inputs 'ids', 'mask'; output 'emb' [-1, 384] is cut back "
        "to input 'ids''s length\n"
    )


def test_a_load_override_over_a_limit_is_refused_naming_the_field(
    encoder_server: ServerProcess,
) -> None:
    override = {
        "max_batch_size": 32,
        "dynamic_batching": {"priority_levels": 2**20, "default_priority_level": 1},
    }
    response = httpx.post(
        f"{encoder_server.http_url}/v2/repository/models/encoder/load",
        json={"parameters": {"config": json.dumps(override)}},
        timeout=60,
    )

    assert response.status_code == 400, response.text
    assert (
        "dynamic_batching.priority_levels 1048576 exceeds the limit of 10000"
        in (response.json()["error"])
    )
