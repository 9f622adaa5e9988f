from __future__ import annotations

import os
from pathlib import Path

import pytest
from google.protobuf import text_format

from serving.config import model_config_pb2 as pb
from serving.errors import NotFound
from serving.repository import (
    ModelDirectory,
    fingerprint,
    model_file,
    scan_repository,
    select_versions,
)


def touch(path: Path, data: bytes = b"onnx") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    for version in ("1", "3", "12"):
        touch(root / "resnet" / version / "model.onnx")
    touch(root / "resnet" / "config.pbtxt", b'name: "resnet"')
    (root / "resnet" / "07").mkdir()  # not canonical: would alias version 7
    (root / "resnet" / "-1").mkdir()
    (root / "resnet" / "v2").mkdir()
    (root / "resnet" / ".4").mkdir()
    touch(root / "resnet" / "5")  # a file, not a version directory
    (root / "empty").mkdir()
    (root / ".git" / "1").mkdir(parents=True)
    touch(root / "README.md")
    return root


def test_scan_lists_models_and_numeric_versions(repo: Path):
    models = scan_repository(repo)

    assert models == {
        "empty": ModelDirectory("empty", repo / "empty", ()),
        "resnet": ModelDirectory("resnet", repo / "resnet", (1, 3, 12)),
    }


def test_model_directory_is_frozen(repo: Path):
    entry = scan_repository(repo)["resnet"]

    with pytest.raises(AttributeError):
        entry.versions = (1,)  # type: ignore[misc]


def test_scan_of_missing_repository(tmp_path: Path):
    with pytest.raises(NotFound, match="is not a directory"):
        scan_repository(tmp_path / "nope")


def policy(text: str) -> pb.ModelVersionPolicy:
    return text_format.Parse(text, pb.ModelVersionPolicy())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", [12]),
        ("latest { num_versions: 1 }", [12]),
        ("latest { num_versions: 2 }", [3, 12]),
        ("latest { num_versions: 10 }", [1, 3, 12]),
        ("all { }", [1, 3, 12]),
        ("specific { versions: [12, 1, 4] }", [1, 12]),
        ("specific { versions: [4] }", []),
    ],
)
def test_select_versions(text: str, expected: list[int]):
    assert select_versions(policy(text), [12, 1, 3]) == expected


def test_select_versions_with_nothing_on_disk():
    assert select_versions(policy("all {}"), []) == []
    assert select_versions(policy("latest { num_versions: 2 }"), []) == []


def test_model_file_default_and_configured(tmp_path: Path):
    assert model_file(tmp_path, 3, pb.ModelConfig()) == tmp_path / "3" / "model.onnx"
    configured = pb.ModelConfig(default_model_filename="net.onnx")
    assert model_file(tmp_path, 3, configured) == tmp_path / "3" / "net.onnx"


def test_fingerprint_changes_when_a_version_changes(repo: Path):
    version = repo / "resnet" / "3"
    before = fingerprint(version)

    assert before == fingerprint(version)
    touch(version / "model.onnx", b"a different model")
    assert fingerprint(version) != before


def test_fingerprint_covers_config_and_external_weights(repo: Path):
    version = repo / "resnet" / "3"
    before = fingerprint(version)
    config = repo / "resnet" / "config.pbtxt"
    stat = config.stat()
    os.utime(config, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    after_config = fingerprint(version)
    touch(version / "weights" / "w.bin")

    assert after_config != before
    assert fingerprint(version) != after_config
    assert [name for name, _, _ in fingerprint(version)] == [
        "config.pbtxt",
        "model.onnx",
        "weights/w.bin",
    ]


def test_fingerprint_ignores_other_versions(repo: Path):
    before = fingerprint(repo / "resnet" / "3")

    touch(repo / "resnet" / "12" / "model.onnx", b"changed")

    assert fingerprint(repo / "resnet" / "3") == before


def test_fingerprint_without_config_or_files(repo: Path):
    assert fingerprint(repo / "empty" / "1") == ()
    touch(repo / "empty" / "1" / "model.onnx")
    assert [name for name, _, _ in fingerprint(repo / "empty" / "1")] == ["model.onnx"]
