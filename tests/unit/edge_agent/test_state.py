from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent import State, StateStore


def test_transitions_are_durable_and_only_the_machines(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s.db")
    store.begin("mlp", 1, "models:/mlp/2", None, 2)
    store.transition("mlp", State.VERIFIED)
    store.transition("mlp", State.LOADING, attempts=1)
    store.close()
    store = StateStore(tmp_path / "s.db")  # a restart reads what was written
    row = store.get("mlp")
    assert row is not None and (row.state, row.version, row.attempts) == (State.LOADING, 2, 1)
    with pytest.raises(ValueError, match="not a transition"):
        store.transition("mlp", State.DOWNLOADING)
    store.transition("mlp", State.CANARY)
    row = store.transition("mlp", State.COMMITTED, committed=2, previous=None)
    assert (row.state, row.committed) == (State.COMMITTED, 2)


def test_a_new_attempt_keeps_the_committed_version(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s.db")
    store.begin("mlp", 1, "models:/mlp/1", None, 1)
    store.transition("mlp", State.VERIFIED)
    store.transition("mlp", State.COMMITTED, committed=1)
    row = store.begin("mlp", 2, "models:/mlp@prod", "g.json", None)
    assert (row.state, row.committed, row.version, row.golden) == (State.DOWNLOADING, 1, None, "g.json")  # fmt: skip


def test_the_desired_document_held_survives_a_restart(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s.db")
    store.set_desired({"version": 4, "models": {}})
    store.close()
    assert StateStore(tmp_path / "s.db").desired() == {"version": 4, "models": {}}
