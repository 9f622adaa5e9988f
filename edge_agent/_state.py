r"""The persisted per-model state machine and the desired document the device holds.

```
downloading -> verified -> loading -> canary -> committed
      \            \           \          \----> rolled_back (the previous version serves)
       \------------\-----------\--------------> failed (with the reason)
```

Every transition is a SQLite transaction (WAL, ``synchronous=FULL``) committed before
the step it announces takes effect, so a restart after SIGKILL or power loss reads a
state that was true: ``committed`` is what serves at boot, and a version caught in
``loading`` or ``canary`` is tried again from ``verified`` (at most ``MAX_ATTEMPTS``
times) while the committed one serves.
"""

from __future__ import annotations

import enum
import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["MAX_ATTEMPTS", "ModelRow", "State", "StateStore"]

MAX_ATTEMPTS = 3


class State(enum.StrEnum):
    DOWNLOADING = "downloading"
    VERIFIED = "verified"
    LOADING = "loading"
    CANARY = "canary"
    COMMITTED = "committed"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"


_NEXT: dict[State, frozenset[State]] = {
    State.DOWNLOADING: frozenset({State.DOWNLOADING, State.VERIFIED, State.FAILED}),
    State.VERIFIED: frozenset({State.LOADING, State.COMMITTED, State.FAILED}),
    State.LOADING: frozenset({State.CANARY, State.VERIFIED, State.ROLLED_BACK, State.FAILED}),
    State.CANARY: frozenset({State.COMMITTED, State.VERIFIED, State.ROLLED_BACK, State.FAILED}),
    State.COMMITTED: frozenset(),
    State.ROLLED_BACK: frozenset(),
    State.FAILED: frozenset(),
}
SETTLED = frozenset({State.COMMITTED, State.ROLLED_BACK, State.FAILED})


@dataclass(frozen=True, slots=True)
class ModelRow:
    name: str
    doc_version: int  # the desired document this attempt answers
    ref: str
    version: int | None  # the concrete version ref resolved to (None: not resolved yet)
    state: State
    committed: int | None  # serves now, or at the next boot
    previous: int | None  # the committed version before it, kept on disk
    reason: str
    attempts: int
    golden: str | None
    updated_at: float


class StateStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS models (
                name TEXT PRIMARY KEY, doc_version INTEGER NOT NULL, ref TEXT NOT NULL,
                version INTEGER, state TEXT NOT NULL, committed INTEGER, previous INTEGER,
                reason TEXT NOT NULL DEFAULT '', attempts INTEGER NOT NULL DEFAULT 0,
                golden TEXT, updated_at REAL NOT NULL
            );
            """
        )

    def close(self) -> None:
        self._db.close()

    # -- the desired document held ------------------------------------------

    def desired(self) -> dict[str, Any] | None:
        row = self._db.execute("SELECT value FROM kv WHERE key='desired'").fetchone()
        return json.loads(row[0]) if row else None

    def set_desired(self, doc: dict[str, Any]) -> None:
        self._put("desired", json.dumps(doc))

    def get_value(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM kv WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def _put(self, key: str, value: str) -> None:
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (key, value))

    def set_value(self, key: str, value: str) -> None:
        self._put(key, value)

    # -- models ---------------------------------------------------------------

    def rows(self) -> list[ModelRow]:
        cur = self._db.execute("SELECT * FROM models ORDER BY name")
        return [self._row(r) for r in cur.fetchall()]

    def get(self, name: str) -> ModelRow | None:
        r = self._db.execute("SELECT * FROM models WHERE name=?", (name,)).fetchone()
        return self._row(r) if r else None

    @staticmethod
    def _row(r: tuple[Any, ...]) -> ModelRow:
        return ModelRow(r[0], r[1], r[2], r[3], State(r[4]), r[5], r[6], r[7], r[8], r[9], r[10])

    def begin(self, name: str, doc_version: int, ref: str, golden: str | None, version: int | None) -> ModelRow:  # fmt: skip
        """A new attempt at a desired model: ``downloading`` (the committed version stays)."""
        with self._db:
            self._db.execute(
                """INSERT INTO models (name, doc_version, ref, version, state, reason, attempts,
                                       golden, updated_at)
                   VALUES (?, ?, ?, ?, 'downloading', '', 0, ?, ?)
                   ON CONFLICT(name) DO UPDATE SET doc_version=excluded.doc_version,
                     ref=excluded.ref, version=excluded.version, state='downloading',
                     reason='', attempts=0, golden=excluded.golden,
                     updated_at=excluded.updated_at""",
                (name, doc_version, ref, version, golden, time.time()),
            )
        row = self.get(name)
        assert row is not None
        return row

    def transition(self, name: str, state: State, *, reason: str = "", **fields: Any) -> ModelRow:
        """Move ``name`` to ``state`` durably; refuses a move the machine does not have."""
        row = self.get(name)
        if row is None:
            raise KeyError(name)
        if state not in _NEXT[row.state]:
            raise ValueError(f"{name}: {row.state} -> {state} is not a transition")
        allowed = {"version", "committed", "previous", "attempts"}
        assert set(fields) <= allowed, fields
        sets = ", ".join(f"{k}=?" for k in fields)
        with self._db:
            self._db.execute(
                f"UPDATE models SET state=?, reason=?, updated_at=?{', ' + sets if sets else ''} WHERE name=?",
                (state.value, reason, time.time(), *fields.values(), name),
            )
        new = self.get(name)
        assert new is not None
        return new

    def remove(self, name: str) -> None:
        with self._db:
            self._db.execute("DELETE FROM models WHERE name=?", (name,))
