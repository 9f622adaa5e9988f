"""A local-registry pull killed in the middle of a file resumes where its part file ends."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from registry_client import HttpOptions, LocalRegistry, Puller
from tests.unit.registry_client.conftest import sha

CHUNK = 64 * 1024
DATA = bytes(range(256)) * (16 * CHUNK // 256)  # 1 MiB, 16 chunks
KILL_AFTER = 5 * CHUNK

# Pulls models:/big/1 and kills itself with SIGKILL once KILL_AFTER bytes were copied.
_KILLED_PULL = """
import asyncio, os, signal, sys
from registry_client import HttpOptions, LocalRegistry, Puller

registry, repository, kill_after, chunk = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

def on_event(event):
    if event.kind == "progress" and event.done >= kill_after:
        os.kill(os.getpid(), signal.SIGKILL)

puller = Puller(LocalRegistry(registry, create=False), repository,
                options=HttpOptions(chunk_size=chunk), on_event=on_event)
asyncio.run(puller.pull("models:/big/1"))
"""


class _CountingFile:
    """A real file whose reads are counted."""

    def __init__(self, file: IO[bytes], counts: list[int]) -> None:
        self._file, self._counts = file, counts

    def read(self, size: int = -1) -> bytes:
        data = self._file.read(size)
        self._counts.append(len(data))
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)

    def __enter__(self) -> _CountingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()


@pytest.fixture
def registry(tmp_path: Path) -> LocalRegistry:
    reg = LocalRegistry(tmp_path / "reg")
    source = tmp_path / "model.onnx"
    source.write_bytes(DATA)
    reg.register("big", [source])
    return reg


@pytest.fixture
def blob_reads(registry: LocalRegistry, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Sizes of every read from the registry's blob of DATA (in this process)."""
    blob = registry.blob_path(sha(DATA))
    counts: list[int] = []
    real_open = Path.open

    def counting_open(self: Path, *args: Any, **kwargs: Any) -> Any:
        file = real_open(self, *args, **kwargs)
        return _CountingFile(file, counts) if self == blob else file

    monkeypatch.setattr(Path, "open", counting_open)
    yield counts


def _pull(registry: LocalRegistry, repository: Path) -> Any:
    puller = Puller(registry, repository, options=HttpOptions(chunk_size=CHUNK))
    return asyncio.run(puller.pull("models:/big/1"))


def test_a_pull_killed_mid_file_reads_only_the_rest_of_it_next_time(
    registry: LocalRegistry, repository: Path, blob_reads: list[int]
) -> None:
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_PULL, str(registry.root), str(repository),
         str(KILL_AFTER), str(CHUNK)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not (repository / "big").exists()  # nothing where the server would load it
    [part] = (repository / ".sluice" / "staging").rglob("*.part")
    kept = part.stat().st_size
    assert 0 < kept < len(DATA)

    result = _pull(registry, repository)

    assert sum(blob_reads) == len(DATA) - kept  # only the bytes the killed pull had not copied
    installed = result.path / "model.onnx"
    assert installed.read_bytes() == DATA
    lineage = json.loads((result.path / "lineage.json").read_text())
    assert lineage["files"] == [{"path": "model.onnx", "size": len(DATA), "digest": sha(DATA)}]
    assert not list((repository / ".sluice" / "staging").rglob("*.part"))


def test_a_part_file_of_something_else_is_not_resumed(
    registry: LocalRegistry, repository: Path, blob_reads: list[int]
) -> None:
    """A part without a record of its source (an older pull, another registry) starts over."""
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_PULL, str(registry.root), str(repository),
         str(KILL_AFTER), str(CHUNK)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    [part] = (repository / ".sluice" / "staging").rglob("*.part")
    part.write_bytes(b"\xff" * KILL_AFTER)  # same length, other bytes
    part.with_name(part.name + ".validator").unlink(missing_ok=True)

    result = _pull(registry, repository)

    assert sum(blob_reads) == len(DATA)
    assert (result.path / "model.onnx").read_bytes() == DATA
