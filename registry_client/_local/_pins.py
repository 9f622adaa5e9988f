"""Locks and pins: who may write the registry now, and which versions running deployments serve.

Writers serialize on ``.lock``, which makes two concurrent ``register`` calls get consecutive
version numbers; ``.gc.lock`` is shared while blobs are added and exclusive while garbage is
collected, so a collection never deletes a blob a registration is about to refer to.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from registry_client._errors import ConflictError, RegistryError
from registry_client._fsutil import atomic_write_json, exclusive_lock
from registry_client._local._format import Layout, now, read_json

__all__ = [
    "Pin",
    "adding_blobs",
    "collecting",
    "metadata_change",
    "read_pins",
    "refuse_if_pinned",
    "remove_pin",
    "write_pin",
]


@contextlib.contextmanager
def metadata_change(layout: Layout) -> Iterator[None]:
    """Held by every change to ``models/``: one writer at a time."""
    with exclusive_lock(layout.metadata_lock):
        yield


@contextlib.contextmanager
def adding_blobs(layout: Layout) -> Iterator[None]:
    """Held while blobs are written that no version refers to yet; many writers at once."""
    with exclusive_lock(layout.gc_lock, shared=True):
        yield


@contextlib.contextmanager
def collecting(layout: Layout) -> Iterator[None]:
    """Held to collect garbage: no blob being added, no metadata changing."""
    with exclusive_lock(layout.gc_lock), exclusive_lock(layout.metadata_lock):
        yield


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Pin:
    """A deployment's claim on versions; ``live`` unless its process is known to be gone."""

    def __init__(self, path: Path, data: Mapping[str, Any]) -> None:
        self.path = path
        self.deployment = str(data.get("deployment", path.stem))
        self.host = str(data.get("host", ""))
        self.pid = int(data.get("pid", 0))
        self.model_repository = str(data.get("model_repository", ""))
        self.models: dict[str, list[int]] = {
            k: [int(v) for v in vs] for k, vs in dict(data.get("models", {})).items()
        }

    @property
    def live(self) -> bool:
        if self.host != socket.gethostname() or not self.pid:
            return True  # another machine's process: cannot tell, so assume it runs
        return _pid_alive(self.pid)

    def describe(self) -> str:
        where = f" serving {self.model_repository}" if self.model_repository else ""
        return f"deployment '{self.deployment}' (pid {self.pid} on {self.host}{where})"


def read_pins(layout: Layout) -> list[Pin]:
    out = []
    for path in sorted(layout.pins_dir.glob("*.json")):
        with contextlib.suppress(FileNotFoundError, ValueError):
            out.append(Pin(path, read_json(path)))
    return out


def write_pin(
    layout: Layout,
    deployment: str,
    models: Mapping[str, Iterable[int]],
    model_repository: str = "",
) -> Path:
    """Record (replace) what ``deployment`` serves, as this process on this host."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in deployment)
    if not safe or safe.startswith("."):
        raise RegistryError(f"invalid deployment name {deployment!r}")
    path = layout.pins_dir / f"{safe}.json"
    atomic_write_json(
        path,
        {
            "deployment": deployment,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "model_repository": model_repository,
            "models": {k: sorted(set(v)) for k, v in models.items()},
            "updated_at": now(),
        },
    )
    return path


def remove_pin(layout: Layout, deployment: str) -> None:
    for pin in read_pins(layout):
        if pin.deployment == deployment:
            pin.path.unlink(missing_ok=True)


def refuse_if_pinned(layout: Layout, name: str, version: int) -> None:
    """ConflictError naming the live deployment that serves ``version`` of ``name``, if any."""
    for pin in read_pins(layout):
        if version in pin.models.get(name, []) and pin.live:
            raise ConflictError(
                f"version {version} of '{name}' is pinned by {pin.describe()}, "
                f"recorded in {pin.path}; stop that deployment first (or --force)"
            )
