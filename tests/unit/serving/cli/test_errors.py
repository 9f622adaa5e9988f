"""Failures users meet outside Sluice's own errors are one line."""

from __future__ import annotations

import httpx
import pytest

from serving.cli import main
from serving.cli._errors import explain


def test_an_unreachable_server_is_named() -> None:
    line = explain(httpx.ConnectError("Connection refused"), "http://127.0.0.1:9")
    assert line == "cannot reach the server at http://127.0.0.1:9: Connection refused"


def test_a_bug_is_not_explained_away() -> None:
    assert explain(KeyError("x"), "http://127.0.0.1:9") is None


def test_a_command_error_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["config", "/nonexistent/model"])
    assert exited.value.code == 1
    assert capsys.readouterr().err == "sluice: error: /nonexistent/model is not a directory\n"
