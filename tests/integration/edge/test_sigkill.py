"""SIGKILL in ``loading`` and in ``downloading``, each state reached by real slowness
(a model whose warm-up inference takes seconds, a registry that dribbles bytes): the
restarted agent serves the committed version at once and converges."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from registry_client import (
    LocalRegistry,
    MlflowRegistry,
    open_registry,
    parse_reference,
    push_to_mlflow,
)
from tests.integration.edge.conftest import Agents, Fleet, MlflowServer, scale_model, wait_for
from tests.integration.edge.test_rollout import Client, answer, doc
from tests.integration.registry.fault_proxy import FaultProxy


def slow_model(path: Path, factor: float, side: int = 1536, rounds: int = 8) -> Path:
    """y = x * factor, plus zero from ``rounds`` MatMuls of side x side matrices built
    from x at run time (so nothing folds away): every inference, the warm-up's included,
    takes a while."""
    k = numpy_helper.from_array(np.array(factor, dtype=np.float32), "k")
    zero = numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero")
    shape = numpy_helper.from_array(np.array([side, side], dtype=np.int64), "shape")
    nodes = [
        helper.make_node("Mul", ["x", "k"], ["y0"]),
        helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
        helper.make_node("Mul", ["s", "zero"], ["s0"]),
        helper.make_node("Expand", ["s0", "shape"], ["m0"]),
    ]
    for i in range(rounds):
        nodes.append(helper.make_node("MatMul", [f"m{i}", f"m{i}"], [f"m{i + 1}"]))
    nodes += [
        helper.make_node("ReduceSum", [f"m{rounds}"], ["r"], keepdims=0),
        helper.make_node("Add", ["y0", "r"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "slow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])],
        initializer=[k, zero, shape],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def state_of(state_dir: Path, name: str = "mlp") -> str:
    db = state_dir / "state.db"
    if not db.exists():
        return ""
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT state FROM models WHERE name=?", (name,)).fetchone()
    return str(row[0]) if row else ""


def test_sigkill_while_loading_serves_the_committed_version_then_converges(
    agents: Agents, fleet: Fleet, registry: LocalRegistry, tmp_path: Path
) -> None:
    src = tmp_path / "slow"
    src.mkdir()
    slow = registry.register("mlp", [slow_model(src / "model.onnx", 7.0)]).version
    fleet.publish("dev-l", doc(1, "models:/mlp/1", golden=False))
    agent = agents.start("dev-l")
    wait_for(lambda: fleet.model("dev-l").get("applied") == 1, what="v1 committed")
    state_dir = agents.tmp_path / "devices" / "dev-l"

    fleet.publish("dev-l", doc(2, f"models:/mlp/{slow}", golden=False))
    wait_for(lambda: state_of(state_dir) == "loading", what="the slow version loading")
    agent.kill()

    agent = agents.start("dev-l")  # serves the committed version before anything else
    assert "models=mlp/1" in agent.log()
    assert answer(agent.http_port) == (200, "1", [2.0] * 4)
    client = Client(agent.http_port)  # a local app calling all along the retry
    client.start()
    wait_for(lambda: fleet.model("dev-l").get("applied") == slow, what="the slow version committed")  # fmt: skip
    wait_for(lambda: client.answers and client.answers[-1] == (200, str(slow)))
    answers = client.finish()
    assert {code for code, _ in answers} == {200} and answers[0] == (200, "1"), answers[:5]
    assert answer(agent.http_port) == (200, str(slow), [7.0] * 4)
    assert [e for e in fleet.events if e.get("kind") == "resumed" and e.get("was") == "loading"]


async def _push(local: LocalRegistry, ref: str, uri: str) -> int:
    async with open_registry(uri) as target:
        assert isinstance(target, MlflowRegistry)
        return await push_to_mlflow(local, parse_reference(ref), target)


@pytest.fixture
def slow_registry(mlflow_server: MlflowServer, tmp_path: Path) -> Iterator[FaultProxy]:
    """MLflow holding ``edgekill`` 1 (y = 2x) and 2 (y = 3x, with a 1 MiB file beside the
    model), behind a proxy that can dribble downloads."""
    local = LocalRegistry(tmp_path / "push")
    for version, factor in ((1, 2.0), (2, 3.0)):
        d = tmp_path / f"kill{version}"
        d.mkdir()
        files = [scale_model(d / "model.onnx", factor)]
        if version == 2:
            files.append(d / "vocab.bin")
            files[-1].write_bytes(np.random.default_rng(0).bytes(1 << 20))
        local.register("edgekill", files)
        pushed = asyncio.run(_push(local, f"models:/edgekill/{version}", mlflow_server.uri))
        assert pushed == version  # a name no other test registers
    p = FaultProxy(mlflow_server.url)
    yield p
    p.close()


def parts(state_dir: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in (state_dir / "models").rglob("*.part")}


def test_sigkill_while_downloading_resumes_the_download_and_converges(
    agents: Agents, fleet: Fleet, slow_registry: FaultProxy
) -> None:
    fleet.publish("dev-d", {"version": 1, "models": {"mlp": {"ref": "models:/edgekill/1"}}})
    agent = agents.start("dev-d", registry=slow_registry.uri)
    wait_for(lambda: fleet.model("dev-d").get("applied") == 1, what="v1 committed")
    state_dir = agents.tmp_path / "devices" / "dev-d"

    slow_registry.set("slow")  # 4 KiB every 20 ms: the 1 MiB file takes seconds
    fleet.publish("dev-d", {"version": 2, "models": {"mlp": {"ref": "models:/edgekill/2"}}})
    wait_for(lambda: state_of(state_dir) == "downloading" and max(parts(state_dir).values(), default=0) >= 64 * 1024, what="half a download")  # fmt: skip
    agent.kill()
    have = max(parts(state_dir).values())
    assert state_of(state_dir) == "downloading" and have < 1 << 20

    slow_registry.set("none")
    agent = agents.start("dev-d", registry=slow_registry.uri)
    assert "models=mlp/1" in agent.log()  # serves the committed version first
    assert answer(agent.http_port) == (200, "1", [2.0] * 4)
    wait_for(lambda: fleet.model("dev-d").get("applied") == 2, what="v2 committed")
    assert answer(agent.http_port) == (200, "2", [3.0] * 4)
    # The download went on from the bytes kept: the restart asked for the rest only.
    starts = [int(h.removeprefix("bytes=").split("-")[0]) for h in slow_registry.range_headers]
    assert starts and 0 < starts[0] <= have, (starts, have)
    reread = (1 << 20) - starts[0]
    assert reread <= (1 << 20) - 64 * 1024, reread
