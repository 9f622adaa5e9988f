"""An append-only, hash-chained audit log per registry: who did what, when and why.

The chain is storage-neutral: each record holds its place (``seq``), the sha256 of the
record before it (``prev``) and its own (``hash``, over the canonical JSON of every other
field), so editing, removing, inserting or reordering a record breaks the chain at that
record; ``check_chain`` names the first broken one. ``new_record`` and ``check_chain`` are
shared by the two stores: ``AuditLog`` here (a local registry's ``audit.jsonl``, one JSON
object a line; appends take an exclusive ``flock``, so concurrent writers chain correctly)
and ``MlflowAuditLog`` (runs of one experiment in the MLflow server, shared by everyone
using that server).

It lives in the registry client because a registry follower (which imports nothing of
``serving``) records deployments in it; ``LocalRegistry.audit`` and ``MlflowRegistry.audit``
are a registry's log.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import getpass
import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "AUDIT_FILE",
    "AuditError",
    "AuditLog",
    "append_record",
    "check_chain",
    "current_user",
    "new_record",
    "read_history",
    "select_history",
    "verify_log",
]

AUDIT_FILE = "audit.jsonl"
GENESIS = "0" * 64


class AuditError(ValueError):
    """The chain is broken; ``line`` is the first broken record's place in the store
    (1-based: its line in ``audit.jsonl``, its rank by seq in MLflow)."""

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


def new_record(
    last: Mapping[str, Any] | None,
    action: str,
    subject: str,
    *,
    user: str | None = None,
    message: str = "",
    details: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The record that follows ``last`` (None: the first), hash included."""
    record: dict[str, Any] = {
        "seq": int(last.get("seq", 0)) + 1 if last else 1,
        "time": dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"),
        "user": user or current_user(),
        "action": action,
        "subject": subject,
        "message": message,
        "details": dict(details or {}),
        "prev": str(last.get("hash", "")) if last else GENESIS,
    }
    record["hash"] = _digest(record)
    return record


def check_chain(entries: Iterable[tuple[str, Mapping[str, Any] | None]]) -> int:
    """Check records in stored order; ``entries`` are (where, record), ``where`` naming
    the record for a person (``line 3``, ``run 1f0c...``), a None record one that could
    not be read. Returns the count or raises AuditError naming the first broken record."""
    prev, count = GENESIS, 0
    prev_of_last: str | None = None
    for place, (where, record) in enumerate(entries, 1):
        if record is None:
            raise AuditError(f"{where}: not a JSON record", place)
        seq = record.get("seq")
        name = f"{where} (seq {seq})"
        if count and seq == count and record.get("prev") == prev_of_last:
            raise AuditError(
                f"{name}: a second record with the seq and predecessor of the one before it "
                "(the chain forked: two writers appended at once)",
                place,
            )
        if record.get("prev") != prev:
            if isinstance(seq, int) and seq > count + 1:
                missing = f"seq {count + 1}" + (f"-{seq - 1}" if seq - 1 > count + 1 else "")
                raise AuditError(
                    f"{name}: the chain is broken before it: {missing} is missing "
                    "(a record was removed, inserted or reordered)",
                    place,
                )
            raise AuditError(
                f"{name}: the chain is broken before it: its prev hash is not the previous "
                "record's hash (a record was removed, inserted or reordered)",
                place,
            )
        if record.get("hash") != _digest(record):
            raise AuditError(
                f"{name}: its content does not match its hash (the record was edited)", place
            )
        if seq != count + 1:
            raise AuditError(f"{name}: its seq should be {count + 1} (the record was rewritten)", place)  # fmt: skip
        prev_of_last, prev = prev, str(record["hash"])
        count += 1
    return count


def select_history(
    records: Iterable[Mapping[str, Any]], subject: str | None
) -> list[dict[str, Any]]:
    """Records about ``subject`` (a model name: its ``name:VERSION`` and ``name@ALIAS``
    subjects included); every record when it is None."""
    out = []
    for r in records:
        s = str(r.get("subject", ""))
        if subject is None or s == subject or s.startswith((subject + ":", subject + "@")):
            out.append(dict(r))
    return out


@dataclass(frozen=True, slots=True)
class AuditLog:
    """A local registry's log: ``audit.jsonl`` in its directory."""

    path: Path

    @classmethod
    def for_registry(cls, root: Path) -> AuditLog:
        return cls(root / AUDIT_FILE)

    @property
    def where(self) -> str:
        return str(self.path)

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
            last = None
            for line in f:
                if line.strip():
                    last = json.loads(line)
            record = new_record(last, action, subject, user=user, message=message, details=details)
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
        """Records about ``subject`` (see ``select_history``)."""
        return select_history(self.records(), subject)

    def verify(self) -> int:
        """Check the whole chain; returns the record count or raises AuditError naming
        the first broken record."""
        if not self.path.exists():
            return 0
        with self.path.open("rb") as f:
            return check_chain(_lines(f))


def _lines(f: Iterable[bytes]) -> Iterator[tuple[str, dict[str, Any] | None]]:
    for lineno, line in enumerate(f, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        yield f"line {lineno}", record if isinstance(record, dict) else None


# -- one face over both stores: a local log answers at once, MLflow's is awaited -------


async def append_record(
    log: Any,
    action: str,
    subject: str,
    *,
    user: str | None = None,
    message: str = "",
    details: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Append to a registry's log (``registry.audit``), local or MLflow."""
    result = log.append(action, subject, user=user, message=message, details=details)
    return dict(result if isinstance(log, AuditLog) else await result)


async def read_history(log: Any, subject: str | None = None) -> list[dict[str, Any]]:
    result = log.history(subject)
    return list(result if isinstance(log, AuditLog) else await result)


async def verify_log(log: Any) -> int:
    """The record count of an intact chain; AuditError names the first broken record."""
    result = log.verify()
    return int(result if isinstance(log, AuditLog) else await result)
