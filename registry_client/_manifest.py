"""``sluice-manifest.json``: the digests of a version's files, stored with the version.

MLflow publishes no digests, so ``sluice registry push`` uploads this file beside the
model files; a pull that finds it verifies every file against it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from registry_client._errors import VerificationError
from registry_client._version import FileEntry, ModelVersion

__all__ = ["MANIFEST_FORMAT", "MANIFEST_NAME", "apply_manifest", "build_manifest"]

MANIFEST_NAME = "sluice-manifest.json"
MANIFEST_FORMAT = "sluice-manifest/1"


def build_manifest(files: Iterable[FileEntry]) -> bytes:
    entries = [
        {"path": f.path, "size": f.size, "digest": f.digest}
        for f in sorted(files, key=lambda f: f.path)
        if f.path != MANIFEST_NAME
    ]
    return (json.dumps({"format": MANIFEST_FORMAT, "files": entries}, indent=2) + "\n").encode()


def apply_manifest(version: ModelVersion, content: bytes) -> ModelVersion:
    """The version's files with the manifest's digests; the manifest itself is not installed."""
    try:
        data: Any = json.loads(content)
        if data.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"unknown format {data.get('format')!r}")
        listed = {e["path"]: e for e in data["files"]}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise VerificationError(f"{MANIFEST_NAME} of {version.name}/{version.version} is unreadable: {exc}") from None  # fmt: skip
    files = []
    for f in version.files:
        if f.path == MANIFEST_NAME:
            continue
        entry = listed.pop(f.path, None)
        if entry is None:
            raise VerificationError(f"{f.path}: not listed in {MANIFEST_NAME}; refusing an unverified file")  # fmt: skip
        size = int(entry["size"]) if entry.get("size") is not None else f.size
        if f.size is not None and size != f.size:
            raise VerificationError(f"{f.path}: the registry lists {f.size} bytes, the manifest {size}")  # fmt: skip
        files.append(FileEntry(f.path, size, str(entry["digest"]), f.source))
    if listed:
        raise VerificationError(f"{', '.join(sorted(listed))}: in {MANIFEST_NAME} but missing from the version")  # fmt: skip
    return version.with_files(tuple(files), "manifest")
