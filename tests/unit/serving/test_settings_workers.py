"""``--workers auto``: one worker per CPU the process may use (serving.cpus)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from serving.cpus import available_cores
from serving.settings import add_arguments, settings_from


def _settings(tmp_path: Path, *argv: str, environ: dict[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    values = vars(parser.parse_args(["--model-repository", str(tmp_path), *argv]))
    return settings_from(values, environ or {}).workers


def test_auto_is_one_worker_per_available_core(tmp_path: Path) -> None:
    assert _settings(tmp_path, "--workers", "auto") == available_cores()
    assert _settings(tmp_path, environ={"SLUICE_WORKERS": "auto"}) == available_cores()
    assert _settings(tmp_path, "--workers", "3") == 3


def test_auto_follows_the_affinity_mask(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0})
    assert _settings(tmp_path, "--workers", "auto") == 1


def test_a_bad_value_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        _settings(tmp_path, "--workers", "many")
    with pytest.raises(ValueError, match="SLUICE_WORKERS"):
        _settings(tmp_path, environ={"SLUICE_WORKERS": "many"})
