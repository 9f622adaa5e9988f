"""Ensembles with the real server: preprocess -> two models in parallel -> combiner.

``pre`` doubles, ``left`` adds 1, ``right`` triples and ``combine`` subtracts, so the
ensemble answers (2x + 1) - 6x = 1 - 4x. Every composing model batches dynamically; the
ensemble is checked over HTTP and gRPC with batches, against numpy.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from onnx import TensorProto, helper, numpy_helper

from serving.examples import IR_VERSION, OPSET
from tests.integration.server_process import ServerProcess

pytestmark = pytest.mark.integration

_BATCHING = "max_batch_size: 8\ndynamic_batching { max_queue_delay_microseconds: 2000 }\n"
# A batch leaves only when full (4 rows): how the test sees the ensemble's requests batched.
_HELD = (
    "max_batch_size: 4\ndynamic_batching { max_queue_delay_microseconds: 60000000 }\n"
    'parameters [ { key: "sluice.run_lone_at_once" value: { string_value: "false" } } ]\n'
)


def _onnx(nodes: list[Any], inputs: list[str], initializers: list[Any] = ()) -> bytes:  # type: ignore[assignment]
    graph = helper.make_graph(
        nodes, "m",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 4]) for n in inputs],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        initializer=list(initializers),
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    return model.SerializeToString()


def _scalar(name: str, value: float) -> Any:
    return numpy_helper.from_array(np.array(value, dtype=np.float32), name)


def _step(model: str, inputs: dict[str, str], outputs: dict[str, str]) -> str:
    ins = " ".join(f'input_map {{ key: "{k}" value: "{v}" }}' for k, v in inputs.items())
    outs = " ".join(f'output_map {{ key: "{k}" value: "{v}" }}' for k, v in outputs.items())
    return f'step {{ model_name: "{model}" model_version: -1 {ins} {outs} }}'


def _ensemble(steps: list[str]) -> str:
    return (
        'platform: "ensemble"\nmax_batch_size: 8\n'
        'input [ { name: "INPUT" data_type: TYPE_FP32 dims: [ 4 ] } ]\n'
        'output [ { name: "OUTPUT" data_type: TYPE_FP32 dims: [ 4 ] } ]\n'
        f"ensemble_scheduling {{ {' '.join(steps)} }}\n"
    )


STEPS = [
    _step("pre", {"x": "INPUT"}, {"y": "doubled"}),
    _step("left", {"x": "doubled"}, {"y": "plus_one"}),
    _step("right", {"x": "doubled"}, {"y": "tripled"}),
    _step("combine", {"a": "plus_one", "b": "tripled"}, {"y": "OUTPUT"}),
]


@pytest.fixture(scope="module")
def ensemble_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = tmp_path_factory.mktemp("ensemble-repository")
    shape = numpy_helper.from_array(np.array([1, 4], dtype=np.int64), "one_row")
    models = {
        "pre": _onnx([helper.make_node("Mul", ["x", "two"], ["y"])], ["x"], [_scalar("two", 2)]),
        "left": _onnx([helper.make_node("Add", ["x", "one"], ["y"])], ["x"], [_scalar("one", 1)]),
        "right": _onnx([helper.make_node("Mul", ["x", "three"], ["y"])], ["x"], [_scalar("three", 3)]),
        "combine": _onnx([helper.make_node("Sub", ["a", "b"], ["y"])], ["a", "b"]),
        # fails at run time for more than one row (its warm-up sends one)
        "fragile": _onnx([helper.make_node("Reshape", ["x", "one_row"], ["y"])], ["x"], [shape]),
    }  # fmt: skip
    models["held_pre"] = models["pre"]
    for name, onnx_bytes in models.items():
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "1" / "model.onnx").write_bytes(onnx_bytes)
        (repo / name / "config.pbtxt").write_text(_HELD if name == "held_pre" else _BATCHING)
    ensembles = {
        "ens": STEPS,
        "ens_held": [_step("held_pre", {"x": "INPUT"}, {"y": "doubled"}), *STEPS[1:]],
        "ens_fragile": [*STEPS[:2], _step("fragile", {"x": "doubled"}, {"y": "tripled"}), STEPS[3]],
        "ens_cycle": [STEPS[0], _step("left", {"x": "tripled"}, {"y": "plus_one"}),
                      _step("right", {"x": "plus_one"}, {"y": "tripled"}), STEPS[3]],
        "ens_unknown": [*STEPS[:3], _step("nope", {"a": "plus_one"}, {"y": "OUTPUT"})],
    }  # fmt: skip
    for name, steps in ensembles.items():
        (repo / name / "1").mkdir(parents=True)  # an ensemble's version holds no file
        (repo / name / "config.pbtxt").write_text(_ensemble(steps))
    proc = ServerProcess(repo, log_dir=tmp_path_factory.mktemp("logs"))
    yield proc
    proc.stop()


def _by_hand(x: np.ndarray) -> np.ndarray:
    doubled = x * 2
    return (doubled + 1) - doubled * 3


def _stats(server: ServerProcess, model: str) -> dict[str, Any]:
    with httpx.Client(base_url=server.http_url, timeout=30) as client:
        return dict(client.get(f"/v2/models/{model}/stats").json()["model_stats"][0])


def test_the_ensemble_answers_as_computed_by_hand_over_http_and_grpc(
    ensemble_server: ServerProcess,
) -> None:
    rng = np.random.default_rng(3)
    before = {
        m: _stats(ensemble_server, m)["inference_count"]
        for m in ("pre", "left", "right", "combine")
    }
    x = rng.random((3, 4), dtype=np.float32)
    body = {
        "inputs": [
            {"name": "INPUT", "datatype": "FP32", "shape": [3, 4], "data": x.ravel().tolist()}
        ]
    }
    with httpx.Client(base_url=ensemble_server.http_url, timeout=30) as client:
        answer = client.post("/v2/models/ens/infer", json=body)
    assert answer.status_code == 200, answer.text
    out = answer.json()["outputs"][0]
    assert out["shape"] == [3, 4]
    np.testing.assert_allclose(
        np.array(out["data"], dtype=np.float32).reshape(3, 4), _by_hand(x), rtol=1e-6
    )

    client = grpcclient.InferenceServerClient(ensemble_server.grpc_url)
    y = rng.random((5, 4), dtype=np.float32)
    inp = grpcclient.InferInput("INPUT", [5, 4], "FP32")
    inp.set_data_from_numpy(y)
    result = client.infer("ens", [inp])
    np.testing.assert_allclose(result.as_numpy("OUTPUT"), _by_hand(y), rtol=1e-6)
    # each composing model counted the rows of both requests, as Triton reports them
    after = {m: _stats(ensemble_server, m)["inference_count"] for m in before}
    assert {m: after[m] - before[m] for m in after} == dict.fromkeys(before, 8)
    assert int(_stats(ensemble_server, "ens")["inference_stats"]["success"]["count"]) >= 2


def test_invalid_ensembles_are_refused_at_load_naming_step_and_tensor(
    ensemble_server: ServerProcess,
) -> None:
    with httpx.Client(base_url=ensemble_server.http_url, timeout=30) as client:
        index = {
            (e["name"], e.get("version", "")): e
            for e in client.post("/v2/repository/index", json={}).json()
        }
        reasons = {name: entry["reason"] for (name, _), entry in index.items()}
        assert "step 2 (model 'left')" in reasons["ens_cycle"] and "cycle" in reasons["ens_cycle"]
        assert "step 4 (model 'nope'): unknown model 'nope'" in reasons["ens_unknown"]
        assert client.get("/v2/models/ens_cycle/ready").status_code != 200


def test_a_failing_step_is_named_in_the_error(ensemble_server: ServerProcess) -> None:
    x = np.ones((2, 4), dtype=np.float32)
    body = {
        "inputs": [
            {"name": "INPUT", "datatype": "FP32", "shape": [2, 4], "data": x.ravel().tolist()}
        ]
    }
    with httpx.Client(base_url=ensemble_server.http_url, timeout=30) as client:
        answer = client.post("/v2/models/ens_fragile/infer", json=body)
    assert answer.status_code >= 400
    assert "ensemble 'ens_fragile' step 3 (model 'fragile')" in answer.json()["error"], answer.text


def test_concurrent_ensemble_requests_share_a_composing_models_batch(
    ensemble_server: ServerProcess,
) -> None:
    rng = np.random.default_rng(4)
    rows = [rng.random((1, 4), dtype=np.float32) for _ in range(4)]
    client = grpcclient.InferenceServerClient(ensemble_server.grpc_url)
    done: list[Any] = []
    for x in rows:
        inp = grpcclient.InferInput("INPUT", [1, 4], "FP32")
        inp.set_data_from_numpy(x)
        client.async_infer("ens_held", [inp], lambda result, error: done.append((result, error)))
    deadline = time.monotonic() + 60  # a safety net: the batch leaves when the 4th row comes
    while len(done) < 4:
        assert time.monotonic() < deadline, done
        time.sleep(0.01)
    answers = sorted(tuple(r.as_numpy("OUTPUT").ravel()) for r, e in done if e is None)
    assert answers == sorted(tuple(_by_hand(x).ravel()) for x in rows)
    held = _stats(ensemble_server, "held_pre")
    # the four ensemble requests reached held_pre's batcher as one execution of four rows
    assert (held["inference_count"], held["execution_count"]) == (4, 1)
