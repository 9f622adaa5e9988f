"""What `pip install sluice` puts into site-packages and what each install path pulls in."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from setuptools import find_namespace_packages, find_packages

ROOT = Path(__file__).resolve().parents[2]
SERVER_STACK = ("starlette", "uvicorn", "uvloop", "httptools", "grpcio", "grpcio-health-checking")


def _project() -> dict:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0].lower() for r in requirements}


def test_the_wheel_installs_only_sluices_own_top_level_packages() -> None:
    include = _project()["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = find_packages(str(ROOT), include=include)
    assert {p.split(".")[0] for p in packages} == {"serving", "registry_client", "edge_agent"}
    everything = find_namespace_packages(str(ROOT), include=include)
    assert not [p for p in everything if p.split(".")[0] in {"benchmarks", "tests"}]
    assert "serving.loadgen" in packages  # the load generator ships; the scenario suite does not


def test_the_base_install_has_no_server_stack_and_every_runtime_extra_brings_it() -> None:
    project = _project()["project"]
    assert not _names(project["dependencies"]) & set(SERVER_STACK)
    extras = project["optional-dependencies"]
    assert set(SERVER_STACK) <= _names(extras["server"])
    for runtime in ("cpu", "gpu", "openvino"):
        assert "sluice[server]" in extras[runtime], runtime


def test_the_core_and_the_registry_client_import_no_server_stack() -> None:
    code = (
        "import sys\n"
        "import registry_client, serving.core, serving.manager, serving.loadgen\n"
        "heavy = ['starlette', 'uvicorn', 'grpc', 'httptools', 'jwt', 'onnxruntime']\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
