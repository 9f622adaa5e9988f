"""The protocol-neutral core every front end calls.

Front ends translate the wire into these calls and the results back; they hold
no serving logic of their own.
"""

from __future__ import annotations

from typing import Any

from serving import __version__
from serving.errors import InvalidArgument
from serving.manager import ModelManager
from serving.metrics import Metrics
from serving.model import TensorSpec
from serving.settings import Settings
from serving.types import InferRequest, InferResponse

__all__ = ["EXTENSIONS", "InferenceCore"]

# Only what is implemented: tools switch features on from this list.
EXTENSIONS = (
    "binary_tensor_data",
    "model_configuration",
    "model_repository",
    "statistics",
)


class InferenceCore:
    def __init__(self, settings: Settings, manager: ModelManager, metrics: Metrics) -> None:
        self.settings = settings
        self.manager = manager
        self.metrics = metrics
        self._started = False

    async def start(self) -> None:
        await self.manager.start()
        self._started = True

    async def close(self) -> None:
        await self.manager.close()

    # -- health and metadata -------------------------------------------------

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        """Ready once the start-up loads have finished; a model that failed to load
        shows in the repository index and its own readiness, not here."""
        return self._started

    def server_metadata(self) -> dict[str, Any]:
        return {"name": "sluice", "version": __version__, "extensions": list(EXTENSIONS)}

    def model_metadata(self, name: str, version: str = "") -> dict[str, Any]:
        mv = self.manager.get(name, version)
        return mv.metadata(self.manager.ready_versions(name))

    def model_ready(self, name: str, version: str = "") -> bool:
        try:
            self.manager.get(name, version)
        except InvalidArgument:
            raise
        except Exception:
            return False
        return True

    def model_config(self, name: str, version: str = "") -> dict[str, Any]:
        from serving.config import config_to_json

        return config_to_json(self.manager.get(name, version).config)

    def raw_input(self, name: str, version: str = "") -> TensorSpec:
        return self.manager.get(name, version).raw_input_spec()

    # -- statistics ------------------------------------------------------------

    def model_statistics(self, name: str = "", version: str = "") -> dict[str, Any]:
        if name:
            if version:
                versions = [self.manager.get(name, version)]
            else:
                self.manager.get(name)  # raises when unknown or not ready
                versions = [v for v in self.manager.serving_versions() if v.name == name]
        else:
            versions = self.manager.serving_versions()
        versions.sort(key=lambda v: (v.name, v.version))
        return {"model_stats": [v.stats.to_json(v.name, v.version) for v in versions]}

    # -- repository ------------------------------------------------------------

    def repository_index(self, ready_only: bool = False) -> list[dict[str, str]]:
        return self.manager.index(ready_only)

    async def load_model(self, name: str, config_override: Any = None) -> None:
        await self.manager.load(name, config_override)

    async def unload_model(self, name: str) -> None:
        await self.manager.unload(name)

    # -- inference -------------------------------------------------------------

    async def infer(self, request: InferRequest) -> InferResponse:
        mv = self.manager.get(request.model_name, request.model_version)
        return await mv.infer(request)
