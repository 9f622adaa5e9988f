"""The registry follower against a real local registry and a real ModelManager (through
``serving.following.ManagerTarget``, as ``sluice serve --registry`` runs it)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
import pytest

from registry_client import ConflictError, Follower, LocalRegistry
from serving.examples import build_identity, write_repository
from serving.following import ManagerTarget
from serving.manager import ModelManager
from serving.metrics import Metrics
from serving.model import lineage_parameters
from serving.settings import Settings
from serving.types import InferInput, InferRequest

NAME = "ident"
CHAMPION = f"models:/{NAME}@champion"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    return path


@pytest.fixture
def onnx_file(tmp_path: Path) -> Path:
    path = tmp_path / "files" / "model.onnx"
    path.parent.mkdir()
    path.write_bytes(build_identity("FP32"))
    return path


@pytest.fixture
def registry(tmp_path: Path) -> LocalRegistry:
    return LocalRegistry(tmp_path / "registry")


def _register(registry: LocalRegistry, onnx_file: Path, *, champion: bool = False) -> int:
    aliases = ["champion"] if champion else []
    return registry.register(NAME, [onnx_file], aliases=aliases, git_commit="c0ffee").version


def _request() -> InferRequest:
    data = np.array([[1.5, 2.5]], dtype=np.float32)
    return InferRequest(NAME, (InferInput("INPUT0", "FP32", (1, 2), data),))


def _follower(
    manager: ModelManager, uri: str, *, retention: int = 3, poll_secs: float = 30.0
) -> Follower:
    return Follower(
        ManagerTarget(manager),
        uri,
        [CHAMPION],
        deployment="unit-test",
        poll_secs=poll_secs,
        retention=retention,
        max_backoff_secs=0.2,
    )


def _run(
    repo: Path,
    uri: str,
    scenario: Callable[[ModelManager, Follower], Awaitable[None]],
    **kwargs: float,
) -> None:
    async def main() -> None:
        manager = ModelManager(Settings(model_repository=repo, cores=1), Metrics())
        follower = _follower(manager, uri, **kwargs)  # type: ignore[arg-type]
        try:
            await follower.start()  # as serve() does: before the manager's initial load
            await manager.start()
            await scenario(manager, follower)
        finally:
            await follower.close()
            await manager.close()

    asyncio.run(main())


def _on_disk(repo: Path) -> list[int]:
    return sorted(int(p.name) for p in (repo / NAME).iterdir() if p.name.isdigit())


async def _until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


def test_pulls_at_start_and_follows_the_alias_up_and_down(
    repo: Path, registry: LocalRegistry, onnx_file: Path
) -> None:
    _register(registry, onnx_file, champion=True)

    async def scenario(m: ModelManager, f: Follower) -> None:
        assert m.ready_versions(NAME) == ["1"]
        assert (await m.get(NAME).infer(_request())).model_version == "1"

        registry.set_alias(NAME, "champion", _register(registry, onnx_file))
        assert await f.sync()
        assert m.ready_versions(NAME) == ["2"]
        assert (await m.get(NAME).infer(_request())).model_version == "2"
        assert _on_disk(repo) == [1, 2]  # the old version stays for rollback

        registry.set_alias(NAME, "champion", 1)  # rollback: below the newest on disk
        assert await f.sync()
        assert m.ready_versions(NAME) == ["1"]
        assert (await m.get(NAME).infer(_request())).model_version == "1"
        assert list(m.get(NAME).config.version_policy.specific.versions) == [1]

    _run(repo, registry.uri, scenario)


def test_an_alias_move_under_load_fails_no_request(
    repo: Path, registry: LocalRegistry, onnx_file: Path
) -> None:
    _register(registry, onnx_file, champion=True)

    async def scenario(m: ModelManager, f: Follower) -> None:
        seen: dict[str, int] = {}
        failures: list[BaseException] = []
        stop = asyncio.Event()

        async def client() -> None:
            while not stop.is_set():
                try:
                    response = await m.get(NAME).infer(_request())
                except Exception as exc:
                    failures.append(exc)
                else:
                    seen[response.model_version] = seen.get(response.model_version, 0) + 1
                await asyncio.sleep(0)

        clients = [asyncio.create_task(client()) for _ in range(4)]
        await _until(lambda: seen.get("1", 0) > 20)
        registry.set_alias(NAME, "champion", _register(registry, onnx_file))
        assert await f.sync()
        await _until(lambda: seen.get("2", 0) > 20)
        stop.set()
        await asyncio.gather(*clients)
        assert failures == []
        assert set(seen) == {"1", "2"}

    _run(repo, registry.uri, scenario)


def test_unreachable_at_start_serves_the_disk_then_follows(
    repo: Path, tmp_path: Path, onnx_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_repository(repo, ["identity_fp32"])
    (repo / "identity_fp32").rename(repo / NAME)  # version 1, put there by hand
    root = tmp_path / "not-yet"  # no registry there yet: cannot be opened

    async def scenario(m: ModelManager, f: Follower) -> None:
        assert m.ready_versions(NAME) == ["1"]  # what was on disk
        for _ in range(3):
            assert not await f.sync()
        registry = LocalRegistry(root)
        _register(registry, onnx_file)
        _register(registry, onnx_file, champion=True)  # version 2
        await _until(lambda: m.ready_versions(NAME) == ["2"])  # the background retry
        assert _on_disk(repo) == [1, 2]

    with caplog.at_level(logging.INFO, logger="sluice.registry"):
        _run(repo, str(root), scenario, poll_secs=0.05)
    unavailable = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(unavailable) == 1, [r.getMessage() for r in caplog.records]
    assert any("answers again" in r.getMessage() for r in caplog.records)


def test_a_restart_without_the_registry_serves_the_version_followed_last(
    repo: Path, tmp_path: Path, registry: LocalRegistry, onnx_file: Path
) -> None:
    _register(registry, onnx_file)
    _register(registry, onnx_file, champion=True)
    registry.set_alias(NAME, "champion", 1)

    async def first(m: ModelManager, f: Follower) -> None:
        assert m.ready_versions(NAME) == ["1"]
        registry.set_alias(NAME, "champion", 2)
        assert await f.sync()
        registry.set_alias(NAME, "champion", 1)
        assert await f.sync()
        assert _on_disk(repo) == [1, 2]

    _run(repo, registry.uri, first)
    registry.root.rename(tmp_path / "gone")

    async def second(m: ModelManager, f: Follower) -> None:
        assert not await f.sync()
        assert m.ready_versions(NAME) == ["1"]  # not the newest on disk

    _run(repo, registry.uri, second)


def test_retention_keeps_the_newest_and_the_serving_version(
    repo: Path, registry: LocalRegistry, onnx_file: Path
) -> None:
    for _ in range(4):
        _register(registry, onnx_file)
    registry.set_alias(NAME, "champion", 1)

    async def scenario(m: ModelManager, f: Follower) -> None:
        (repo / NAME / "0").mkdir()  # put there by hand: never deleted
        (repo / NAME / "0" / "model.onnx").write_bytes(onnx_file.read_bytes())
        for version in (2, 3):
            registry.set_alias(NAME, "champion", version)
            assert await f.sync()
        assert _on_disk(repo) == [0, 2, 3]
        registry.set_alias(NAME, "champion", 1)  # rollback pulls version 1 again
        assert await f.sync()
        assert m.ready_versions(NAME) == ["1"]
        assert _on_disk(repo) == [0, 1, 2, 3]  # the newest two, plus the serving one
        registry.set_alias(NAME, "champion", 4)
        assert await f.sync()
        assert m.ready_versions(NAME) == ["4"]
        assert _on_disk(repo) == [0, 3, 4]

    _run(repo, registry.uri, scenario, retention=2)


def test_pins_follow_the_serving_version_and_go_on_close(
    repo: Path, registry: LocalRegistry, onnx_file: Path
) -> None:
    _register(registry, onnx_file, champion=True)

    async def scenario(m: ModelManager, f: Follower) -> None:
        (pin,) = registry.pins()
        assert pin.deployment == "unit-test"
        assert pin.models == {NAME: [1]}
        assert pin.model_repository == str(repo)
        with pytest.raises(ConflictError, match="pinned by deployment 'unit-test'"):
            registry.delete_version(NAME, 1)
        registry.set_alias(NAME, "champion", _register(registry, onnx_file))
        assert await f.sync()
        assert [p.models for p in registry.pins()] == [{NAME: [2]}]
        registry.delete_version(NAME, 1)  # no longer served: allowed
        with pytest.raises(ConflictError):
            registry.delete_version(NAME, 2)

    _run(repo, registry.uri, scenario)
    assert registry.pins() == []


def test_a_reference_that_fails_does_not_hold_up_the_others(
    repo: Path, registry: LocalRegistry, onnx_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _register(registry, onnx_file, champion=True)

    async def main() -> None:
        manager = ModelManager(Settings(model_repository=repo, cores=1), Metrics())
        refs = [CHAMPION, "models:/missing@champion"]
        follower = Follower(ManagerTarget(manager), registry.uri, refs, deployment="unit-test")
        async with follower:
            await manager.start()
            assert manager.ready_versions(NAME) == ["1"]
            registry.set_alias(NAME, "champion", _register(registry, onnx_file))
            assert await follower.sync()  # reachable: no backoff for the others
            assert await follower.sync()
            assert manager.ready_versions(NAME) == ["2"]
        await manager.close()

    with caplog.at_level(logging.WARNING, logger="sluice.registry"):
        asyncio.run(main())
    missing = [r for r in caplog.records if "no registered model 'missing'" in r.getMessage()]
    assert len(missing) == 1  # once, not every round


def test_a_version_that_fails_to_load_leaves_the_old_one_serving(
    repo: Path, registry: LocalRegistry, onnx_file: Path, tmp_path: Path
) -> None:
    _register(registry, onnx_file, champion=True)
    broken = tmp_path / "broken" / "model.onnx"
    broken.parent.mkdir()
    broken.write_bytes(b"not an onnx model")

    async def scenario(m: ModelManager, f: Follower) -> None:
        registry.set_alias(NAME, "champion", registry.register(NAME, [broken]).version)
        assert await f.sync()
        assert m.ready_versions(NAME) == ["1"]
        assert (await m.get(NAME).infer(_request())).model_version == "1"
        assert [p.models for p in registry.pins()] == [{NAME: [1]}]
        registry.set_alias(NAME, "champion", _register(registry, onnx_file))  # version 3
        assert await f.sync()
        assert m.ready_versions(NAME) == ["3"]

    _run(repo, registry.uri, scenario)


def test_lineage_shows_in_metadata_parameters(
    repo: Path, registry: LocalRegistry, onnx_file: Path
) -> None:
    registry.register(NAME, [onnx_file], aliases=["champion"], git_commit="c0ffee",
                      run_id="run-7", tags={"stage": "prod"})  # fmt: skip

    async def scenario(m: ModelManager, f: Follower) -> None:
        params = m.get(NAME).metadata(m.ready_versions(NAME))["parameters"]
        assert params["lineage.registry"] == registry.uri
        assert params["lineage.version"] == "1"
        assert params["lineage.git_commit"] == "c0ffee"
        assert params["lineage.run_id"] == "run-7"
        assert params["lineage.tags.stage"] == "prod"
        assert params["lineage.digest_source"] == "registry"
        assert "execution_providers" in params
        assert all(isinstance(v, str) for v in params.values())

    _run(repo, registry.uri, scenario)


def test_lineage_parameters_of_a_version_not_pulled_are_empty(tmp_path: Path) -> None:
    assert lineage_parameters(tmp_path) == {}
    (tmp_path / "lineage.json").write_text("[not an object]")
    assert lineage_parameters(tmp_path) == {}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"registry_models": (CHAMPION,)}, "--model needs --registry"),
        ({"registry": "/r"}, "--registry needs at least one --model"),
        (
            {"registry": "/r", "registry_models": (CHAMPION,), "registry_retention": 0},
            "--registry-retention must be at least 1",
        ),
        (
            {"registry": "/r", "registry_models": (CHAMPION,), "registry_poll_secs": 0},
            "--registry-poll-secs must be positive",
        ),
        ({"registry": "/r", "registry_models": ("models:/x@bad alias",)}, "invalid alias"),
    ],
)
def test_settings_check_the_registry_flags(
    tmp_path: Path, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Settings(model_repository=tmp_path, **kwargs)  # type: ignore[arg-type]
