"""The registry verbs write the audit log (who, what, why) and send their events;
``sluice registry history NAME [--verify]`` reads the log back and checks its chain."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from serving.cli import main
from tests.unit.serving.monitoring.receiver import Receiver

SECRET = "whsec_" + base64.b64encode(b"a test secret of 32 bytes......").decode()


def _run(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as exited:
        main(argv)
        raise SystemExit(0)
    return int(exited.value.code or 0)


@pytest.fixture
def files(tmp_path: Path) -> Path:
    model = tmp_path / "model.onnx"
    model.write_bytes(b"not really onnx, the registry does not care")
    return model


def test_verbs_are_audited_and_history_prints_them(
    tmp_path: Path, files: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    reg = str(tmp_path / "registry")
    monkeypatch.setenv("SLUICE_USER", "ci-bot")
    assert _run(["registry", "register", "fraud", str(files), "--registry", reg,
                 "--user", "ana", "-m", "retrained on May data"]) == 0  # fmt: skip
    assert _run(["registry", "register", "fraud", str(files), "--registry", reg]) == 0
    assert _run(["registry", "alias", "fraud", "prod", "1", "--registry", reg, "-m", "go"]) == 0
    assert _run(["registry", "alias", "fraud", "prod", "2", "--registry", reg]) == 0
    assert _run(["registry", "tag", "fraud", "2", "stage=prod", "--registry", reg]) == 0
    assert _run(["registry", "delete", "fraud", "1", "--registry", reg, "--user", "bo"]) == 0
    assert _run(["registry", "register", "churn", str(files), "--registry", reg]) == 0
    capsys.readouterr()
    assert _run(["registry", "history", "fraud", "--registry", reg, "--verify"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "7 record(s), the chain is intact" in out[0]
    rows = [line.split() for line in out[1:]]
    assert [(r[2], r[3], r[4]) for r in rows] == [
        ("ana", "register", "fraud:1"), ("ci-bot", "register", "fraud:2"),
        ("ci-bot", "alias", "fraud@prod"), ("ci-bot", "alias", "fraud@prod"),
        ("ci-bot", "tag", "fraud:2"), ("bo", "delete", "fraud:1"),
    ]  # fmt: skip
    assert '"retrained on May data"' in out[1]
    assert '"previous": 1' in out[4] and '"version": 2' in out[4]


def test_a_tampered_log_names_the_first_broken_record(
    tmp_path: Path, files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reg = tmp_path / "registry"
    for _ in range(3):
        assert _run(["registry", "register", "fraud", str(files), "--registry", str(reg)]) == 0
    log = reg / "audit.jsonl"
    lines = log.read_text().splitlines()
    record = json.loads(lines[1])
    record["user"] = "someone-else"
    lines[1] = json.dumps(record, sort_keys=True)
    log.write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    assert _run(["registry", "history", "fraud", "--registry", str(reg), "--verify"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("sluice: error: audit log ") and "line 2 (seq 2)" in err
    assert "edited" in err


def test_registry_events_reach_a_receiver_signed(
    tmp_path: Path, files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reg = str(tmp_path / "registry")
    with Receiver(SECRET) as rx:
        events = tmp_path / "events.toml"
        events.write_text(f'[[webhook]]\nurl = "{rx.url}"\nsecret = "{SECRET}"\n')
        assert _run(["registry", "register", "fraud", str(files), "--registry", reg,
                     "--alias", "staging", "--events", str(events), "--user", "ana"]) == 0  # fmt: skip
        assert _run(["registry", "register", "fraud", str(files), "--registry", reg]) == 0
        assert _run(["registry", "alias", "fraud", "staging", "2", "--registry", reg,
                     "--events", str(events), "-m", "promote"]) == 0  # fmt: skip
    assert rx.bad_signatures == 0
    assert [(e["type"], e["subject"]) for e in rx.events] == [
        ("io.sluice.model.registered", "fraud:1"),
        ("io.sluice.model.alias_moved", "fraud:1"),
        ("io.sluice.model.alias_moved", "fraud@staging"),
    ]
    registered, _, moved = (e["data"] for e in rx.events)
    assert registered["model"] == "fraud" and registered["version"] == 1
    assert registered["user"] == "ana"
    assert moved["alias"] == "staging" and (moved["previous"], moved["version"]) == (1, 2)
    assert moved["message"] == "promote"


def test_a_receiver_that_is_down_keeps_the_event_for_later(
    tmp_path: Path, files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reg = str(tmp_path / "registry")
    with Receiver(SECRET) as rx:
        rx.status = 500
        events = tmp_path / "events.toml"
        events.write_text(f'[[webhook]]\nurl = "{rx.url}"\nsecret = "{SECRET}"\n')
        argv = ["registry", "register", "fraud", str(files), "--registry", reg, "--events"]
        assert _run([*argv, str(events)]) == 0
    outbox = tmp_path / "events.toml.outbox"
    assert capsys.readouterr().err == (
        f"1 event pending in {outbox}, will be delivered by the next sluice command or "
        "server using this events file\n"
    )
    assert len(list(outbox.rglob("*.json"))) == 1


def test_a_bad_events_file_refuses_before_anything_changes(
    tmp_path: Path, files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reg = tmp_path / "registry"
    events = tmp_path / "events.toml"
    events.write_text('[[webhook]]\nurl = "ftp://nope"\nsecret = "x"\n')
    argv = ["registry", "register", "fraud", str(files), "--registry", str(reg)]
    assert _run([*argv, "--events", str(events)]) == 1
    assert "url must be an http(s) URL" in capsys.readouterr().err
    assert not reg.exists()  # nothing registered, nothing audited
