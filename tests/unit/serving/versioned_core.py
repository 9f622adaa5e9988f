"""identity_fp32 with several versions all serving, and a real core over it: what the
router, traffic-split and rollout tests run through."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path

from serving.core import InferenceCore
from serving.examples import write_repository
from serving.manager import ModelManager
from serving.metrics import Metrics
from serving.settings import Settings

MODEL = "identity_fp32"


def write_versions(repo: Path, count: int) -> Path:
    """``repo`` holding MODEL with versions 1..``count`` (the same identity model), all serving."""
    write_repository(repo, [MODEL])
    (repo / MODEL / "config.pbtxt").write_text("version_policy: { all: {} }\n")
    for version in range(2, count + 1):
        (repo / MODEL / str(version)).mkdir()
        shutil.copy(repo / MODEL / "1" / "model.onnx", repo / MODEL / str(version))
    return repo


def run_core(repo: Path, scenario: Callable[[InferenceCore], Awaitable[None]]) -> None:
    """Start a core on ``repo``, run ``scenario`` with it, and close it."""

    async def main() -> None:
        settings = Settings(model_repository=repo, cores=1)
        metrics = Metrics()
        core = InferenceCore(settings, ModelManager(settings, metrics), metrics)
        await core.start()
        try:
            await scenario(core)
        finally:
            await core.close()

    asyncio.run(main())
