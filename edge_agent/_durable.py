"""What the agent's stores share to make a change durable: SQLite transactions on an
autocommit connection, and fsync of a directory after a rename into it."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["fsync_dir", "transaction"]


@contextmanager
def transaction(db: sqlite3.Connection, lock: threading.RLock | threading.Lock) -> Iterator[None]:
    """All or nothing. The connection is in autocommit mode (``isolation_level=None``), where
    ``with db:`` commits nothing, so BEGIN explicitly; ``lock`` keeps the other threads using
    the connection out of the open transaction."""
    with lock:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")


def fsync_dir(path: Path) -> None:
    """Make a rename into ``path`` (or a file created there) survive a power cut."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
