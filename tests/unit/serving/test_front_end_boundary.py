"""Front ends translate only: they never reach the manager, a model version or a region.
Features built on the core (serving.monitoring) go through its public calls and seams
(observers, lifecycle listeners) the same way."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import serving

FRONT_ENDS = sorted(
    p
    for package in ("http", "grpc", "monitoring")
    for p in (Path(serving.__file__).parent / package).glob("*.py")
    if not p.name.endswith(("_pb2.py", "_pb2_grpc.py"))
)
# What belongs to the core: reaching it from a front end puts serving logic there.
FORBIDDEN_ATTRIBUTES = {"manager", "router", "shared_memory", "raw_input_spec"}
FORBIDDEN_IMPORTS = {"serving.manager", "serving.model", "serving.router"}
FORBIDDEN_NAMES = {"SharedMemoryRegistry", "output_references", "placed_parameters"}


@pytest.mark.parametrize("path", FRONT_ENDS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_front_end_module_stays_a_translator(path: Path) -> None:
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_ATTRIBUTES:
            found.append(f"line {node.lineno}: .{node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module in FORBIDDEN_IMPORTS or node.module.startswith("serving.manager"):
                found.append(f"line {node.lineno}: from {node.module}")
            found += [
                f"line {node.lineno}: {a.name}" for a in node.names if a.name in FORBIDDEN_NAMES
            ]
    assert found == []


def test_the_check_sees_the_front_ends() -> None:
    names = {f"{p.parent.name}/{p.name}" for p in FRONT_ENDS}
    assert {"http/infer_route.py", "http/request_codec.py", "grpc/codec.py"} <= names
    assert "monitoring/_server.py" in names
