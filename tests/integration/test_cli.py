"""The `sluice` command against a running server, as a user types it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.integration.server_process import ServerProcess

pytestmark = pytest.mark.integration


def sluice(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "serving", *args], capture_output=True, text=True, timeout=60
    )


def test_models_list(server: ServerProcess) -> None:
    done = sluice("models", "list", "--url", server.http_url)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["NAME", "VERSION", "STATE", "REASON"]
    assert any(line.split()[:3] == ["simple", "1", "READY"] for line in lines)
    assert any(line.startswith("broken") and "UNAVAILABLE" in line for line in lines)


def test_infer_prints_outputs(server: ServerProcess, tmp_path: Path) -> None:
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    np.save(tmp_path / "a.npy", a)
    done = sluice(
        "infer", "simple", "--url", server.http_url,
        "--input", f"INPUT0={tmp_path / 'a.npy'}", "--input", "INPUT1=[[" + ",".join(["2"] * 16) + "]]",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed["model_name"] == "simple"
    assert printed["outputs"]["OUTPUT0"]["data"] == (a + 2).reshape(-1).tolist()
    assert printed["outputs"]["OUTPUT1"]["shape"] == [1, 16]


def test_infer_bytes_model(server: ServerProcess) -> None:
    done = sluice(
        "infer", "identity_bytes", "--url", server.http_url, "--input", 'INPUT0=[["a", "bc"]]'
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["outputs"]["OUTPUT0"]["data"] == ["a", "bc"]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("infer", "no_such_model", "--input", "X=[1]"), "no_such_model"),
        (("infer", "simple", "--input", "NOPE=[1]"), "NOPE"),
        (("infer", "simple", "--input", "INPUT0"), "NAME=FILE"),
        (("infer", "simple", "--input", "INPUT0=missing.npy"), "no such file: missing.npy"),
        (("infer", "simple", "--input", "INPUT0=missing.json"), "no such file: missing.json"),
        (("models", "load", "simple"), "explicit"),
    ],
)
def test_failures_exit_non_zero_with_one_line(
    server: ServerProcess, args: tuple[str, ...], fragment: str
) -> None:
    done = sluice(*args, "--url", server.http_url)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sluice: error:") and fragment in lines[0], (
        done.stderr
    )


def test_unreachable_server() -> None:
    done = sluice("models", "list", "--url", "http://127.0.0.1:9")
    assert done.returncode == 1
    assert "cannot reach the server" in done.stderr


def test_config_prints_derived_config(example_repository: Path) -> None:
    done = sluice("config", str(example_repository / "identity_int8"), "--format", "json")
    assert done.returncode == 0, done.stderr
    config = json.loads(done.stdout)
    assert config["input"][0]["data_type"] == "TYPE_INT8"
    assert config["platform"] == "onnxruntime_onnx"
    bad = sluice("config", str(example_repository / "nothing_here"))
    assert bad.returncode == 1 and "nothing_here" in bad.stderr


def test_serve_refuses_a_missing_repository(tmp_path: Path) -> None:
    done = sluice("serve", "--model-repository", str(tmp_path / "absent"))
    assert done.returncode == 1
    assert "is not a directory" in done.stderr


def test_version() -> None:
    from serving import __version__

    done = sluice("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"sluice {__version__}\n"


# A protobuf runtime older than the generated code: the real runtime's own check, with the
# version it reports set to 5.29.5 (what pip leaves behind when another package pins protobuf<6).
_OLD_PROTOBUF = """
import sys
from google.protobuf import runtime_version
runtime_version.MAJOR, runtime_version.MINOR, runtime_version.PATCH = 5, 29, 5
from serving.cli import main
main(sys.argv[1:])
"""


@pytest.mark.parametrize("command", ["config", "serve"])
def test_a_protobuf_runtime_too_old_is_one_line(
    example_repository: Path, tmp_path: Path, command: str
) -> None:
    args = {
        "config": ["config", str(example_repository / "identity_int8")],
        "serve": ["serve", "--model-repository", str(example_repository), "--http-port", "0",
                  "--grpc-port", "0", "--metrics-port", "0"],
    }[command]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", _OLD_PROTOBUF, *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert re.fullmatch(
        r"sluice: error: protobuf 5\.29\.5 is too old: \S+\.proto was generated for protobuf "
        r"(\d+\.\d+\.\d+) or newer; install protobuf>=\1(,<\d+)?( or reinstall [^\n]*)?\n",
        done.stderr,
    ), done.stderr
