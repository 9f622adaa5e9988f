"""Collected Parquet files leave the device through a durable, byte-capped outbox of chunks.

The serving core in the agent's process collects into ``<state_dir>/collect`` and writes
each Parquet file beside its final name, fsyncs it and renames it into place, so every
``model=*/version=*/date=*/part-*.parquet`` there is complete (a half-written file is
still dot-prefixed and never matches). The shipper takes such a file into its own
SQLite outbox as chunks (``edge_agent._chunk``) in one transaction, then removes the
file: from then on the chunks are the only copy, and each is deleted only on the
broker's PUBACK. A crash between the commit and the removal ships the file again; the
chunks carry the same ids, so the receiver drops the duplicates.

The outbox is separate from the one for events and reported state (bulk data never
pushes a state report out) and capped in bytes: a file that would not fit pushes the
oldest whole files out, counted by files and rows (``full_oldest``); a file larger
than the whole cap is dropped (``too_large``). The link being down loses nothing
within the cap.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from edge_agent._chunk import PATH, encode_chunk, split
from edge_agent._durable import fsync_dir, transaction
from edge_agent._outbox import OutboxMessage
from edge_agent._topics import Topics

__all__ = ["DROP_REASONS", "CollectShipper", "Dropped"]

log = logging.getLogger("sluice.edge.collect")

DROP_REASONS = ("full_oldest", "too_large")
GLOB = "model=*/version=*/date=*/part-*.parquet"

# (relative path, rows, reason): told after a file was dropped, for an event.
Dropped = Callable[[str, int, str], None]


def _rows(path: Path) -> int:
    import pyarrow.parquet as pq  # the serving core that wrote it brought pyarrow

    return int(pq.read_metadata(path).num_rows)


class CollectShipper:
    def __init__(
        self,
        db_path: Path,
        collect_dir: Path,
        topics: Topics,
        *,
        max_bytes: int,
        chunk_bytes: int,
        clock: Callable[[], float] = time.time,
        on_dropped: Dropped | None = None,
    ) -> None:
        db_path.parent.mkdir(parents=True, exist_ok=True)
        self.collect_dir = collect_dir
        self.topics = topics
        self.max_bytes = max_bytes
        self.chunk_bytes = chunk_bytes
        self._clock = clock
        self._on_dropped = on_dropped
        self._unreadable: set[Path] = set()
        self._lock = threading.RLock()  # scans run in a thread; the drain on the loop
        self._db = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS files (
                row INTEGER PRIMARY KEY AUTOINCREMENT, path TEXT NOT NULL, digest TEXT NOT NULL,
                rows INTEGER NOT NULL, size INTEGER NOT NULL, created REAL NOT NULL,
                UNIQUE (path, digest)
            );
            CREATE TABLE IF NOT EXISTS chunks (
                row INTEGER PRIMARY KEY AUTOINCREMENT, file INTEGER NOT NULL, id TEXT NOT NULL,
                topic TEXT NOT NULL, payload BLOB NOT NULL, size INTEGER NOT NULL
            );
            CREATE INDEX IF NOT EXISTS chunks_file ON chunks (file);
            CREATE TABLE IF NOT EXISTS drops (
                reason TEXT PRIMARY KEY, files INTEGER NOT NULL, rows INTEGER NOT NULL
            );
            CREATE TABLE IF NOT EXISTS shipped (n INTEGER NOT NULL, rows INTEGER NOT NULL);
            """
        )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _transaction(self) -> AbstractContextManager[None]:
        return transaction(self._db, self._lock)

    # -- taking files in ---------------------------------------------------------

    def completed_files(self) -> list[Path]:
        """The complete Parquet files in the collection directory, oldest first (names
        begin with the spool segment's creation time)."""
        found = [p for p in self.collect_dir.glob(GLOB) if p.is_file()]
        return sorted(found, key=lambda p: (p.name, str(p)))

    def scan(self) -> int:
        """Take every complete file in; returns how many were taken."""
        taken = 0
        for path in self.completed_files():
            if self.take(path):
                taken += 1
        return taken

    def take(self, path: Path) -> bool:
        """Queue ``path``'s chunks (or drop it, counted), then remove the file. False when
        it could not be read (it stays, and is tried again at the next scan)."""
        relative = path.relative_to(self.collect_dir).as_posix()
        match = PATH.match(relative)
        if match is None:
            return False
        try:
            content = path.read_bytes()
            rows = _rows(path)
        except FileNotFoundError:
            return False
        except Exception as exc:  # an unreadable file: say so once, keep it
            if path not in self._unreadable:
                log.error("cannot ship collected file %s: %s", relative, exc)
                self._unreadable.add(path)
            return False
        chunks = split(self.topics.device_id, relative, content, rows, self.chunk_bytes)
        topic = self.topics.collect(match["model"], match["version"])
        payloads = [(c.id, encode_chunk(c)) for c in chunks]
        size = sum(len(p) for _, p in payloads)
        dropped: list[tuple[str, int, str]] = []
        with self._transaction():
            known = self._db.execute(
                "SELECT 1 FROM files WHERE path=? AND digest=?", (relative, chunks[0].digest)
            ).fetchone()
            if known:
                pass  # taken before a crash stopped the removal below
            elif size > self.max_bytes:
                dropped.append((relative, rows, "too_large"))
            else:
                dropped += self._make_room(size)
                cur = self._db.execute(
                    "INSERT INTO files (path, digest, rows, size, created) VALUES (?, ?, ?, ?, ?)",
                    (relative, chunks[0].digest, rows, len(content), self._clock()),
                )
                self._db.executemany(
                    "INSERT INTO chunks (file, id, topic, payload, size) VALUES (?, ?, ?, ?, ?)",
                    [(cur.lastrowid, cid, topic, p, len(p)) for cid, p in payloads],
                )
            for _path, lost_rows, reason in dropped:
                self._db.execute(
                    "INSERT INTO drops VALUES (?, 1, ?) "
                    "ON CONFLICT(reason) DO UPDATE SET files=files+1, rows=rows+?",
                    (reason, lost_rows, lost_rows),
                )
        path.unlink(missing_ok=True)
        fsync_dir(path.parent)
        for lost, lost_rows, reason in dropped:
            log.warning("collected file %s (%d rows) dropped: %s", lost, lost_rows, reason)
            if self._on_dropped is not None:
                self._on_dropped(lost, lost_rows, reason)
        return True

    def _make_room(self, size: int) -> list[tuple[str, int, str]]:
        """Push the oldest whole files out until ``size`` more bytes fit (in the caller's
        transaction)."""
        used = self.pending_bytes()
        dropped = []
        while used + size > self.max_bytes:
            oldest = self._db.execute("SELECT row, path, rows FROM files ORDER BY row LIMIT 1").fetchone()  # fmt: skip
            if oldest is None:
                break
            row, path, rows = oldest
            freed = self._db.execute("SELECT COALESCE(SUM(size), 0) FROM chunks WHERE file=?", (row,)).fetchone()[0]  # fmt: skip
            self._db.execute("DELETE FROM chunks WHERE file=?", (row,))
            self._db.execute("DELETE FROM files WHERE row=?", (row,))
            dropped.append((path, rows, "full_oldest"))
            used -= freed
        return dropped

    # -- sending ---------------------------------------------------------------------

    def pending(self, limit: int = 100, exclude: set[int] | frozenset[int] = frozenset()) -> list[OutboxMessage]:  # fmt: skip
        """The oldest unacknowledged chunks, file by file, in order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT c.row, c.id, c.topic, c.payload, f.created FROM chunks c "
                "JOIN files f ON f.row = c.file ORDER BY c.row LIMIT ?",
                (limit + len(exclude),),
            ).fetchall()
        out = [OutboxMessage(r[0], r[1], r[2], bytes(r[3]), False, r[4]) for r in rows]
        return [m for m in out if m.row not in exclude][:limit]

    def ack(self, row: int) -> None:
        """The broker acknowledged the chunk: only now is it deleted; the file's entry
        goes with its last chunk."""
        with self._transaction():
            found = self._db.execute("SELECT file FROM chunks WHERE row=?", (row,)).fetchone()
            if found is None:
                return
            self._db.execute("DELETE FROM chunks WHERE row=?", (row,))
            left = self._db.execute("SELECT COUNT(*) FROM chunks WHERE file=?", found).fetchone()[0]  # fmt: skip
            if left == 0:
                rows = self._db.execute("SELECT rows FROM files WHERE row=?", found).fetchone()
                self._db.execute("DELETE FROM files WHERE row=?", found)
                shipped = self._db.execute("SELECT n FROM shipped").fetchone()
                if shipped is None:
                    self._db.execute("INSERT INTO shipped VALUES (0, 0)")
                self._db.execute("UPDATE shipped SET n=n+1, rows=rows+?", (rows[0] if rows else 0,))

    # -- what the reported state shows ------------------------------------------------

    def pending_bytes(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COALESCE(SUM(size), 0) FROM chunks").fetchone()[0])

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return self._stats()

    def _stats(self) -> dict[str, Any]:
        files, rows = self._db.execute("SELECT COUNT(*), COALESCE(SUM(rows), 0) FROM files").fetchone()  # fmt: skip
        shipped = self._db.execute("SELECT n, rows FROM shipped").fetchone() or (0, 0)
        dropped = {r: {"files": 0, "rows": 0} for r in DROP_REASONS}
        for reason, n, lost in self._db.execute("SELECT reason, files, rows FROM drops"):
            dropped[reason] = {"files": n, "rows": lost}
        return {
            "pending_files": files,
            "pending_rows": rows,
            "pending_bytes": self.pending_bytes(),
            "shipped_files": shipped[0],
            "shipped_rows": shipped[1],
            "dropped": dropped,
        }
