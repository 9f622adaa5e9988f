"""A registry follower records its deployments in the local registry's audit log."""

from __future__ import annotations

from pathlib import Path

from registry_client import Follower, LocalRegistry
from serving.manager import ModelManager
from tests.unit.registry_client.test_follow import (  # noqa: F401 (fixtures)
    NAME,
    _register,
    _run,
    onnx_file,
    registry,
    repo,
)


def test_deploys_and_the_undeploy_are_in_the_history(
    repo: Path,  # noqa: F811
    registry: LocalRegistry,  # noqa: F811
    onnx_file: Path,  # noqa: F811
) -> None:
    _register(registry, onnx_file, champion=True)
    registry.audit.append("register", f"{NAME}:1", user="ana")

    async def scenario(m: ModelManager, f: Follower) -> None:
        registry.set_alias(NAME, "champion", _register(registry, onnx_file))
        assert await f.sync()
        assert m.ready_versions(NAME) == ["2"]
        assert await f.sync()  # nothing moved: nothing recorded

    _run(repo, registry.uri, scenario)
    history = registry.audit.history(NAME)
    assert [(r["action"], r["subject"], r["user"]) for r in history] == [
        ("register", f"{NAME}:1", "ana"),
        ("deploy", f"{NAME}:1", "unit-test"),
        ("deploy", f"{NAME}:2", "unit-test"),
        ("undeploy", f"{NAME}:2", "unit-test"),
    ]
    assert history[2]["details"]["was"] == [1]
    assert history[2]["details"]["model_repository"] == str(repo)
    assert registry.audit.verify() == 4
