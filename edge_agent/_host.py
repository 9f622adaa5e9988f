"""Sluice's serving core in the agent's process, and the one way the agent steers it.

The agent keeps a serving repository of its own: ``<state_dir>/serve/<name>/<v>`` is a
symbolic link to the pulled version in ``<state_dir>/models``, one version per model,
so what the repository shows is what should serve. ``serving.server.serve`` runs on
this loop with explicit model control, loads every linked model at start (no network
call), and the agent switches a version through the repository API on loopback: the
new version loads and warms while the old one keeps answering, then takes over.

``serving`` (and ONNX Runtime, gRPC, starlette) is imported only in ``start``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path
from typing import Any

from edge_agent._config import AgentConfig
from edge_agent._health import LiveSample, compare_golden, parse_metrics

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


class ServingHost:
    def __init__(self, config: AgentConfig, models_dir: Path) -> None:
        self._config = config
        self.models_dir = models_dir
        self.serve_dir = config.state_dir / "serve"
        self.serve_dir.mkdir(parents=True, exist_ok=True)
        self._task: asyncio.Task[None] | None = None
        self._ports = _PortListener()
        self._http: Any = None
        self.http_port = 0
        self.grpc_port = 0
        self.metrics_port = 0

    # -- the serving repository ------------------------------------------------

    def linked(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for model in sorted(self.serve_dir.iterdir()) if self.serve_dir.exists() else []:
            versions = [int(p.name) for p in model.iterdir() if p.name.isdigit()]
            if versions:
                out[model.name] = max(versions)
        return out

    def link(self, name: str, version: int) -> None:
        """Make ``version`` the one linked version of ``name`` (each step atomic)."""
        model = self.serve_dir / name
        model.mkdir(parents=True, exist_ok=True)
        target = self.models_dir / name / str(version)
        tmp = model / f".{version}.tmp"
        tmp.unlink(missing_ok=True)
        os.symlink(target, tmp)
        os.replace(tmp, model / str(version))
        for other in model.iterdir():
            if other.name.isdigit() and other.name != str(version):
                other.unlink()
        _fsync_dir(model)

    def unlink(self, name: str) -> None:
        model = self.serve_dir / name
        if model.is_dir():
            for other in model.iterdir():
                other.unlink()
            model.rmdir()
            _fsync_dir(self.serve_dir)

    # -- the server ------------------------------------------------------------

    async def start(self) -> asyncio.Task[None]:
        """Start serving what is linked; returns once the HTTP endpoint answers."""
        import httpx

        from serving.server import serve
        from serving.settings import ControlMode, Settings

        c = self._config
        options: dict[str, Any] = {}
        if c["serve.cores"]:
            options["cores"] = c["serve.cores"]
        settings = Settings(
            model_repository=self.serve_dir,
            host=c["serve.host"],
            http_port=c["serve.http_port"],
            grpc_port=c["serve.grpc_port"],
            metrics_port=c["serve.metrics_port"],
            model_control_mode=ControlMode.EXPLICIT,
            load_models=("*",),
            **options,
        )
        logging.getLogger("sluice").addHandler(self._ports)
        self._task = asyncio.create_task(serve(settings), name="sluice-serve")
        while "HTTP" not in self._ports.ports or "metrics" not in self._ports.ports:
            if self._task.done():
                self._task.result()  # raises what stopped it
                raise RuntimeError("the serving core stopped before it listened")
            await asyncio.sleep(0.01)
        self.http_port = self._ports.ports["HTTP"]
        self.grpc_port = self._ports.ports.get("gRPC", c["serve.grpc_port"])
        self.metrics_port = self._ports.ports["metrics"]
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

    async def activate(self, name: str, version: int) -> str | None:
        """Serve ``version`` of ``name``; None once it serves, else why it could not."""
        self.link(name, version)
        response = await self._http.post(f"/v2/repository/models/{name}/load", json={})
        if response.status_code != 200:
            return _error(response)
        ready = await self._http.get(f"/v2/models/{name}/versions/{version}/ready")
        if ready.status_code != 200:
            return f"version {version} is not ready after loading"
        return None

    async def deactivate(self, name: str) -> None:
        self.unlink(name)
        await self._http.post(f"/v2/repository/models/{name}/unload", json={})

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
        response = await self._http.post(
            f"/v2/models/{name}/versions/{version}/infer", json=request
        )
        if response.status_code != 200:
            return f"golden request failed: {_error(response)}"
        return compare_golden(
            doc,
            response.json(),
            self._config["health.golden_atol"],
            self._config["health.golden_rtol"],
        )

    async def live_sample(self, name: str, version: int) -> LiveSample:
        host = self._config["serve.host"]
        response = await self._http.get(f"http://{host}:{self.metrics_port}/metrics")
        return parse_metrics(response.text, name, version)


def _error(response: Any) -> str:
    try:
        return str(response.json().get("error", response.text))
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:200]}"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
