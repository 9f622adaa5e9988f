"""The local registry's directory format: where each record lives and how it is read and written.

```
<root>/sluice-registry.json               {"format": 1}
<root>/.lock                              flock: every metadata change holds it
<root>/.gc.lock                           shared while blobs are added, exclusive to collect
<root>/blobs/sha256/<xx>/<hex>            file contents, by digest, written once
<root>/models/<name>/model.json           description, aliases, next version number
<root>/models/<name>/versions/<n>.json    files (path, size, sha256), tags, lineage
<root>/pins/<deployment>.json             versions a running deployment serves
```

Every file is replaced by atomic rename, so readers never lock and never see half a record.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from registry_client._errors import InvalidReference, NotFound
from registry_client._fsutil import atomic_write_json, exclusive_lock, fsync_dir
from registry_client._reference import _ALIAS, LATEST, validate_name
from registry_client._version import FileEntry, Lineage, ModelVersion

__all__ = [
    "FORMAT",
    "MARKER",
    "Layout",
    "check_alias",
    "collect_files",
    "ingest",
    "model_record",
    "new_model_record",
    "now",
    "read_json",
    "read_version",
    "read_versions",
    "user",
    "version_record",
]

FORMAT = 1
MARKER = "sluice-registry.json"


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in a container, say
        return ""


def read_json(path: Path) -> Any:
    with path.open() as f:
        return json.load(f)


@dataclass(frozen=True, slots=True)
class Layout:
    """The paths of one registry directory; knows nothing of locking or policy."""

    root: Path

    @classmethod
    def open(cls, root: Path | str, *, create: bool) -> Layout:
        """The registry at ``root``; an empty or missing directory becomes one if ``create``."""
        layout = cls(Path(root).expanduser().resolve())
        marker = layout.root / MARKER
        if not marker.exists():
            if not create:
                raise NotFound(f"{layout.root} is not a Sluice registry (no {MARKER})")
            if layout.root.exists() and any(layout.root.iterdir()):
                raise InvalidReference(
                    f"{layout.root} is neither empty nor a Sluice registry (no {MARKER})"
                )
            layout.root.mkdir(parents=True, exist_ok=True)
            with exclusive_lock(layout.metadata_lock):
                if not marker.exists():
                    atomic_write_json(marker, {"format": FORMAT})
        return layout

    @property
    def uri(self) -> str:
        return f"file://{self.root}"

    @property
    def metadata_lock(self) -> Path:
        return self.root / ".lock"

    @property
    def gc_lock(self) -> Path:
        return self.root / ".gc.lock"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def blobs_dir(self) -> Path:
        return self.root / "blobs" / "sha256"

    @property
    def blobs_tmp(self) -> Path:
        return self.root / "blobs" / "tmp"

    @property
    def pins_dir(self) -> Path:
        return self.root / "pins"

    def model_dir(self, name: str) -> Path:
        return self.models_dir / validate_name(name)

    def model_json(self, name: str) -> Path:
        return self.model_dir(name) / "model.json"

    def version_path(self, name: str, version: int) -> Path:
        return self.model_dir(name) / "versions" / f"{version}.json"

    def blob_path(self, digest: str) -> Path:
        hexdigest = digest.removeprefix("sha256:")
        return self.blobs_dir / hexdigest[:2] / hexdigest


# -- records -------------------------------------------------------------------


def model_record(layout: Layout, name: str) -> dict[str, Any]:
    try:
        data: dict[str, Any] = read_json(layout.model_json(name))
    except FileNotFoundError:
        raise NotFound(f"no registered model '{name}' in {layout.root}") from None
    return data


def new_model_record(name: str) -> dict[str, Any]:
    return {"name": name, "created_at": now(), "description": "", "aliases": {}, "next_version": 1}


def version_record(
    name: str,
    number: int,
    files: list[dict[str, Any]],
    *,
    description: str = "",
    git_commit: str = "",
    dataset: str = "",
    run_id: str = "",
    tags: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """What ``versions/<n>.json`` holds: the files by digest and the lineage."""
    return {
        "name": name,
        "version": number,
        "created_at": now(),
        "created_by": user(),
        "description": description,
        "git_commit": git_commit,
        "dataset": dataset,
        "run_id": run_id,
        "tags": dict(tags or {}),
        "files": files,
    }


def _to_version(
    layout: Layout, name: str, data: Mapping[str, Any], aliases: Mapping[str, int]
) -> ModelVersion:
    number = int(data["version"])
    files = tuple(
        FileEntry(f["path"], int(f["size"]), f["digest"], source=str(layout.blob_path(f["digest"])))
        for f in data["files"]
    )
    lineage = Lineage(
        run_id=data.get("run_id", ""),
        git_commit=data.get("git_commit", ""),
        dataset=data.get("dataset", ""),
        description=data.get("description", ""),
        created_at=data.get("created_at", ""),
        created_by=data.get("created_by", ""),
        source=f"{layout.uri}#{name}/{number}",
        tags=dict(data.get("tags", {})),
    )
    names = tuple(sorted(a for a, v in aliases.items() if v == number))
    return ModelVersion(
        layout.uri, name, number, files, lineage, aliases=names, digest_source="registry"
    )


def read_version(layout: Layout, name: str, version: int) -> ModelVersion:
    record = model_record(layout, name)
    try:
        data = read_json(layout.version_path(name, version))
    except FileNotFoundError:
        raise NotFound(f"model '{name}' has no version {version} in {layout.root}") from None
    return _to_version(layout, name, data, record.get("aliases", {}))


def read_versions(layout: Layout, name: str) -> list[ModelVersion]:
    record = model_record(layout, name)
    aliases = record.get("aliases", {})
    found = []
    for path in (layout.model_dir(name) / "versions").glob("*.json"):
        if path.stem.isdigit():
            with contextlib.suppress(FileNotFoundError):  # deleted meanwhile
                found.append(_to_version(layout, name, read_json(path), aliases))
    return sorted(found, key=lambda v: v.version)


def check_alias(alias: str) -> str:
    if alias == LATEST or not _ALIAS.match(alias) or (alias[0] == "v" and alias[1:].isdigit()):
        raise InvalidReference(f"alias {alias!r} is reserved or invalid")
    return alias


# -- blobs ---------------------------------------------------------------------


def ingest(layout: Layout, source: Path) -> tuple[str, int]:
    """Copy one file into the blob store; its digest and size."""
    layout.blobs_tmp.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=layout.blobs_tmp)
    hasher = hashlib.sha256()
    size = 0
    try:
        with os.fdopen(fd, "wb") as out, source.open("rb") as f:
            while chunk := f.read(1 << 20):
                hasher.update(chunk)
                out.write(chunk)
                size += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        digest = "sha256:" + hasher.hexdigest()
        target = layout.blob_path(digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            os.unlink(tmp)
        else:
            os.replace(tmp, target)
            fsync_dir(target.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return digest, size


def collect_files(paths: Iterable[Path | str]) -> list[tuple[str, Path]]:
    """(relative path in the version, file on disk); a directory contributes its tree."""
    files: dict[str, Path] = {}
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for entry in sorted(path.rglob("*")):
                if entry.is_file():
                    files[entry.relative_to(path).as_posix()] = entry
        elif path.is_file():
            files[path.name] = path
        else:
            raise NotFound(f"{path} does not exist")
    if not files:
        raise InvalidReference("nothing to register: no files given")
    return sorted(files.items())
