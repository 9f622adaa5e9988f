"""A failed model load is counted once, under the version that failed, and logged once."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from serving.errors import InvalidArgument
from serving.examples import write_repository
from serving.manager import ModelManager
from serving.metrics import Metrics
from serving.settings import ControlMode, Settings

MODEL = "identity_fp32"
# The graph's input is INPUT0: a config naming another input cannot load.
WRONG_INPUT = 'input [{ name: "NOT_AN_INPUT" data_type: TYPE_FP32 dims: [-1] }]\n'


def _failures(metrics: Metrics) -> dict[str, float]:
    """``version`` label -> count of sluice_model_load_failures_total for MODEL."""
    return {
        sample.labels["version"]: sample.value
        for family in metrics.registry.collect()
        for sample in family.samples
        if sample.name == "sluice_model_load_failures_total" and sample.labels["model"] == MODEL
    }


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.ERROR and r.name.startswith("sluice") and MODEL in r.getMessage()
    ]


def _start(repo: Path, mode: ControlMode, metrics: Metrics, load: bool = False) -> None:
    async def main() -> None:
        manager = ModelManager(
            Settings(model_repository=repo, model_control_mode=mode, cores=1), metrics
        )
        try:
            await manager.start()
            if load:
                with pytest.raises(InvalidArgument, match="NOT_AN_INPUT"):
                    await manager.load(MODEL)
        finally:
            await manager.close()

    asyncio.run(main())


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    write_repository(tmp_path, [MODEL])
    return tmp_path


def test_a_config_that_contradicts_the_graph_counts_and_logs_once_at_start(
    repo: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (repo / MODEL / "config.pbtxt").write_text(WRONG_INPUT)
    metrics = Metrics()
    with caplog.at_level(logging.INFO):
        _start(repo, ControlMode.NONE, metrics)
    assert _failures(metrics) == {"1": 1.0}
    [error] = _errors(caplog)
    assert "NOT_AN_INPUT" in error and "version 1" in error


def test_a_failed_repository_load_counts_and_logs_once(
    repo: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (repo / MODEL / "config.pbtxt").write_text(WRONG_INPUT)
    metrics = Metrics()
    with caplog.at_level(logging.INFO):
        _start(repo, ControlMode.EXPLICIT, metrics, load=True)
    assert _failures(metrics) == {"1": 1.0}
    assert len(_errors(caplog)) == 1


def test_a_version_whose_file_is_not_a_model_counts_and_logs_once(
    repo: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (repo / MODEL / "1" / "model.onnx").write_bytes(b"not a model")
    metrics = Metrics()
    with caplog.at_level(logging.INFO):
        _start(repo, ControlMode.NONE, metrics)
    assert _failures(metrics) == {"1": 1.0}
    assert len(_errors(caplog)) == 1
