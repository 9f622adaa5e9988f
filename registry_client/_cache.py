"""The content-addressed cache of a model repository: ``<repo>/.sluice/cache/sha256/<hex>``.

A file shared by two versions (or pulled again after a version was deleted) is
downloaded once and hard-linked into each version directory. Only verified bytes
enter the cache, and they enter by atomic rename.
"""

from __future__ import annotations

import os
from pathlib import Path

from registry_client._fsutil import fsync_dir, link_or_copy

__all__ = ["ContentCache"]


class ContentCache:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, digest: str) -> Path:
        algorithm, _, hexdigest = digest.partition(":")
        if algorithm != "sha256" or len(hexdigest) != 64:
            raise ValueError(f"unsupported digest {digest!r}")
        return self.root / "sha256" / hexdigest[:2] / hexdigest

    def get(self, digest: str | None, size: int | None) -> Path | None:
        if not digest:
            return None
        path = self.path(digest)
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        return path if size is None or st.st_size == size else None

    def adopt(self, digest: str, verified: Path) -> Path:
        """Move a verified file into the cache (or keep the copy already there)."""
        path = self.path(digest)
        if path.exists():
            verified.unlink(missing_ok=True)
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(verified, path)
        fsync_dir(path.parent)
        return path

    def materialize(self, digest: str, target: Path) -> None:
        link_or_copy(self.path(digest), target)
