"""Sluice's serving core in the agent's process, steered through the desired-state contract.

``serving.server.serve`` runs on the agent's loop over ``<state_dir>/models`` (where the
pulls land) with explicit model control, and hands the agent its core (``attach``).
The agent is a desired-state source (``serving.desired_state``, ``Source.EDGE``): it
holds a target per committed version before any model loads, so a boot serves them
with no network call, and applies a new target to switch versions; the manager loads
and warms the new version while the old one keeps answering, then switches. An
observer on the core (``serving.observers``) hears every request of the version in
canary, for the health gate. The golden check goes through the HTTP endpoint on
loopback, as a local app's request would.

``serving`` (and ONNX Runtime, gRPC, starlette) is imported only in ``start``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edge_agent._config import AgentConfig
from edge_agent._health import LiveSample, compare_golden

__all__ = ["ServingHost"]

log = logging.getLogger("sluice.edge.host")


class _PortListener(logging.Handler):
    """Learns the ports ``serve`` bound (port 0 in the config picks a free one)."""

    def __init__(self) -> None:
        super().__init__()
        self.ports: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        msg = str(record.msg)
        if msg.endswith("service listening on %s:%d%s") and record.args:
            kind = msg.split(" ", 1)[0]
            self.ports[kind] = int(record.args[1])  # type: ignore[index,call-overload]


class _CanaryWindow:
    """An observer that keeps the outcome and time of each request of one version."""

    wants_tensors = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watch: tuple[str, str] | None = None
        self._success = 0
        self._failure = 0
        self._latencies: list[float] = []

    def watch(self, name: str, version: int | None) -> None:
        with self._lock:
            self._watch = None if version is None else (name, str(version))
            self._success = self._failure = 0
            self._latencies = []

    def sample(self) -> LiveSample:
        with self._lock:
            return LiveSample(self._success, self._failure, tuple(self._latencies))

    def on_inference(self, record: Any) -> None:
        if self._watch is None or (record.model, record.version) != self._watch:
            return
        with self._lock:
            if record.ok:
                self._success += 1
            else:
                self._failure += 1
            self._latencies.append(record.total_ns / 1e9)

    def on_execution(self, record: Any) -> None:
        pass


class ServingHost:
    def __init__(self, config: AgentConfig, models_dir: Path, collect_dir: Path | None = None) -> None:  # fmt: skip
        """``collect_dir``: collect the models' inputs and outputs into Parquet there."""
        self._config = config
        self.models_dir = models_dir
        self.collect_dir = collect_dir
        self._task: asyncio.Task[None] | None = None
        self._ports = _PortListener()
        self._window = _CanaryWindow()
        self._manager: Any = None
        self._generation = 0
        self._http: Any = None
        self.http_port = 0
        self.grpc_port = 0
        self.metrics_port = 0

    def _target(self, name: str, version: int | None, traffic: Mapping[int, int] | None = None) -> Any:  # fmt: skip
        """``version`` alone, or with ``traffic`` every version the split names (the core's
        traffic router splits the requests that name no version)."""
        from serving.desired_state import ModelTarget, Source

        self._generation += 1
        if version is None:
            return ModelTarget(name, Source.EDGE, serve=False, generation=self._generation)
        weights = dict(traffic or {})
        versions = (version, *weights)
        return ModelTarget(name, Source.EDGE, versions=versions, traffic=weights, generation=self._generation)  # fmt: skip

    async def start(
        self, committed: Mapping[str, int], traffic: Mapping[str, Mapping[int, int]] | None = None
    ) -> asyncio.Task[None]:
        """Serve the ``committed`` versions (with their ``traffic`` splits); returns once
        the HTTP endpoint is ready."""
        import httpx

        from serving.server import serve
        from serving.settings import ControlMode, Settings

        c = self._config
        options: dict[str, Any] = {}
        if c["serve.cores"]:
            options["cores"] = c["serve.cores"]
        if self.collect_dir is not None:  # the shipper sends what rolls here (edge_agent._shipper)
            options["collect"] = str(self.collect_dir)
            options["collect_sample_rate"] = c["collect.sample_rate"]
            options["collect_roll_secs"] = c["collect.roll_secs"]
        settings = Settings(
            model_repository=self.models_dir,
            host=c["serve.host"],
            http_port=c["serve.http_port"],
            grpc_port=c["serve.grpc_port"],
            metrics_port=c["serve.metrics_port"],
            model_control_mode=ControlMode.EXPLICIT,
            load_models=(),
            **options,
        )

        def attach(core: Any) -> None:
            self._manager = core.manager
            core.manager.observers.add(self._window)
            for name, version in sorted(committed.items()):
                core.manager.hold(self._target(name, version, (traffic or {}).get(name)))

        logging.getLogger("sluice").addHandler(self._ports)
        self._task = asyncio.create_task(serve(settings, attach=attach), name="sluice-serve")
        while "HTTP" not in self._ports.ports:
            if self._task.done():
                self._task.result()  # raises what stopped it
                raise RuntimeError("the serving core stopped before it listened")
            await asyncio.sleep(0.01)
        self.http_port = self._ports.ports["HTTP"]
        self.grpc_port = self._ports.ports.get("gRPC", c["serve.grpc_port"])
        self.metrics_port = self._ports.ports.get("metrics", c["serve.metrics_port"])
        host = c["serve.host"]
        self._http = httpx.AsyncClient(base_url=f"http://{host}:{self.http_port}", timeout=120.0)
        while True:
            if self._task.done():
                self._task.result()
                raise RuntimeError("the serving core stopped before it was ready")
            try:
                if (await self._http.get("/v2/health/ready")).status_code == 200:
                    break
            except Exception:
                pass
            await asyncio.sleep(0.02)
        return self._task

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
        logging.getLogger("sluice").removeHandler(self._ports)

    def serving(self) -> dict[str, list[str]]:
        return {t: self._manager.ready_versions(t) for t in sorted(self._manager.desired.models)}

    async def activate(self, name: str, version: int, traffic: Mapping[int, int] | None = None) -> str | None:  # fmt: skip
        """Serve ``version`` of ``name`` (and, with ``traffic``, the split between the
        versions it names); None once it serves, else why it could not (what was serving
        keeps serving)."""
        from serving.errors import SluiceError

        try:
            await self._manager.apply(self._target(name, version, traffic))
        except SluiceError as exc:
            return exc.message
        except ValueError as exc:  # a target the desired state refuses
            return str(exc)
        ready = self._manager.ready_versions(name)
        for wanted in sorted({version, *(traffic or {})}):
            if str(wanted) not in ready:
                return f"version {wanted} is not ready after loading"
        return None

    def traffic(self, name: str) -> dict[str, int]:
        """The split in force for ``name`` (empty: the one version serves alone)."""
        target = self._manager.desired.target(name) if self._manager is not None else None
        return {str(v): w for v, w in target.traffic.items()} if target is not None else {}

    async def deactivate(self, name: str) -> None:
        await self._manager.apply(self._target(name, None))

    def watch(self, name: str, version: int | None) -> None:
        """Count the live requests of ``version`` from now on (None: stop)."""
        self._window.watch(name, version)

    def live_sample(self) -> LiveSample:
        return self._window.sample()

    async def golden(self, name: str, version: int, golden: str) -> str | None:
        """Run the golden request of the version; None when the outputs match."""
        path = self.models_dir / name / str(version) / golden
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            return f"golden file {golden}: {exc}"
        if not isinstance(doc, dict) or "inputs" not in doc:
            return f"golden file {golden}: needs 'inputs' (a V2 infer request) and 'outputs'"
        request = {"inputs": doc["inputs"]}
        url = f"/v2/models/{name}/versions/{version}/infer"
        response = await self._http.post(url, json=request)
        if response.status_code != 200:
            return f"golden request failed: {_error(response)}"
        c = self._config
        return compare_golden(
            doc, response.json(), c["health.golden_atol"], c["health.golden_rtol"]
        )


def _error(response: Any) -> str:
    try:
        return str(response.json().get("error", response.text))
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:200]}"
