from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from serving.examples import write_repository
from tests.integration.server_process import ServerProcess

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def example_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("repository")
    write_repository(repo)
    # A model whose file is not ONNX: it must fail alone, with a reason.
    (repo / "broken" / "1").mkdir(parents=True)
    (repo / "broken" / "1" / "model.onnx").write_bytes(b"this is not an onnx model")
    # A version directory without its model file, next to a config that names it.
    (repo / "missing_file" / "1").mkdir(parents=True)
    (repo / "missing_file" / "config.pbtxt").write_text(
        'name: "missing_file"\ninput [{ name: "X" data_type: TYPE_FP32 dims: [2] }]\n'
        'output [{ name: "Y" data_type: TYPE_FP32 dims: [2] }]\n'
    )
    return repo


@pytest.fixture(scope="session")
def server(
    example_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """One server over the example repository, shared by the read-mostly tests."""
    proc = ServerProcess(example_repository, log_dir=tmp_path_factory.mktemp("logs"))
    yield proc
    proc.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        for name in ("server", "explicit_server", "poll_server", "workers_server", "fresh_server"):
            proc = item.funcargs.get(name) if hasattr(item, "funcargs") else None
            if isinstance(proc, ServerProcess):
                report.sections.append((f"{name} log", proc.log()[-6000:]))
