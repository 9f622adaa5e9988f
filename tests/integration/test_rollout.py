"""Canary rollouts with the real server: bad candidates rolled back, a good one promoted.

The model ``canary`` has five versions with one signature (x [N, 4] -> y [N, 4]):
1 the baseline (identity), 2 a good candidate (identity), 3 one whose outputs disagree
(-x), 4 one that fails at run time for more than one row (a reshape to [1, 4]; its
warm-up sends one row) and 5 a
slow one (identity plus a discarded chain of 1000x1000 matrix products that depends on the input).
Intervals are short (1 s) and the sample minimum small, set per rollout.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from registry_client import LocalRegistry
from serving.examples import IR_VERSION, OPSET
from tests.integration.server_process import ServerProcess

pytestmark = pytest.mark.integration

MODEL = "canary"
_PATIENCE_SECS = 90  # a safety net for the rollout to finish, not a timing assertion
_CONFIG = """\
version_policy: { all: {} }
parameters [ { key: "sluice.traffic" value: { string_value: "1:100" } } ]
"""


def _model(nodes: list[Any], initializers: list[Any] = ()) -> bytes:  # type: ignore[assignment]
    graph = helper.make_graph(
        nodes,
        "canary",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        initializer=list(initializers),
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    return model.SerializeToString()


def _versions() -> dict[int, bytes]:
    identity = _model([helper.make_node("Identity", ["x"], ["y"])])
    one = numpy_helper.from_array(np.array([1, 4], dtype=np.int64), "one")
    four = numpy_helper.from_array(np.array([-1, 4], dtype=np.int64), "four")
    failing = _model(
        [helper.make_node("Reshape", ["x", "one"], ["t"]),
         helper.make_node("Reshape", ["t", "four"], ["y"])],
        [one, four],
    )  # fmt: skip
    weights = numpy_helper.from_array(
        np.random.default_rng(5).random((1000, 1000), dtype=np.float32) / 1000, "w"
    )
    zero = numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero")
    slow = _model(
        [helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
         helper.make_node("Mul", ["w", "s"], ["m"]),
         helper.make_node("MatMul", ["m", "m"], ["p"]),
         helper.make_node("MatMul", ["p", "m"], ["q"]),
         helper.make_node("MatMul", ["q", "m"], ["u"]),
         helper.make_node("ReduceSum", ["u"], ["r"], keepdims=0),
         helper.make_node("Mul", ["r", "zero"], ["z"]),
         helper.make_node("Add", ["x", "z"], ["y"])],
        [weights, zero],
    )  # fmt: skip
    negated = _model([helper.make_node("Neg", ["x"], ["y"])])
    return {1: identity, 2: identity, 3: negated, 4: failing, 5: slow}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rollout-repository")
    for version, onnx_bytes in _versions().items():
        (root / MODEL / str(version)).mkdir(parents=True)
        (root / MODEL / str(version) / "model.onnx").write_bytes(onnx_bytes)
    (root / MODEL / "config.pbtxt").write_text(_CONFIG)
    return root


@pytest.fixture(scope="module")
def canary_server(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(repo, log_dir=tmp_path_factory.mktemp("logs"))
    yield proc
    proc.stop()


def _rollout(server: ServerProcess, **spec: Any) -> dict[str, Any]:
    """Start a rollout over HTTP, send requests until it ends, return its status."""
    rng = np.random.default_rng(11)
    body = {"interval": "1s", "min_samples": 10, "baseline": 1, **spec}
    with httpx.Client(base_url=server.http_url, timeout=30) as client:
        started = client.post(f"/v2/models/{MODEL}/rollout", json=body)
        assert started.status_code == 200, started.text
        deadline = time.monotonic() + _PATIENCE_SECS
        while True:
            for _ in range(20):
                x = rng.random((2, 4), dtype=np.float32)
                request = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 4],
                                       "data": x.ravel().tolist()}]}  # fmt: skip
                client.post(f"/v2/models/{MODEL}/infer", json=request)
            status = client.get(f"/v2/models/{MODEL}/rollout").json()
            if status["state"] != "running":
                return dict(status)
            assert time.monotonic() < deadline, status


def _served(server: ServerProcess) -> set[str]:
    x = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [3, 4], "data": [0.5] * 12}]}
    with httpx.Client(base_url=server.http_url, timeout=30) as client:
        return {client.post(f"/v2/models/{MODEL}/infer", json=x).json()["model_version"]
                for _ in range(20)}  # fmt: skip


@pytest.mark.parametrize(
    ("candidate", "spec", "reason"),
    [
        (4, {"steps": [50, 100]}, "error rate 100.00%"),
        (5, {"steps": [50, 100], "max_p99_ratio": 3}, "x the baseline's"),
        (
            3,
            {"steps": [100], "shadow_first": True, "min_agreement": 0.9, "max_p99_ratio": 50},
            "argmax agreement",
        ),
    ],
    ids=["errors", "slow", "disagrees"],
)
def test_bad_candidates_are_rolled_back(
    canary_server: ServerProcess, candidate: int, spec: dict[str, Any], reason: str
) -> None:
    status = _rollout(canary_server, to=candidate, **spec)
    assert status["state"] == "rolled_back", status["history"]
    last = status["history"][-1]
    assert last["action"] == "rollback" and reason in last["reason"], last
    assert _served(canary_server) == {"1"}  # all traffic back on the baseline


def test_a_good_candidate_is_promoted_and_moves_the_alias(
    canary_server: ServerProcess, repo: Path, tmp_path: Path
) -> None:
    registry = LocalRegistry(tmp_path / "registry")
    for version in (1, 2):
        registry.register(MODEL, [repo / MODEL / str(version) / "model.onnx"])
    registry.set_alias(MODEL, "prod", 1)
    status = _rollout(
        canary_server, to=2, steps=[50, 100], shadow_first=True, min_agreement=0.99,
        max_p99_ratio=20, promote_alias="prod", registry=str(tmp_path / "registry"),
    )  # fmt: skip
    assert status["state"] == "promoted", status
    actions = [e["action"] for e in status["history"] if e["action"] != "hold"]
    assert actions == ["start", "advance", "advance", "advance", "alias", "promote"]
    assert status["history"][-2]["reason"] == f"{MODEL}@prod -> 2"
    models = {m["name"]: m for m in LocalRegistry(tmp_path / "registry").models()}
    assert models[MODEL]["aliases"] == {"prod": 2}
    assert _served(canary_server) == {"2"}
    # the CLI shows the same, and refuses a second rollout's bad spec before sending it
    cli = [sys.executable, "-m", "serving", "rollout"]
    out = subprocess.run([*cli, "status", MODEL, "--url", canary_server.http_url],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert f"model {MODEL}: version 2 against 1: promoted (at 100%)" in out
    bad = subprocess.run([*cli, "start", MODEL, "--to", "1", "--min-agreement", "0.9",
                          "--url", canary_server.http_url], capture_output=True, text=True)  # fmt: skip
    assert bad.returncode == 1 and "needs shadow_first" in bad.stderr
