from __future__ import annotations

import json
from pathlib import Path

import pytest

from registry_client._audit import AuditError, AuditLog


def _log(tmp_path: Path) -> AuditLog:
    log = AuditLog.for_registry(tmp_path)
    log.append("register", "fraud:3", user="ana", message="retrained on May data")
    log.append("alias", "fraud:3", user="ana", details={"alias": "prod", "from": 2})
    log.append("deploy", "fraud:3", user="server-a")
    log.append("register", "churn:1", user="bo")
    return log


def test_history_and_a_clean_chain(tmp_path: Path) -> None:
    log = _log(tmp_path)
    assert log.verify() == 4
    history = log.history("fraud")
    assert [(r["action"], r["user"]) for r in history] == [
        ("register", "ana"), ("alias", "ana"), ("deploy", "server-a"),
    ]  # fmt: skip
    assert history[0]["message"] == "retrained on May data"


def test_user_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_USER", "ci-bot")
    assert AuditLog.for_registry(tmp_path).append("tag", "m:1")["user"] == "ci-bot"


@pytest.mark.parametrize(
    ("tamper", "line", "reason"),
    [
        (lambda lines: lines.__setitem__(1, lines[1].replace('"prod"', '"dev"')), 2, "edited"),
        (lambda lines: lines.pop(1), 2, "removed, inserted or reordered"),
        (lambda lines: lines.insert(0, lines.pop(2)), 1, "removed, inserted or reordered"),
    ],
)
def test_tampering_names_the_first_broken_record(
    tmp_path: Path, tamper: object, line: int, reason: str
) -> None:
    log = _log(tmp_path)
    lines = log.path.read_text().splitlines()
    tamper(lines)  # type: ignore[operator]
    log.path.write_text("\n".join(lines) + "\n")
    with pytest.raises(AuditError, match=reason) as info:
        log.verify()
    assert info.value.line == line


def test_rewriting_a_record_with_a_fresh_hash_still_breaks_the_next(tmp_path: Path) -> None:
    log = _log(tmp_path)
    lines = log.path.read_text().splitlines()
    record = json.loads(lines[0])
    record["user"] = "mallory"
    from registry_client._audit import _digest

    record["hash"] = _digest(record)
    lines[0] = json.dumps(record)
    log.path.write_text("\n".join(lines) + "\n")
    with pytest.raises(AuditError) as info:
        log.verify()
    assert info.value.line == 2
