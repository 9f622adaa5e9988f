"""The pull engine: a model version from a registry into a Triton-layout model repository.

Layout it owns inside the repository (hidden, so the server never loads from it):

```
<repo>/.sluice/cache/sha256/<xx>/<hex>     verified file contents, hard-linked into versions
<repo>/.sluice/staging/<name>/<version>/   parts/ (resumable downloads) and model/<version>/
<repo>/.sluice/locks/<name>.lock           one pull of a model at a time
<repo>/.sluice/digests/<registry>/<name>/<version>.json   digests recorded on first pull
```

A version directory ``<repo>/<name>/<version>/`` appears by one atomic rename after
every file was verified and fsynced, so it is complete or absent; a pull killed at
any point leaves only staging behind, which the next pull resumes from.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import os
import random
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from registry_client._cache import ContentCache
from registry_client._download import fetch_http, fetch_local
from registry_client._errors import (
    ConflictError,
    InsufficientSpace,
    NetworkError,
    VerificationError,
)
from registry_client._fsutil import (
    atomic_write_json,
    fsync_dir,
    fsync_tree,
    try_exclusive_lock,
)
from registry_client._options import HttpOptions
from registry_client._reference import ModelReference, parse_reference, validate_name
from registry_client._throttle import Throttle
from registry_client._version import FileEntry, ModelVersion

__all__ = ["LINEAGE_FILE", "PullEvent", "PullResult", "Puller", "read_lineage", "remove_version"]

LINEAGE_FILE = "lineage.json"
HIDDEN = ".sluice"


@dataclass(frozen=True, slots=True)
class PullEvent:
    """``resolved``, ``start``, ``progress``, ``retry``, ``restart``, ``cached``, ``verified``,
    ``installed`` or ``present`` (already installed)."""

    kind: str
    path: str = ""
    done: int = 0
    total: int | None = None
    message: str = ""


@dataclass(frozen=True, slots=True)
class PullResult:
    version: ModelVersion
    path: Path
    installed: bool  # False: the same version was already there
    downloaded_bytes: int
    cached_files: int


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def read_lineage(version_dir: Path) -> dict[str, Any] | None:
    import json

    try:
        data: dict[str, Any] = json.loads((version_dir / LINEAGE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data


def remove_version(repository: Path, name: str, version: int) -> bool:
    """Take a version directory away atomically (rename into staging, then delete)."""
    target = Path(repository) / validate_name(name) / str(version)
    if not target.is_dir():
        return False
    trash = Path(repository) / HIDDEN / "trash" / f"{name}-{version}-{uuid.uuid4().hex}"
    trash.parent.mkdir(parents=True, exist_ok=True)
    os.rename(target, trash)
    fsync_dir(target.parent)
    shutil.rmtree(trash, ignore_errors=True)
    return True


class Puller:
    """Pulls versions from one registry into one model repository."""

    def __init__(
        self,
        registry: Any,
        repository: Path | str,
        *,
        options: HttpOptions | None = None,
        on_event: Callable[[PullEvent], None] | None = None,
        force: bool = False,
        rng: random.Random | None = None,
    ) -> None:
        self.registry = registry
        self.repository = Path(repository)
        self.options = options or getattr(registry, "options", None) or HttpOptions()
        self.hidden = self.repository / HIDDEN
        self.cache = ContentCache(self.hidden / "cache")
        self._on_event = on_event
        self._force = force
        self._rng = rng

    def _emit(self, kind: str, path: str = "", done: int = 0, total: int | None = None,
              message: str = "") -> None:  # fmt: skip
        if self._on_event is not None:
            self._on_event(PullEvent(kind, path, done, total, message))

    async def pull(self, ref: ModelReference | str, *, install_as: str | None = None) -> PullResult:
        """Resolve ``ref`` once (an alias is pinned to its version) and install that version."""
        if isinstance(ref, str):
            ref = parse_reference(ref)
        try:
            async with asyncio.timeout(self.options.total_timeout):
                version = await self.registry.resolve(ref)
                self._emit("resolved", message=f"{ref} -> {version.name}/{version.version}")
                return await self._install(version, install_as or version.name)
        except TimeoutError:
            raise NetworkError(
                f"pull of {ref} did not finish within {self.options.total_timeout:g}s"
            ) from None

    async def install(self, version: ModelVersion, install_as: str | None = None) -> PullResult:
        try:
            async with asyncio.timeout(self.options.total_timeout):
                return await self._install(version, install_as or version.name)
        except TimeoutError:
            raise NetworkError(
                f"pull of {version.name}/{version.version} did not finish within "
                f"{self.options.total_timeout:g}s"
            ) from None

    # -- the steps -------------------------------------------------------------

    async def _lock(self, name: str) -> int:
        path = self.hidden / "locks" / f"{name}.lock"
        while (fd := try_exclusive_lock(path)) is None:
            await asyncio.sleep(0.1)
        return fd

    def _digest_record(self, version: ModelVersion) -> Path:
        return (self.hidden / "digests" / _key(version.registry) / version.name
                / f"{version.version}.json")  # fmt: skip

    def _with_recorded_digests(self, version: ModelVersion) -> ModelVersion:
        """Digests recorded by this repository's first pull of a version that had none."""
        if all(f.digest for f in version.files):
            return version
        import json

        try:
            recorded = {f["path"]: f for f in json.loads(self._digest_record(version).read_text())["files"]}  # fmt: skip
        except (OSError, ValueError, KeyError):
            return version
        files = []
        for f in version.files:
            entry = recorded.get(f.path)
            if entry is None:
                raise VerificationError(
                    f"{f.path}: not part of {version.name}/{version.version} when it was first "
                    f"pulled (recorded in {self._digest_record(version)})"
                )
            files.append(FileEntry(f.path, f.size, f.digest or entry["digest"], f.source))
        return version.with_files(tuple(files), "first-pull")

    def _already_installed(self, version: ModelVersion, target: Path) -> bool:
        lineage = read_lineage(target)
        if lineage is None:
            return False
        same = (
            lineage.get("registry") == version.registry
            and lineage.get("name") == version.name
            and lineage.get("version") == version.version
        )
        if not same:
            return False
        installed = {f["path"]: f.get("digest") for f in lineage.get("files", [])}
        if set(installed) != {f.path for f in version.files}:
            return False
        return all(not f.digest or installed[f.path] == f.digest for f in version.files)

    def _check_space(self, version: ModelVersion, parts: Path) -> None:
        need = 0
        for f in version.files:
            if f.size is None or self.cache.get(f.digest, f.size) is not None:
                continue
            part = parts / f"{_key(f.path)}.part"
            have = part.stat().st_size if part.exists() else 0
            need += max(0, f.size - have)
        free = shutil.disk_usage(self.hidden).free
        if need > free:
            raise InsufficientSpace(
                f"{version.name}/{version.version} needs {need} bytes; "
                f"{self.repository} has {free} free"
            )

    async def _install(self, version: ModelVersion, name: str) -> PullResult:
        validate_name(name)
        for f in version.files:
            if f.path == LINEAGE_FILE or f.path.startswith(("/", "../")) or "/../" in f.path:
                raise ConflictError(f"{version.name}/{version.version}: refusing file path {f.path!r}")  # fmt: skip
        self.hidden.mkdir(parents=True, exist_ok=True)
        fd = await self._lock(name)
        try:
            return await self._install_locked(self._with_recorded_digests(version), name)
        finally:
            os.close(fd)

    async def _install_locked(self, version: ModelVersion, name: str) -> PullResult:
        model_dir = self.repository / name
        target = model_dir / str(version.version)
        if target.exists():
            if self._already_installed(version, target):
                self._emit("present", message=str(target))
                return PullResult(version, target, False, 0, 0)
            if not self._force:
                raise ConflictError(
                    f"{target} exists and was not installed from {version.registry} "
                    f"{version.name}/{version.version}; remove it or pull with --force"
                )
        staging = self.hidden / "staging" / name / str(version.version)
        parts = staging / "parts"
        tree = staging / "model"
        shutil.rmtree(tree, ignore_errors=True)  # links are cheap to redo; parts are kept
        parts.mkdir(parents=True, exist_ok=True)
        (tree / str(version.version)).mkdir(parents=True)
        self._check_space(version, parts)

        throttle = Throttle(self.options.bandwidth)
        downloaded = cached = 0
        files = []
        for f in version.files:
            dest = tree / str(version.version) / f.path
            hit = self.cache.get(f.digest, f.size)
            if hit is not None and f.digest:
                self.cache.materialize(f.digest, dest)
                self._emit("cached", f.path, f.size or 0, f.size)
                cached += 1
                files.append(f)
                continue
            digest, size = await self._fetch_verified(f, parts, throttle)
            downloaded += size
            self.cache.adopt(digest, parts / f"{_key(f.path)}.part")
            self.cache.materialize(digest, dest)
            files.append(FileEntry(f.path, size, digest, f.source))
        first_pull = not all(f.digest for f in version.files)
        final = version.with_files(
            tuple(files), "first-pull" if first_pull else version.digest_source
        )
        lineage = final.to_json() | {"pulled_at": _now(), "installed_as": name}
        atomic_write_json(tree / str(version.version) / LINEAGE_FILE, lineage)
        fsync_tree(tree)
        self._swap_in(tree, model_dir, target, version.version)
        if first_pull:
            atomic_write_json(self._digest_record(version),
                              {"recorded_at": _now(), "files": [f.to_json() for f in files]})  # fmt: skip
        shutil.rmtree(staging, ignore_errors=True)
        self._emit("installed", message=str(target))
        return PullResult(final, target, True, downloaded, cached)

    def _swap_in(self, tree: Path, model_dir: Path, target: Path, version: int) -> None:
        if not model_dir.exists():
            with contextlib.suppress(FileExistsError, OSError):
                os.rename(tree, model_dir)  # the whole model appears at once
                fsync_dir(self.repository)
                return
        if target.exists():  # --force over a foreign directory
            trash = self.hidden / "trash" / f"{model_dir.name}-{version}-{uuid.uuid4().hex}"
            trash.parent.mkdir(parents=True, exist_ok=True)
            os.rename(target, trash)
            shutil.rmtree(trash, ignore_errors=True)
        os.rename(tree / str(version), target)
        fsync_dir(model_dir)

    async def _fetch_verified(
        self, f: FileEntry, parts: Path, throttle: Throttle
    ) -> tuple[str, int]:
        part = parts / f"{_key(f.path)}.part"
        for attempt in (1, 2):
            self._emit("start", f.path, part.stat().st_size if part.exists() else 0, f.size)

            def progress(kind: str, done: int, path: str = f.path) -> None:
                self._emit("progress" if kind == "bytes" else kind, path, done, f.size)

            if f.source.startswith(("http://", "https://")):
                digest = await fetch_http(
                    self.registry.http, f.source, part, expected_size=f.size,
                    options=self.options, throttle=throttle, progress=progress, rng=self._rng,
                )  # fmt: skip
            else:
                digest = await fetch_local(
                    Path(f.source), part, options=self.options, throttle=throttle,
                    progress=progress,
                )  # fmt: skip
            size = part.stat().st_size
            if f.size is not None and size != f.size:
                problem = f"{f.path}: got {size} bytes, the registry lists {f.size}"
            elif f.digest and digest != f.digest:
                problem = f"{f.path}: digest mismatch: expected {f.digest}, got {digest}"
            else:
                self._emit("verified", f.path, size, f.size, digest)
                return digest, size
            part.unlink(missing_ok=True)  # a resumed part may hold stale bytes: refetch once
            part.with_name(part.name + ".validator").unlink(missing_ok=True)
            if attempt == 2:
                raise VerificationError(problem + "; nothing was installed")
            self._emit("restart", f.path, 0, f.size, problem)
        raise AssertionError("unreachable")
