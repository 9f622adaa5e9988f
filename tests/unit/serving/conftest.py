from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from serving.shared_memory import SHM_ROOT, SharedMemoryRegistry

ShmWriter = Callable[..., None]


@pytest.fixture
def shm_key() -> Iterator[str]:
    """A fresh 64-byte POSIX shared-memory object; yields its key ("/name")."""
    name = f"sluice-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    path = Path(SHM_ROOT) / name
    path.write_bytes(bytes(64))
    yield "/" + name
    path.unlink(missing_ok=True)


@pytest.fixture
def shm_registry(shm_key: str) -> Iterator[tuple[SharedMemoryRegistry, ShmWriter]]:
    """A registry with region "r" over all 64 bytes of ``shm_key``, and a writer for them."""
    registry = SharedMemoryRegistry()
    registry.register("r", shm_key, 0, 64)
    path = Path(SHM_ROOT) / shm_key[1:]

    def write(data: bytes, at: int = 0) -> None:
        with path.open("r+b") as f:
            f.seek(at)
            f.write(data)

    yield registry, write
    registry.close()
