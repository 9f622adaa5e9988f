"""An append-only, hash-chained audit log per registry: who did what, when and why.

One JSON object a line. Each record holds the sha256 of the one before (``prev``)
and its own (``hash``, over the canonical JSON of every other field), so editing,
removing or reordering a record breaks the chain at that record; ``verify`` names
the first broken one. Appends take an exclusive ``flock``, so concurrent writers
(two CLI runs, a server) chain correctly.

It lives in the registry client because a registry follower (which imports nothing of
``serving``) records deployments in it; ``LocalRegistry.audit`` is a registry's log.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import getpass
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["AUDIT_FILE", "AuditError", "AuditLog", "current_user"]

AUDIT_FILE = "audit.jsonl"
_GENESIS = "0" * 64


class AuditError(ValueError):
    """The chain is broken; ``line`` is the first broken record's line number."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line


def current_user() -> str:
    """``SLUICE_USER``, else the login name."""
    user = os.environ.get("SLUICE_USER")
    if user:
        return user
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"


def _digest(record: Mapping[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k != "hash"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class AuditLog:
    path: Path

    @classmethod
    def for_registry(cls, root: Path) -> AuditLog:
        return cls(root / AUDIT_FILE)

    def append(
        self,
        action: str,
        subject: str,
        *,
        user: str | None = None,
        message: str = "",
        details: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Append one record (``action`` e.g. register, tag, alias, delete, deploy)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a+b") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            f.seek(0)
            prev, seq = _GENESIS, 0
            for line in f:
                if line.strip():
                    last = json.loads(line)
                    prev, seq = last.get("hash", ""), int(last.get("seq", 0))
            record: dict[str, Any] = {
                "seq": seq + 1,
                "time": dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"),
                "user": user or current_user(),
                "action": action,
                "subject": subject,
                "message": message,
                "details": dict(details or {}),
                "prev": prev,
            }
            record["hash"] = _digest(record)
            f.seek(0, os.SEEK_END)
            f.write((json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n").encode())
            f.flush()
            os.fsync(f.fileno())
        return record

    def records(self) -> Iterator[dict[str, Any]]:
        if not self.path.exists():
            return
        with self.path.open("rb") as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)

    def history(self, subject: str | None = None) -> list[dict[str, Any]]:
        """Records about ``subject`` (a model name: its ``name:VERSION`` and
        ``name@ALIAS`` subjects included)."""
        out = []
        for r in self.records():
            s = str(r.get("subject", ""))
            if subject is None or s == subject or s.startswith((subject + ":", subject + "@")):
                out.append(r)
        return out

    def verify(self) -> int:
        """Check the whole chain; returns the record count or raises AuditError naming
        the first broken record."""
        prev, count = _GENESIS, 0
        if not self.path.exists():
            return 0
        with self.path.open("rb") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    raise AuditError(f"line {lineno}: not a JSON record", lineno) from None
                if record.get("prev") != prev:
                    raise AuditError(
                        f"line {lineno} (seq {record.get('seq')}): the chain is broken before "
                        "it: its prev hash is not the previous record's hash (a record was "
                        "removed, inserted or reordered)",
                        lineno,
                    )
                if record.get("hash") != _digest(record):
                    raise AuditError(
                        f"line {lineno} (seq {record.get('seq')}): its content does not match "
                        "its hash (the record was edited)",
                        lineno,
                    )
                prev = record["hash"]
                count += 1
        return count
