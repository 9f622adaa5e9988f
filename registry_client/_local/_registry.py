"""``LocalRegistry``: the face of a local registry directory, for the CLI, pulls and followers.

Reads never lock; every write holds ``.lock`` (see ``_pins``), so two concurrent ``register``
calls get consecutive version numbers. Version numbers are never reused after a delete.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from registry_client._audit import AuditLog
from registry_client._errors import NotFound
from registry_client._fsutil import atomic_write_json, fsync_dir
from registry_client._local import _format, _gc, _pins, _search
from registry_client._local._pins import Pin
from registry_client._reference import ModelReference, validate_name
from registry_client._version import ModelVersion

__all__ = ["LocalRegistry"]


class LocalRegistry:
    """A registry directory; read calls never lock, write calls hold ``.lock``."""

    def __init__(self, root: Path | str, *, create: bool = True) -> None:
        self._layout = _format.Layout.open(root, create=create)
        self.root = self._layout.root
        self.uri = self._layout.uri

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

    # -- reads ---------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        return self._layout.blob_path(digest)

    def get_version(self, name: str, version: int) -> ModelVersion:
        return _format.read_version(self._layout, name, version)

    def versions(self, name: str) -> list[ModelVersion]:
        return _format.read_versions(self._layout, name)

    def models(self) -> list[dict[str, Any]]:
        return _search.list_models(self._layout)

    def search(self, tags: Mapping[str, str], name: str | None = None) -> list[ModelVersion]:
        return _search.search(self._layout, tags, name)

    def find(self, ref: ModelReference) -> ModelVersion:
        return _search.find(self._layout, ref)

    # -- writes --------------------------------------------------------------

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
        layout = self._layout
        validate_name(name)
        files = _format.collect_files(paths)
        with _pins.adding_blobs(layout):
            entries = []
            for rel, path in files:
                digest, size = _format.ingest(layout, path)
                entries.append({"path": rel, "size": size, "digest": digest})
            with _pins.metadata_change(layout):
                model_json = layout.model_json(name)
                try:
                    record = _format.read_json(model_json)
                except FileNotFoundError:
                    record = _format.new_model_record(name)
                number = int(record.get("next_version", 1))
                version_record = _format.version_record(
                    name,
                    number,
                    entries,
                    description=description,
                    git_commit=git_commit,
                    dataset=dataset,
                    run_id=run_id,
                    tags=tags,
                )
                atomic_write_json(layout.version_path(name, number), version_record)
                record["next_version"] = number + 1
                for alias in aliases:
                    record.setdefault("aliases", {})[_format.check_alias(alias)] = number
                atomic_write_json(model_json, record)
        return self.get_version(name, number)

    def set_tags(
        self, name: str, version: int, tags: Mapping[str, str], remove: Iterable[str] = ()
    ) -> ModelVersion:
        with _pins.metadata_change(self._layout):
            path = self._layout.version_path(name, version)
            try:
                data = _format.read_json(path)
            except FileNotFoundError:
                raise NotFound(f"model '{name}' has no version {version}") from None
            data.setdefault("tags", {}).update(tags)
            for key in remove:
                data["tags"].pop(key, None)
            atomic_write_json(path, data)
        return self.get_version(name, version)

    def set_alias(self, name: str, alias: str, version: int | None) -> None:
        """Point ``alias`` at ``version``; ``None`` removes the alias."""
        _format.check_alias(alias)
        layout = self._layout
        with _pins.metadata_change(layout):
            record = _format.model_record(layout, name)
            if version is None:
                if record.get("aliases", {}).pop(alias, None) is None:
                    raise NotFound(f"model '{name}' has no alias '{alias}'")
            else:
                if not layout.version_path(name, version).exists():
                    raise NotFound(f"model '{name}' has no version {version}")
                record.setdefault("aliases", {})[alias] = version
            atomic_write_json(layout.model_json(name), record)

    def delete_version(self, name: str, version: int, *, force: bool = False) -> list[str]:
        """Remove a version unless a live deployment pins it; returns the aliases dropped."""
        layout = self._layout
        with _pins.metadata_change(layout):
            record = _format.model_record(layout, name)
            path = layout.version_path(name, version)
            if not path.exists():
                raise NotFound(f"model '{name}' has no version {version}")
            if not force:
                _pins.refuse_if_pinned(layout, name, version)
            dropped = [a for a, v in record.get("aliases", {}).items() if int(v) == version]
            for alias in dropped:
                del record["aliases"][alias]
            atomic_write_json(layout.model_json(name), record)
            path.unlink()
            fsync_dir(path.parent)
        self.collect_garbage()
        return dropped

    def collect_garbage(self) -> int:
        """Delete blobs no version refers to; waits for registrations adding blobs."""
        return _gc.collect_garbage(self._layout)

    @property
    def audit(self) -> AuditLog:
        """This registry's hash-chained log of who changed what and why."""
        return AuditLog.for_registry(self.root)

    # -- pins ------------------------------------------------------------------

    def pins(self) -> list[Pin]:
        return _pins.read_pins(self._layout)

    def pin(
        self, deployment: str, models: Mapping[str, Iterable[int]], model_repository: str = ""
    ) -> Path:
        """Record (replace) what ``deployment`` serves; ``delete`` refuses those versions."""
        return _pins.write_pin(self._layout, deployment, models, model_repository)

    def unpin(self, deployment: str) -> None:
        _pins.remove_pin(self._layout, deployment)
