from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import paho.mqtt.client as mqtt
import pytest
from onnx import TensorProto, helper, numpy_helper

from registry_client import LocalRegistry
from tests.integration.edge.agent_process import AgentProcess, write_config
from tests.integration.edge.broker import Mosquitto
from tests.integration.registry.conftest import MlflowServer, mlflow_server

__all__ = ["MlflowServer", "mlflow_server"]  # one MLflow server for every edge module

pytestmark = pytest.mark.integration


def scale_model(path: Path, factor: float) -> Path:
    """y = x * factor, x float32 [batch, 4]: each version answers differently."""
    k = numpy_helper.from_array(np.array(factor, dtype=np.float32), "k")
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "k"], ["y"])], "scale",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])],
        initializer=[k],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def lookup_model(path: Path) -> Path:
    """y = table[int(x)]: fine for x in 0..3, a runtime error (index out of range) else."""
    table = numpy_helper.from_array(np.array([10, 20, 30, 40], dtype=np.float32), "table")
    graph = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["i"], to=TensorProto.INT64),
         helper.make_node("Gather", ["table", "i"], ["y"], axis=0)], "lookup",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])],
        initializer=[table],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def golden(path: Path, x: list[float], y: list[float]) -> Path:
    path.write_text(json.dumps({
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": x}],
        "outputs": [{"name": "y", "shape": [1, 4], "data": y}],
    }))  # fmt: skip
    return path


@pytest.fixture
def registry(tmp_path: Path) -> LocalRegistry:
    """mlp 1 (x2), 2 (x3), 3 (x5, golden lies: fails its check), 4 (lookup: golden passes,
    live requests with values past 3 fail), each with a golden file."""
    reg = LocalRegistry(tmp_path / "registry")
    src = tmp_path / "src"
    ones = [1.0, 1.0, 1.0, 1.0]
    for version, factor, expect in ((1, 2.0, 2.0), (2, 3.0, 3.0), (3, 5.0, 7.0)):
        d = src / str(version)
        d.mkdir(parents=True)
        scale_model(d / "model.onnx", factor)
        golden(d / "golden.json", ones, [expect] * 4)
        reg.register("mlp", [d / "model.onnx", d / "golden.json"])
    d = src / "4"
    d.mkdir(parents=True)
    lookup_model(d / "model.onnx")
    golden(d / "golden.json", [0.0, 1.0, 2.0, 3.0], [10.0, 20.0, 30.0, 40.0])
    reg.register("mlp", [d / "model.onnx", d / "golden.json"])
    return reg


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    b = Mosquitto(tmp_path / "broker")
    b.start()
    yield b
    b.stop()


class Fleet:
    """The fleet side as a test sees it: publishes desired documents and keeps every
    device's latest retained reported state and, in order, the events it received."""

    def __init__(self, broker: Mosquitto, client_id: str = "test-fleet") -> None:
        self.broker = broker
        self.reported: dict[str, dict[str, Any]] = {}
        self.status: dict[str, str] = {}
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)  # fmt: skip
        self.client.on_message = self._message
        self.client.on_connect = lambda c, *a: c.subscribe("sluice/devices/#", qos=1)
        self.client.reconnect_delay_set(1, 1)
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()

    def _message(self, client: Any, userdata: Any, message: Any) -> None:
        parts = message.topic.split("/")
        device, leaf = parts[2], parts[3]
        with self._lock:
            if leaf == "reported":
                self.reported[device] = json.loads(message.payload)
            elif leaf == "status":
                self.status[device] = message.payload.decode()
            elif leaf == "events":
                self.events.append(json.loads(message.payload))

    def publish(self, device: str, doc: dict[str, Any] | bytes) -> None:
        payload = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        info = self.client.publish(f"sluice/devices/{device}/desired", payload, qos=1, retain=True)
        info.wait_for_publish(timeout=10)

    def model(self, device: str, name: str = "mlp") -> dict[str, Any]:
        with self._lock:
            return dict(self.reported.get(device, {}).get("models", {}).get(name, {}))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def fleet(broker: Mosquitto) -> Iterator[Fleet]:
    f = Fleet(broker)
    yield f
    f.close()


def wait_for(predicate: Callable[[], Any], timeout: float = 60.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")


class Agents:
    """Starts agents on the test's broker and registry; stops what is left at teardown."""

    def __init__(self, tmp_path: Path, broker: Mosquitto, registry: LocalRegistry) -> None:
        self.tmp_path = tmp_path
        self.broker = broker
        self.registry = registry
        self.started: list[AgentProcess] = []

    def config(self, device: str, **overrides: Any) -> Path:
        values: dict[str, Any] = {
            "device_id": device,
            "state_dir": self.tmp_path / "devices" / device,
            "registry": f"file://{self.registry.root}",
            "heartbeat_secs": 60,
            "mqtt.url": self.broker.url,
            "mqtt.reconnect_min_secs": 0.5,
            "mqtt.reconnect_max_secs": 1.0,
            "serve.http_port": 0,
            "serve.grpc_port": 0,
            "serve.metrics_port": 0,
            "serve.cores": 1,
            "download.retry_min_secs": 0.2,
            "download.retry_max_secs": 1.0,
            "health.window_secs": 0.5,
            "health.window_requests": 20,
            "health.min_requests": 5,
            "health.max_error_rate": 0.2,
        }
        values.update({k.replace("__", "."): v for k, v in overrides.items()})
        values = {k: v for k, v in values.items() if v is not None}  # None: leave unset
        return write_config(self.tmp_path / f"{device}.toml", values)

    def start(self, device: str, **overrides: Any) -> AgentProcess:
        serving = overrides.get("serve__enabled", True)
        agent = AgentProcess(self.config(device, **overrides), self.tmp_path, serving=serving)
        self.started.append(agent)
        return agent

    def stop_all(self) -> None:
        for agent in self.started:
            agent.stop()


@pytest.fixture
def agents(tmp_path: Path, broker: Mosquitto, registry: LocalRegistry) -> Iterator[Agents]:
    a = Agents(tmp_path, broker, registry)
    yield a
    a.stop_all()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        for value in getattr(item, "funcargs", {}).values():
            if isinstance(value, Agents):
                for agent in value.started[-3:]:
                    report.sections.append(("agent log", agent.log()[-6000:]))
