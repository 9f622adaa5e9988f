"""``sluice serve``: its flags and variables come from serving.settings; faults are one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving import __version__
from serving.cli import main


def test_a_bad_variable_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SLUICE_HTTP_PORT", "eighty")
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--model-repository", str(tmp_path)])
    assert exited.value.code == 1
    assert (
        capsys.readouterr().err == "sluice: error: $SLUICE_HTTP_PORT: 'eighty' is not an integer\n"
    )


def test_a_bad_server_variable_leaves_other_commands_alone(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SLUICE_HTTP_PORT", "eighty")
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"sluice {__version__}\n"
