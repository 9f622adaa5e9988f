"""Garbage collection: blobs that no version refers to any more are deleted."""

from __future__ import annotations

import contextlib
import shutil

from registry_client._local._format import Layout, read_json
from registry_client._local._pins import collecting

__all__ = ["collect_garbage"]


def collect_garbage(layout: Layout) -> int:
    """Delete unreferenced blobs and leftover temporary files; the number of blobs deleted.

    Waits for registrations that are adding blobs, so none is collected before its version
    record refers to it.
    """
    with collecting(layout):
        used: set[str] = set()
        for path in layout.models_dir.glob("*/versions/*.json"):
            with contextlib.suppress(FileNotFoundError):
                used.update(f["digest"].removeprefix("sha256:") for f in read_json(path)["files"])
        removed = 0
        for blob in layout.blobs_dir.glob("*/*"):
            if blob.name not in used:
                blob.unlink(missing_ok=True)
                removed += 1
        shutil.rmtree(layout.blobs_tmp, ignore_errors=True)
    return removed
