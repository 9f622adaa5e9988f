"""A durable store-and-forward outbox for what the device sends: events and reported state.

SQLite in WAL mode, so a message put survives a reboot. Pending bytes are capped
(``drop_oldest`` or ``reject_new`` when full) and messages expire after a TTL; every
drop is counted by reason. A row is deleted only when the broker acknowledged it
(PUBACK), so a crash re-sends rather than loses: every payload carries an ``id`` for
the fleet side to drop duplicates. Messages with a ``key`` (the reported state)
supersede the pending one with the same key instead of queueing behind it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_agent._durable import transaction

__all__ = ["DROP_REASONS", "Outbox", "OutboxMessage"]

DROP_REASONS = ("expired", "full_oldest", "full_rejected", "too_large")


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    row: int
    id: str
    topic: str
    payload: bytes
    retain: bool
    created: float


class Outbox:
    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int,
        ttl_secs: float,
        policy: str = "drop_oldest",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if policy not in ("drop_oldest", "reject_new"):
            raise ValueError(f"outbox policy {policy!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.ttl_secs = ttl_secs
        self.policy = policy
        self._clock = clock
        # Autocommit mode, so ``with self._db`` would commit nothing: each change that must
        # be all-or-nothing (drop, supersede, insert) runs in ``_transaction``.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._lock = threading.RLock()  # reads too: never see another thread's open transaction
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS messages (
                row INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL, topic TEXT NOT NULL,
                payload BLOB NOT NULL, retain INTEGER NOT NULL, key TEXT,
                created REAL NOT NULL, size INTEGER NOT NULL
            );
            CREATE TABLE IF NOT EXISTS drops (reason TEXT PRIMARY KEY, count INTEGER NOT NULL);
            CREATE TABLE IF NOT EXISTS seq (n INTEGER NOT NULL);
            """
        )

    def close(self) -> None:
        self._db.close()

    def _transaction(self) -> AbstractContextManager[None]:
        return transaction(self._db, self._lock)

    def _next_seq(self) -> int:
        row = self._db.execute("SELECT n FROM seq").fetchone()
        n = (row[0] if row else 0) + 1
        if row:
            self._db.execute("UPDATE seq SET n=?", (n,))
        else:
            self._db.execute("INSERT INTO seq VALUES (?)", (n,))
        return n

    def _drop(self, reason: str, count: int = 1) -> None:
        self._db.execute(
            "INSERT INTO drops VALUES (?, ?) ON CONFLICT(reason) DO UPDATE SET count=count+?",
            (reason, count, count),
        )

    def _expire(self) -> None:
        cur = self._db.execute(
            "DELETE FROM messages WHERE created < ?", (self._clock() - self.ttl_secs,)
        )
        if cur.rowcount:
            self._drop("expired", cur.rowcount)

    def put(self, topic: str, body: dict[str, Any], *, retain: bool = False, key: str | None = None) -> str | None:  # fmt: skip
        """Queue ``body`` (a JSON object; ``id`` and ``seq`` are added). Returns the id, or
        None when the message was dropped (counted)."""
        with self._transaction():
            self._expire()
            msg_id = uuid.uuid4().hex
            body = {"id": msg_id, "seq": self._next_seq(), **body}
            payload = json.dumps(body, separators=(",", ":")).encode()
            size = len(payload)
            if size > self.max_bytes:
                self._drop("too_large")
                return None
            if key is not None:
                self._db.execute("DELETE FROM messages WHERE key=?", (key,))
            used = self.pending_bytes()
            if used + size > self.max_bytes:
                if self.policy == "reject_new":
                    self._drop("full_rejected")
                    return None
                for row, row_size in self._db.execute(
                    "SELECT row, size FROM messages ORDER BY row"
                ).fetchall():
                    if used + size <= self.max_bytes:
                        break
                    self._db.execute("DELETE FROM messages WHERE row=?", (row,))
                    self._drop("full_oldest")
                    used -= row_size
            self._db.execute(
                "INSERT INTO messages (id, topic, payload, retain, key, created, size) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (msg_id, topic, payload, int(retain), key, self._clock(), size),
            )
        return msg_id

    def pending(self, limit: int = 100, exclude: set[int] | frozenset[int] = frozenset()) -> list[OutboxMessage]:  # fmt: skip
        """The oldest pending messages, in the order they were put."""
        with self._transaction():
            self._expire()
        with self._lock:
            rows = self._db.execute(
                "SELECT row, id, topic, payload, retain, created FROM messages ORDER BY row LIMIT ?",
                (limit + len(exclude),),
            ).fetchall()
        out = [OutboxMessage(r[0], r[1], r[2], bytes(r[3]), bool(r[4]), r[5]) for r in rows]
        return [m for m in out if m.row not in exclude][:limit]

    def expire(self) -> None:
        """Drop (and count) what is past the TTL now, so the counts read next are current."""
        with self._transaction():
            self._expire()

    def ack(self, row: int) -> None:
        """The broker acknowledged the message (PUBACK): only now is it deleted."""
        with self._transaction():
            self._db.execute("DELETE FROM messages WHERE row=?", (row,))

    def depth(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM messages").fetchone()[0])

    def pending_bytes(self) -> int:
        with self._lock:
            return int(
                self._db.execute("SELECT COALESCE(SUM(size), 0) FROM messages").fetchone()[0]
            )

    def dropped(self) -> dict[str, int]:
        counts = dict.fromkeys(DROP_REASONS, 0)
        with self._lock:
            counts.update(self._db.execute("SELECT reason, count FROM drops").fetchall())
        return counts
