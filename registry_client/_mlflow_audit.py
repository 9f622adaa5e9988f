"""An MLflow registry's audit log, kept in the MLflow server so everyone using it shares it.

Each record of the chain (``registry_client._audit``: same format, hashing and checks as a
local registry's ``audit.jsonl``) is one MLflow experiment named ``sluice-audit/<seq>``
(the seq zero-padded, so names sort): its tags hold the record's JSON
(``sluice.audit.record.0``, ``.1``, ...: a tag value holds at most 20000 characters) and,
for searching and for the UI, its ``hash``, ``prev``, ``action``, ``subject`` and ``user``.

Why experiments: MLflow offers no compare-and-swap, but an experiment name is unique and
``experiments/create`` takes the tags in the same call, so creating ``sluice-audit/<N>``
claims seq N and writes its record atomically. A writer that finds the name taken lost
the race: it reads the new last record and tries again after a random pause. Two writers
can therefore never both append after the same record: concurrent writers do not fork
the chain.

``verify`` reads every record experiment (deleted ones too) in seq order, checks the chain
with the shared check (edits, gaps, reordering), checks each name against its record and
names a deleted record experiment (a deleted last record leaves no gap behind it).
Experiments purged for good (``mlflow gc``) after the last live record cannot be told from
records never written.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from registry_client._audit import AuditError, check_chain, new_record, select_history
from registry_client._errors import RegistryError

if TYPE_CHECKING:
    from registry_client._mlflow import MlflowRegistry

__all__ = ["AUDIT_EXPERIMENT", "MlflowAuditLog"]

AUDIT_EXPERIMENT = "sluice-audit"
_TAG = "sluice.audit."
_PARTS = _TAG + "parts"
_CHUNK = 15000  # characters per record tag, under MLflow's 20000
_SEQ_WIDTH = 12


def _tags(experiment: Mapping[str, Any]) -> dict[str, str]:
    return {t["key"]: t["value"] for t in experiment.get("tags", [])}


def _record_of(tags: Mapping[str, str]) -> dict[str, Any] | None:
    """The record an experiment holds; None when its tags do not make one."""
    try:
        parts = int(tags[_PARTS])
        record = json.loads("".join(tags[f"{_TAG}record.{i}"] for i in range(parts)))
    except (KeyError, ValueError):
        return None
    return record if isinstance(record, dict) else None


class MlflowAuditLog:
    """The audit log of one MLflow server; every method is a coroutine."""

    def __init__(
        self, registry: MlflowRegistry, prefix: str = AUDIT_EXPERIMENT, *, attempts: int = 50
    ) -> None:
        self.registry = registry
        self.prefix = prefix
        self.attempts = attempts
        self._rng = random.Random()

    @property
    def where(self) -> str:
        return f"{self.registry.base_url} experiments '{self.prefix}/*'"

    def _name(self, seq: object) -> str:
        return f"{self.prefix}/{str(seq).zfill(_SEQ_WIDTH)}"

    # -- writing ------------------------------------------------------------------

    async def append(
        self,
        action: str,
        subject: str,
        *,
        user: str | None = None,
        message: str = "",
        details: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Append one record after the current last one; when another writer claimed
        its seq first, read again and retry."""
        for attempt in range(self.attempts):
            found = await self._experiments(order="DESC", limit=1)
            last = _record_of(_tags(found[0])) if found else None
            if found and last is None:
                raise AuditError(
                    f"experiment '{found[0]['name']}': not a JSON record; "
                    "cannot append after a broken last record",
                    0,
                )
            record = new_record(last, action, subject, user=user, message=message, details=details)
            if await self._claim(record):
                return record
            await asyncio.sleep(self._rng.uniform(0.0, 0.02 * 2 ** min(attempt, 5)))
        raise RegistryError(
            f"audit log {self.where}: could not append after {self.attempts} tries "
            "(other writers kept claiming the same record number)"
        )

    async def _claim(self, record: Mapping[str, Any]) -> bool:
        """Create the record's experiment; False when its name (its seq) is taken."""
        text = json.dumps(record, sort_keys=True)  # ASCII: a tag's limit counts characters
        chunks = [text[i : i + _CHUNK] for i in range(0, len(text), _CHUNK)]
        tags = {
            _TAG + "hash": str(record["hash"]),
            _TAG + "prev": str(record["prev"]),
            _TAG + "action": str(record["action"])[:1000],
            _TAG + "subject": str(record["subject"])[:1000],
            _TAG + "user": str(record["user"])[:1000],
            _PARTS: str(len(chunks)),
            **{f"{_TAG}record.{i}": chunk for i, chunk in enumerate(chunks)},
        }
        body = {
            "name": self._name(record["seq"]),
            "tags": [{"key": k, "value": v} for k, v in tags.items()],
        }
        try:
            await self.registry.api("POST", "experiments/create", body)
        except RegistryError as exc:
            if "already exists" in str(exc).lower():
                return False
            raise
        return True

    # -- reading ------------------------------------------------------------------

    async def _experiments(
        self, *, order: str = "ASC", limit: int | None = None
    ) -> list[dict[str, Any]]:
        """The record experiments (deleted ones too) by name, i.e. by seq."""
        body: dict[str, Any] = {
            "filter": f"name LIKE '{self.prefix}/%'",
            "view_type": "ALL",
            "max_results": min(limit or 1000, 1000),
            "order_by": [f"name {order}"],
        }
        found: list[dict[str, Any]] = []
        while True:
            page = await self.registry.api("POST", "experiments/search", body)
            found.extend(page.get("experiments", []))
            token = page.get("next_page_token")
            if not token or (limit is not None and len(found) >= limit):
                return found[:limit] if limit is not None else found
            body["page_token"] = token

    async def records(self) -> list[dict[str, Any]]:
        out = []
        for experiment in await self._experiments():
            record = _record_of(_tags(experiment))
            if record is not None:
                out.append(record)
        return out

    async def history(self, subject: str | None = None) -> list[dict[str, Any]]:
        """Records about ``subject`` (see ``select_history``)."""
        return select_history(await self.records(), subject)

    async def verify(self) -> int:
        """Check the whole chain; returns the record count or raises AuditError naming
        the first broken record."""
        return check_chain(self._entries(await self._experiments()))

    def _entries(
        self, experiments: Sequence[Mapping[str, Any]]
    ) -> Iterator[tuple[str, dict[str, Any] | None]]:
        """What ``check_chain`` reads; an experiment deleted, renamed or whose tags
        disagree with its record breaks the chain there."""
        for place, experiment in enumerate(experiments, 1):
            tags = _tags(experiment)
            record = _record_of(tags)
            where = f"experiment '{experiment['name']}'"
            if record is not None:
                name = f"{where} (seq {record.get('seq')})"
                if experiment.get("lifecycle_stage") == "deleted":
                    raise AuditError(
                        f"{name}: the record was deleted (restore it: mlflow experiments "
                        f"restore --experiment-id {experiment['experiment_id']})",
                        place,
                    )
                if experiment["name"] != self._name(record.get("seq")):
                    raise AuditError(f"{name}: renamed, or its seq was edited", place)
                mismatch = [key for key in ("hash", "prev") if tags.get(_TAG + key) != record.get(key)]  # fmt: skip
                if mismatch:
                    raise AuditError(
                        f"{name}: its {' and '.join(mismatch)} tag does not match its record "
                        "(the record was edited)",
                        place,
                    )
            yield where, record
