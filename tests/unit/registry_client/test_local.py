from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest

from registry_client import ConflictError, LocalRegistry, NotFound, parse_reference
from tests.unit.registry_client.conftest import sha


def _model(tmp_path: Path, content: bytes = b"onnx-bytes") -> Path:
    path = tmp_path / "src" / "model.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def test_register_numbers_versions_and_records_digests(tmp_path: Path) -> None:
    reg = LocalRegistry(tmp_path / "reg")
    v1 = reg.register("m", [_model(tmp_path, b"one")], tags={"stage": "dev"}, git_commit="abc",
                      dataset="imagenet@v2", description="first")  # fmt: skip
    v2 = reg.register("m", [_model(tmp_path, b"two")], aliases=["champion"])
    assert (v1.version, v2.version) == (1, 2)
    assert v1.files[0].digest == sha(b"one") and v1.files[0].size == 3
    assert v1.lineage.git_commit == "abc" and v1.lineage.dataset == "imagenet@v2"
    assert reg.find(parse_reference("models:/m@champion")).version == 2
    assert reg.find(parse_reference("models:/m@latest")).version == 2
    assert reg.find(parse_reference("models:/m?stage=dev")).version == 1
    assert [v.version for v in reg.search({"stage": "dev"})] == [1]


def test_a_directory_registers_its_tree(tmp_path: Path) -> None:
    src = tmp_path / "tree"
    (src / "weights").mkdir(parents=True)
    (src / "model.onnx").write_bytes(b"graph")
    (src / "weights" / "w.bin").write_bytes(b"w")
    version = LocalRegistry(tmp_path / "reg").register("m", [src])
    assert [f.path for f in version.files] == ["model.onnx", "weights/w.bin"]


def test_tags_aliases_and_missing_things(tmp_path: Path) -> None:
    reg = LocalRegistry(tmp_path / "reg")
    reg.register("m", [_model(tmp_path)])
    assert reg.set_tags("m", 1, {"a": "1", "b": "2"}, remove=["b"]).lineage.tags == {"a": "1"}
    reg.set_alias("m", "champion", 1)
    assert reg.get_version("m", 1).aliases == ("champion",)
    reg.set_alias("m", "champion", None)
    with pytest.raises(NotFound, match="no alias 'champion'"):
        reg.find(parse_reference("models:/m@champion"))
    with pytest.raises(NotFound):
        reg.find(parse_reference("models:/other/1"))
    with pytest.raises(NotFound):
        reg.set_alias("m", "x", 9)


def test_delete_is_refused_while_a_live_deployment_pins_the_version(tmp_path: Path) -> None:
    reg = LocalRegistry(tmp_path / "reg")
    reg.register("m", [_model(tmp_path, b"one")], aliases=["champion"])
    reg.register("m", [_model(tmp_path, b"two")])
    reg.pin("edge-1", {"m": [1]}, model_repository="/srv/models")
    with pytest.raises(ConflictError, match="pinned by deployment 'edge-1'"):
        reg.delete_version("m", 1)
    assert reg.delete_version("m", 2) == []
    reg.unpin("edge-1")
    assert reg.delete_version("m", 1) == ["champion"]
    assert not list((tmp_path / "reg" / "blobs" / "sha256").glob("*/*"))  # blobs collected
    assert reg.register("m", [_model(tmp_path)]).version == 3  # numbers are never reused


def test_a_pin_of_a_dead_process_does_not_block(tmp_path: Path) -> None:
    reg = LocalRegistry(tmp_path / "reg")
    reg.register("m", [_model(tmp_path)])
    proc = multiprocessing.get_context("spawn").Process(
        target=_pin_and_exit, args=(str(tmp_path / "reg"),)
    )
    proc.start()
    proc.join()
    assert reg.pins() and not reg.pins()[0].live
    reg.delete_version("m", 1)


def _pin_and_exit(root: str) -> None:
    LocalRegistry(root).pin("gone", {"m": [1]})


def _register_many(root: str, src: str, writer: int, count: int) -> None:
    reg = LocalRegistry(root)
    for i in range(count):
        path = Path(src) / f"w{writer}-{i}.onnx"
        path.write_bytes(f"{writer}-{i}".encode())
        reg.register("shared", [path], tags={"writer": str(writer)})


def test_two_concurrent_writers_get_distinct_consecutive_versions(tmp_path: Path) -> None:
    root, src = tmp_path / "reg", tmp_path / "src"
    src.mkdir()
    LocalRegistry(root)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_register_many, args=(str(root), str(src), w, 15)) for w in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        assert p.exitcode == 0
    versions = LocalRegistry(root).versions("shared")
    assert [v.version for v in versions] == list(range(1, 31))
    assert sorted(f.path for v in versions for f in v.files) == sorted(
        f"w{w}-{i}.onnx" for w in (1, 2) for i in range(15)
    )
    for v in versions:
        assert os.path.exists(v.files[0].source)


def test_a_non_registry_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "file").write_text("hi")
    with pytest.raises(Exception, match="neither empty nor a Sluice registry"):
        LocalRegistry(tmp_path / "x")
