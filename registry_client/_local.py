"""The local registry: a directory format Sluice owns.

```
<root>/sluice-registry.json               {"format": 1}
<root>/.lock                              flock: every metadata change holds it
<root>/.gc.lock                           shared while blobs are added, exclusive to collect
<root>/blobs/sha256/<xx>/<hex>            file contents, by digest, written once
<root>/models/<name>/model.json           description, aliases, next version number
<root>/models/<name>/versions/<n>.json    files (path, size, sha256), tags, lineage
<root>/pins/<deployment>.json             versions a running deployment serves
```

Every file is replaced by atomic rename, so readers never lock and never see half a
record; writers serialize on ``.lock``, which makes two concurrent ``register`` calls
get consecutive version numbers. Version numbers are never reused after a delete.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import hashlib
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from registry_client._errors import ConflictError, InvalidReference, NotFound, RegistryError
from registry_client._fsutil import atomic_write_json, exclusive_lock, fsync_dir
from registry_client._reference import LATEST, ModelReference, validate_name
from registry_client._version import FileEntry, Lineage, ModelVersion

__all__ = ["LocalRegistry", "Pin"]

_FORMAT = 1
_MARKER = "sluice-registry.json"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in a container, say
        return ""


def _read_json(path: Path) -> Any:
    with path.open() as f:
        return json.load(f)


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


class LocalRegistry:
    """A registry directory; read calls never lock, write calls hold ``.lock``."""

    def __init__(self, root: Path | str, *, create: bool = True) -> None:
        self.root = Path(root).expanduser().resolve()
        self.uri = f"file://{self.root}"
        marker = self.root / _MARKER
        if not marker.exists():
            if not create:
                raise NotFound(f"{self.root} is not a Sluice registry (no {_MARKER})")
            if self.root.exists() and any(self.root.iterdir()):
                raise InvalidReference(
                    f"{self.root} is neither empty nor a Sluice registry (no {_MARKER})"
                )
            self.root.mkdir(parents=True, exist_ok=True)
            with exclusive_lock(self.root / ".lock"):
                if not marker.exists():
                    atomic_write_json(marker, {"format": _FORMAT})

    # -- async face shared with the MLflow client ----------------------------

    async def __aenter__(self) -> LocalRegistry:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        return None

    @property
    def http(self) -> Any:
        return None

    async def resolve(self, ref: ModelReference) -> ModelVersion:
        return self.find(ref)

    async def list_models(self) -> list[dict[str, Any]]:
        return self.models()

    async def list_versions(self, name: str) -> list[ModelVersion]:
        return self.versions(name)

    async def search_versions(
        self, tags: Mapping[str, str], name: str | None = None
    ) -> list[ModelVersion]:
        return self.search(tags, name)

    # -- paths ---------------------------------------------------------------

    def _model_dir(self, name: str) -> Path:
        return self.root / "models" / validate_name(name)

    def _version_path(self, name: str, version: int) -> Path:
        return self._model_dir(name) / "versions" / f"{version}.json"

    def blob_path(self, digest: str) -> Path:
        hexdigest = digest.removeprefix("sha256:")
        return self.root / "blobs" / "sha256" / hexdigest[:2] / hexdigest

    # -- reads ---------------------------------------------------------------

    def _model_record(self, name: str) -> dict[str, Any]:
        try:
            data: dict[str, Any] = _read_json(self._model_dir(name) / "model.json")
        except FileNotFoundError:
            raise NotFound(f"no registered model '{name}' in {self.root}") from None
        return data

    def _to_version(
        self, name: str, data: Mapping[str, Any], aliases: Mapping[str, int]
    ) -> ModelVersion:
        number = int(data["version"])
        files = tuple(
            FileEntry(
                f["path"], int(f["size"]), f["digest"], source=str(self.blob_path(f["digest"]))
            )
            for f in data["files"]
        )
        lineage = Lineage(
            run_id=data.get("run_id", ""),
            git_commit=data.get("git_commit", ""),
            dataset=data.get("dataset", ""),
            description=data.get("description", ""),
            created_at=data.get("created_at", ""),
            created_by=data.get("created_by", ""),
            source=f"{self.uri}#{name}/{number}",
            tags=dict(data.get("tags", {})),
        )
        names = tuple(sorted(a for a, v in aliases.items() if v == number))
        return ModelVersion(
            self.uri, name, number, files, lineage, aliases=names, digest_source="registry"
        )

    def get_version(self, name: str, version: int) -> ModelVersion:
        record = self._model_record(name)
        try:
            data = _read_json(self._version_path(name, version))
        except FileNotFoundError:
            raise NotFound(f"model '{name}' has no version {version} in {self.root}") from None
        return self._to_version(name, data, record.get("aliases", {}))

    def versions(self, name: str) -> list[ModelVersion]:
        record = self._model_record(name)
        aliases = record.get("aliases", {})
        found = []
        for path in (self._model_dir(name) / "versions").glob("*.json"):
            if path.stem.isdigit():
                with contextlib.suppress(FileNotFoundError):  # deleted meanwhile
                    found.append(self._to_version(name, _read_json(path), aliases))
        return sorted(found, key=lambda v: v.version)

    def models(self) -> list[dict[str, Any]]:
        out = []
        base = self.root / "models"
        for entry in sorted(base.iterdir()) if base.is_dir() else []:
            try:
                record = _read_json(entry / "model.json")
            except FileNotFoundError:
                continue
            numbers = sorted(
                int(p.stem) for p in (entry / "versions").glob("*.json") if p.stem.isdigit()
            )
            out.append(
                {
                    "name": record["name"],
                    "description": record.get("description", ""),
                    "aliases": dict(record.get("aliases", {})),
                    "versions": numbers,
                    "latest_version": numbers[-1] if numbers else None,
                }
            )
        return out

    def search(self, tags: Mapping[str, str], name: str | None = None) -> list[ModelVersion]:
        names = [name] if name else [m["name"] for m in self.models()]
        hits = []
        for model in names:
            for version in self.versions(model):
                if all(version.lineage.tags.get(k) == v for k, v in tags.items()):
                    hits.append(version)
        return hits

    def find(self, ref: ModelReference) -> ModelVersion:
        if ref.version is not None:
            return self.get_version(ref.name, ref.version)
        if ref.alias and ref.alias != LATEST:
            aliases = self._model_record(ref.name).get("aliases", {})
            if ref.alias not in aliases:
                raise NotFound(f"model '{ref.name}' has no alias '{ref.alias}'")
            found = self.get_version(ref.name, int(aliases[ref.alias]))
        else:
            candidates = self.search(dict(ref.tags), ref.name)
            if not candidates:
                what = f" with tags {dict(ref.tags)}" if ref.tags else ""
                raise NotFound(f"model '{ref.name}' has no version{what}")
            return candidates[-1]
        if ref.tags and any(found.lineage.tags.get(k) != v for k, v in ref.tags):
            raise NotFound(f"{ref}: version {found.version} does not carry tags {dict(ref.tags)}")
        return found

    # -- writes --------------------------------------------------------------

    def _ingest(self, source: Path) -> tuple[str, int]:
        """Copy one file into the blob store; its digest and size."""
        tmp_dir = self.root / "blobs" / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=tmp_dir)
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
            target = self.blob_path(digest)
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

    @staticmethod
    def _collect(paths: Iterable[Path | str]) -> list[tuple[str, Path]]:
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

    def register(
        self,
        name: str,
        paths: Iterable[Path | str],
        *,
        tags: Mapping[str, str] | None = None,
        aliases: Iterable[str] = (),
        description: str = "",
        git_commit: str = "",
        dataset: str = "",
        run_id: str = "",
    ) -> ModelVersion:
        """Record a new version (the next number) of ``name`` with copies of ``paths``."""
        validate_name(name)
        files = self._collect(paths)
        with exclusive_lock(self.root / ".gc.lock", shared=True):
            entries = []
            for rel, path in files:
                digest, size = self._ingest(path)
                entries.append({"path": rel, "size": size, "digest": digest})
            with exclusive_lock(self.root / ".lock"):
                model_json = self._model_dir(name) / "model.json"
                try:
                    record = _read_json(model_json)
                except FileNotFoundError:
                    record = {"name": name, "created_at": _now(), "description": "",
                              "aliases": {}, "next_version": 1}  # fmt: skip
                number = int(record.get("next_version", 1))
                version_record = {
                    "name": name,
                    "version": number,
                    "created_at": _now(),
                    "created_by": _user(),
                    "description": description,
                    "git_commit": git_commit,
                    "dataset": dataset,
                    "run_id": run_id,
                    "tags": dict(tags or {}),
                    "files": entries,
                }
                atomic_write_json(self._version_path(name, number), version_record)
                record["next_version"] = number + 1
                for alias in aliases:
                    record.setdefault("aliases", {})[self._check_alias(alias)] = number
                atomic_write_json(model_json, record)
        return self.get_version(name, number)

    @staticmethod
    def _check_alias(alias: str) -> str:
        from registry_client._reference import _ALIAS

        if alias == LATEST or not _ALIAS.match(alias) or (alias[0] == "v" and alias[1:].isdigit()):
            raise InvalidReference(f"alias {alias!r} is reserved or invalid")
        return alias

    def set_tags(
        self, name: str, version: int, tags: Mapping[str, str], remove: Iterable[str] = ()
    ) -> ModelVersion:
        with exclusive_lock(self.root / ".lock"):
            path = self._version_path(name, version)
            try:
                data = _read_json(path)
            except FileNotFoundError:
                raise NotFound(f"model '{name}' has no version {version}") from None
            data.setdefault("tags", {}).update(tags)
            for key in remove:
                data["tags"].pop(key, None)
            atomic_write_json(path, data)
        return self.get_version(name, version)

    def set_alias(self, name: str, alias: str, version: int | None) -> None:
        """Point ``alias`` at ``version``; ``None`` removes the alias."""
        self._check_alias(alias)
        with exclusive_lock(self.root / ".lock"):
            record = self._model_record(name)
            if version is None:
                if record.get("aliases", {}).pop(alias, None) is None:
                    raise NotFound(f"model '{name}' has no alias '{alias}'")
            else:
                if not self._version_path(name, version).exists():
                    raise NotFound(f"model '{name}' has no version {version}")
                record.setdefault("aliases", {})[alias] = version
            atomic_write_json(self._model_dir(name) / "model.json", record)

    def delete_version(self, name: str, version: int, *, force: bool = False) -> list[str]:
        """Remove a version unless a live deployment pins it; returns the aliases dropped."""
        with exclusive_lock(self.root / ".lock"):
            record = self._model_record(name)
            path = self._version_path(name, version)
            if not path.exists():
                raise NotFound(f"model '{name}' has no version {version}")
            if not force:
                for pin in self.pins():
                    if version in pin.models.get(name, []) and pin.live:
                        raise ConflictError(
                            f"version {version} of '{name}' is pinned by {pin.describe()}, "
                            f"recorded in {pin.path}; stop that deployment first (or --force)"
                        )
            dropped = [a for a, v in record.get("aliases", {}).items() if int(v) == version]
            for alias in dropped:
                del record["aliases"][alias]
            atomic_write_json(self._model_dir(name) / "model.json", record)
            path.unlink()
            fsync_dir(path.parent)
        self.collect_garbage()
        return dropped

    def collect_garbage(self) -> int:
        """Delete blobs no version refers to; waits for registrations adding blobs."""
        with exclusive_lock(self.root / ".gc.lock"), exclusive_lock(self.root / ".lock"):
            used: set[str] = set()
            for path in (self.root / "models").glob("*/versions/*.json"):
                with contextlib.suppress(FileNotFoundError):
                    used.update(
                        f["digest"].removeprefix("sha256:") for f in _read_json(path)["files"]
                    )
            removed = 0
            for blob in (self.root / "blobs" / "sha256").glob("*/*"):
                if blob.name not in used:
                    blob.unlink(missing_ok=True)
                    removed += 1
            shutil.rmtree(self.root / "blobs" / "tmp", ignore_errors=True)
        return removed

    # -- pins ------------------------------------------------------------------

    def pins(self) -> list[Pin]:
        out = []
        for path in sorted((self.root / "pins").glob("*.json")):
            with contextlib.suppress(FileNotFoundError, ValueError):
                out.append(Pin(path, _read_json(path)))
        return out

    def pin(
        self, deployment: str, models: Mapping[str, Iterable[int]], model_repository: str = ""
    ) -> Path:
        """Record (replace) what ``deployment`` serves; ``delete`` refuses those versions."""
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in deployment)
        if not safe or safe.startswith("."):
            raise RegistryError(f"invalid deployment name {deployment!r}")
        path = self.root / "pins" / f"{safe}.json"
        atomic_write_json(
            path,
            {
                "deployment": deployment,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "model_repository": model_repository,
                "models": {k: sorted(set(v)) for k, v in models.items()},
                "updated_at": _now(),
            },
        )
        return path

    def unpin(self, deployment: str) -> None:
        for pin in self.pins():
            if pin.deployment == deployment:
                pin.path.unlink(missing_ok=True)
