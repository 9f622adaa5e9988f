"""The ``sluice`` parser is assembled from the command families."""

from __future__ import annotations

import subprocess
import sys

import pytest

from serving.cli import main


def test_every_command_family_is_there(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    shown = capsys.readouterr().out
    for command in ("serve", "config", "models", "infer", "pull", "registry"):
        assert f"\n    {command} " in shown, command


def test_python_dash_m_serving_is_the_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "serving", "models", "--help"], capture_output=True, text=True, timeout=60
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: sluice models ")
