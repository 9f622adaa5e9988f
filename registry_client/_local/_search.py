"""Finding versions in a local registry: by number, alias, ``latest`` or tags. Reads never lock."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from registry_client._errors import NotFound
from registry_client._local._format import (
    Layout,
    model_record,
    read_json,
    read_version,
    read_versions,
)
from registry_client._reference import LATEST, ModelReference
from registry_client._version import ModelVersion

__all__ = ["find", "list_models", "search"]


def list_models(layout: Layout) -> list[dict[str, Any]]:
    """Each model's name, description, aliases, version numbers and latest version."""
    out = []
    base = layout.models_dir
    for entry in sorted(base.iterdir()) if base.is_dir() else []:
        try:
            record = read_json(entry / "model.json")
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


def search(layout: Layout, tags: Mapping[str, str], name: str | None = None) -> list[ModelVersion]:
    """Versions carrying every one of ``tags``, oldest first per model."""
    names = [name] if name else [m["name"] for m in list_models(layout)]
    hits = []
    for model in names:
        for version in read_versions(layout, model):
            if all(version.lineage.tags.get(k) == v for k, v in tags.items()):
                hits.append(version)
    return hits


def find(layout: Layout, ref: ModelReference) -> ModelVersion:
    """The one version ``ref`` names now; NotFound says which part did not match."""
    if ref.version is not None:
        return read_version(layout, ref.name, ref.version)
    if ref.alias and ref.alias != LATEST:
        aliases = model_record(layout, ref.name).get("aliases", {})
        if ref.alias not in aliases:
            raise NotFound(f"model '{ref.name}' has no alias '{ref.alias}'")
        found = read_version(layout, ref.name, int(aliases[ref.alias]))
    else:
        candidates = search(layout, dict(ref.tags), ref.name)
        if not candidates:
            what = f" with tags {dict(ref.tags)}" if ref.tags else ""
            raise NotFound(f"model '{ref.name}' has no version{what}")
        return candidates[-1]
    if ref.tags and any(found.lineage.tags.get(k) != v for k, v in ref.tags):
        raise NotFound(f"{ref}: version {found.version} does not carry tags {dict(ref.tags)}")
    return found
