"""A bounded fuzz campaign against a real server over HTTP and gRPC.

2,000 hostile requests per protocol from a fixed seed (the rules of what is legal
are in ``tests.fuzz.campaign``): the server must stay up, answer no unexpected
status, and still answer a valid request correctly on both protocols afterwards.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from serving.examples import write_repository
from tests.fuzz.campaign import MODELS, run_campaign
from tests.integration.server_process import ServerProcess

pytestmark = pytest.mark.integration


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    write_repository(tmp_path / "models", MODELS)
    proc = ServerProcess(tmp_path / "models", log_dir=tmp_path)
    yield proc
    proc.stop()


def test_hostile_requests_get_legal_answers(server: ServerProcess) -> None:
    result = run_campaign(
        server.http_url,
        server.grpc_url,
        server.proc.pid,
        http_requests=2000,
        grpc_requests=2000,
        seed=1,
        alive=server.alive,
    )
    report = json.dumps(result.to_json(), indent=1)[:6000]
    assert result.alive, f"the server died:\n{server.log()[-4000:]}\n{report}"
    assert result.requests == {"http": 2000, "grpc": 2000}
    assert result.unexpected_total == 0, report
    assert result.valid_after, f"a valid request failed after the campaign\n{report}"
    # Most requests reached the decoders rather than being turned away at the door.
    assert sum(result.counts["http"].get(s, 0) for s in ("200", "400")) > 1000, report
    assert result.counts["grpc"].get("INVALID_ARGUMENT", 0) > 300, report
