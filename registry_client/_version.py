"""A resolved model version: concrete number, its files and where it came from."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field, replace
from typing import Any

__all__ = ["FileEntry", "Lineage", "ModelVersion", "format_timestamp"]


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One file of a version.

    ``path`` is relative (POSIX separators) inside the version directory; ``digest`` is
    ``sha256:<hex>`` when known; ``source`` is where the bytes are fetched from (an
    http(s) URL or a local file path) and is never written to lineage.
    """

    path: str
    size: int | None = None
    digest: str | None = None
    source: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "digest": self.digest}


@dataclass(frozen=True, slots=True)
class Lineage:
    run_id: str = ""
    git_commit: str = ""
    dataset: str = ""
    description: str = ""
    created_at: str = ""  # ISO 8601, UTC
    created_by: str = ""
    source: str = ""  # the registry's own idea of where the files live
    tags: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class ModelVersion:
    """A version pinned by number; ``digest_source`` says why its digests can be trusted:
    ``registry`` (recorded at registration), ``manifest`` (a sluice-manifest.json stored
    with the version), ``first-pull`` (recorded by this repository on the first pull) or
    ``none`` (not yet known)."""

    registry: str
    name: str
    version: int
    files: tuple[FileEntry, ...]
    lineage: Lineage = field(default_factory=Lineage)
    aliases: tuple[str, ...] = ()
    digest_source: str = "none"

    @property
    def total_size(self) -> int | None:
        sizes = [f.size for f in self.files]
        return None if any(s is None for s in sizes) else sum(s for s in sizes if s is not None)

    def with_files(self, files: tuple[FileEntry, ...], digest_source: str) -> ModelVersion:
        return replace(self, files=files, digest_source=digest_source)

    def to_json(self) -> dict[str, Any]:
        return {
            "registry": self.registry,
            "name": self.name,
            "version": self.version,
            "aliases": list(self.aliases),
            "digest_source": self.digest_source,
            "files": [f.to_json() for f in self.files],
            "lineage": self.lineage.to_json(),
        }


def format_timestamp(value: float | int | str | None) -> str:
    """Milliseconds since the epoch (MLflow) or seconds (local) as ISO 8601 UTC."""
    if value in (None, ""):
        return ""
    number = float(value)  # type: ignore[arg-type]
    if number > 1e11:  # milliseconds
        number /= 1000.0
    return dt.datetime.fromtimestamp(number, dt.UTC).isoformat(timespec="seconds")
