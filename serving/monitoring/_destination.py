"""Where rolled Parquet goes: a local directory, or any fsspec URL.

``file://`` URLs are local directories (written durably: fsync, rename, directory
fsync). Any other URL (``s3://``, ``gs://``, ``memory://`` ...) is opened with fsspec
and each file is written once to its final name; object stores make a file visible
only when it is complete. The spool always stays on local disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Destination", "check_destination", "open_destination"]


@dataclass(frozen=True, slots=True)
class Destination:
    """``local``: the directory for a local destination; else ``fs`` and ``root``."""

    url: str
    local: Path | None = None
    fs: Any = None
    root: str = ""


def _file_path(url: str) -> Path | None:
    if "://" not in url:
        return Path(url)
    if url.startswith("file://"):
        return Path(url[len("file://") :])
    return None


def open_destination(url: str | Path) -> Destination:
    """Raises ValueError naming the URL when fsspec is missing or cannot open it."""
    text = str(url)
    local = _file_path(text)
    if local is not None:
        return Destination(text, local=local)
    try:
        from fsspec.core import url_to_fs
    except ImportError:
        raise ValueError(
            f"--collect {text!r}: a URL destination needs fsspec (pip install 'sluice[monitoring]')"
        ) from None
    try:
        fs, root = url_to_fs(text)
    except Exception as exc:  # an unknown protocol, a missing backend package
        raise ValueError(f"--collect {text!r}: fsspec cannot open it: {exc}") from None
    return Destination(text, fs=fs, root=str(root).rstrip("/"))


def check_destination(url: str, *, output_max_bytes: int = 0) -> None:
    """Refuse, before serving, a destination collection could not write to."""
    dest = open_destination(url)
    if dest.local is None and output_max_bytes:
        raise ValueError(
            f"--collect-max-bytes applies to local destinations only, not {url!r}; "
            "use the object store's lifecycle rules"
        )
