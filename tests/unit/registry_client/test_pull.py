"""The pull engine: verification, atomic install, the content cache, lineage."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from registry_client import (
    ConflictError,
    FileEntry,
    InsufficientSpace,
    LocalRegistry,
    ModelVersion,
    Puller,
    VerificationError,
)
from tests.unit.registry_client.conftest import sha


class _FakeHttpRegistry:
    """A registry whose files are served by a MockTransport, digests chosen by the test."""

    def __init__(self, files: dict[str, bytes], digests: dict[str, str | None]) -> None:
        self.files = files
        self.digests = digests
        self.requests = 0

        def handle(request: httpx.Request) -> httpx.Response:
            self.requests += 1
            return httpx.Response(200, content=self.files[request.url.path.lstrip("/")])

        self.http = httpx.AsyncClient(transport=httpx.MockTransport(handle))

    async def resolve(self, ref: object) -> ModelVersion:
        entries = tuple(
            FileEntry(p, len(c), self.digests.get(p), source=f"http://peer.test/{p}")
            for p, c in sorted(self.files.items())
        )
        return ModelVersion("mlflow+http://peer.test", "m", 1, entries)


def _pull(registry: object, repo: Path, ref: str = "models:/m/1", **kw: object):  # type: ignore[no-untyped-def]
    return asyncio.run(Puller(registry, repo, **kw).pull(ref))  # type: ignore[arg-type]


def test_local_pull_installs_files_and_lineage(tmp_path: Path, repository: Path) -> None:
    reg = LocalRegistry(tmp_path / "reg")
    src = tmp_path / "model.onnx"
    src.write_bytes(b"graph")
    reg.register("m", [src], git_commit="c0ffee", tags={"stage": "prod"}, aliases=["champion"])
    result = _pull(reg, repository, "models:/m@champion")
    assert result.installed and result.path == repository / "m" / "1"
    assert (result.path / "model.onnx").read_bytes() == b"graph"
    lineage = json.loads((result.path / "lineage.json").read_text())
    assert lineage["lineage"]["git_commit"] == "c0ffee"
    assert lineage["digest_source"] == "registry"
    assert lineage["files"] == [{"path": "model.onnx", "size": 5, "digest": sha(b"graph")}]
    assert not _pull(reg, repository, "models:/m@champion").installed  # already there


def test_a_digest_mismatch_installs_nothing_and_names_the_file(repository: Path) -> None:
    registry = _FakeHttpRegistry({"model.onnx": b"graph"}, {"model.onnx": sha(b"other")})
    with pytest.raises(VerificationError, match=r"model\.onnx: digest mismatch"):
        _pull(registry, repository)
    assert not (repository / "m").exists()
    assert registry.requests == 2  # refetched once from scratch before failing


def test_first_pull_records_digests_then_verifies_against_them(repository: Path) -> None:
    registry = _FakeHttpRegistry({"model.onnx": b"graph"}, {})
    result = _pull(registry, repository)
    assert result.version.digest_source == "first-pull"
    (result.path.parent / "1").rename(repository / "moved")  # the version is gone from disk
    registry.files["model.onnx"] = b"tampered"
    with pytest.raises(VerificationError, match=r"model\.onnx"):
        _pull(registry, repository)
    assert not (repository / "m" / "1").exists()


def test_a_file_shared_by_two_versions_is_fetched_once(tmp_path: Path, repository: Path) -> None:
    reg = LocalRegistry(tmp_path / "reg")
    shared = tmp_path / "model.onnx"
    shared.write_bytes(b"same bytes")
    reg.register("m", [shared])
    reg.register("m", [shared])
    first = _pull(reg, repository, "models:/m/1")
    second = _pull(reg, repository, "models:/m/2")
    assert (first.downloaded_bytes, first.cached_files) == (10, 0)
    assert (second.downloaded_bytes, second.cached_files) == (0, 1)
    assert (second.path / "model.onnx").stat().st_ino == (first.path / "model.onnx").stat().st_ino


def test_a_foreign_version_directory_is_not_overwritten(tmp_path: Path, repository: Path) -> None:
    reg = LocalRegistry(tmp_path / "reg")
    src = tmp_path / "model.onnx"
    src.write_bytes(b"graph")
    reg.register("m", [src])
    (repository / "m" / "1").mkdir(parents=True)
    (repository / "m" / "1" / "model.onnx").write_bytes(b"hand-copied")
    with pytest.raises(ConflictError, match="--force"):
        _pull(reg, repository)
    result = _pull(reg, repository, force=True)
    assert (result.path / "model.onnx").read_bytes() == b"graph"


def test_not_enough_disk_space_fails_before_downloading(
    repository: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(100, 99, 1))  # type: ignore[attr-defined]
    registry = _FakeHttpRegistry({"model.onnx": b"graph"}, {})
    with pytest.raises(InsufficientSpace):
        _pull(registry, repository)
    assert registry.requests == 0
