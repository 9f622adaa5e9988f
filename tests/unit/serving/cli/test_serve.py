"""``sluice serve``: its flags and variables come from serving.settings; faults are one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from serving import __version__
from serving.cli import main
from serving.settings import options


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


# `sluice` where `import onnxruntime` fails, as after `pip install sluice` without an extra.
_WITHOUT_ONNXRUNTIME = """
import sys
sys.modules["onnxruntime"] = None
from serving.cli import main
main(sys.argv[1:])
"""


def test_serve_without_onnx_runtime_names_the_extras(tmp_path: Path) -> None:
    ports = ["--http-port", "0", "--grpc-port", "0", "--metrics-port", "0"]
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_ONNXRUNTIME, "serve", "--model-repository", str(tmp_path), *ports],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr == (
        "sluice: error: no ONNX Runtime is installed: "
        "pip install 'sluice[cpu]' (or [gpu], [openvino])\n"
    )


def test_the_serve_flags_are_the_settings(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    shown = capsys.readouterr().out
    assert [o.flag for o in options().values() if o.flag not in shown] == []
