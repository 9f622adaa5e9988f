from __future__ import annotations

import json
from pathlib import Path

from edge_agent import Outbox


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def bodies(box: Outbox) -> list[int]:
    return [json.loads(m.payload)["n"] for m in box.pending(limit=1000)]


def test_messages_survive_a_reopen_and_leave_only_when_acknowledged(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", max_bytes=10_000, ttl_secs=60)
    ids = [box.put("t", {"n": n}) for n in range(3)]
    box.close()
    box = Outbox(tmp_path / "o.db", max_bytes=10_000, ttl_secs=60)
    pending = box.pending()
    assert [json.loads(m.payload)["id"] for m in pending] == ids  # every message carries its id
    assert [json.loads(m.payload)["seq"] for m in pending] == [1, 2, 3]
    box.ack(pending[1].row)
    assert bodies(box) == [0, 2]
    assert [m.row for m in box.pending(exclude={pending[0].row})] == [pending[2].row]


def test_drop_oldest_keeps_the_byte_cap_and_counts(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", max_bytes=1024, ttl_secs=60)
    for n in range(40):
        box.put("t", {"n": n, "pad": "x" * 60})
    assert box.pending_bytes() <= 1024
    kept = bodies(box)
    assert kept == list(range(40 - len(kept), 40))
    assert box.dropped()["full_oldest"] == 40 - len(kept)


def test_reject_new_keeps_the_oldest_and_counts(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", max_bytes=1024, ttl_secs=60, policy="reject_new")
    results = [box.put("t", {"n": n, "pad": "x" * 60}) for n in range(40)]
    kept = bodies(box)
    assert kept == list(range(len(kept)))
    assert results.count(None) == box.dropped()["full_rejected"] == 40 - len(kept)


def test_messages_past_the_ttl_are_dropped_and_counted(tmp_path: Path) -> None:
    clock = Clock()
    box = Outbox(tmp_path / "o.db", max_bytes=10_000, ttl_secs=60, clock=clock)
    box.put("t", {"n": 0})
    clock.now += 61
    box.put("t", {"n": 1})
    assert bodies(box) == [1]
    assert box.dropped()["expired"] == 1


def test_a_keyed_message_supersedes_the_pending_one(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", max_bytes=10_000, ttl_secs=60)
    box.put("r", {"n": 0}, retain=True, key="reported")
    box.put("e", {"n": 1})
    box.put("r", {"n": 2}, retain=True, key="reported")
    assert bodies(box) == [1, 2] and box.pending()[1].retain


def test_a_message_larger_than_the_cap_is_dropped(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", max_bytes=1024, ttl_secs=60)
    assert box.put("t", {"pad": "x" * 2000}) is None
    assert box.dropped()["too_large"] == 1 and box.depth() == 0


def test_expire_counts_what_is_past_the_ttl_before_anything_is_put(tmp_path: Path) -> None:
    clock = Clock()
    box = Outbox(tmp_path / "o.db", max_bytes=10_000, ttl_secs=60, clock=clock)
    box.put("t", {"n": 1})
    box.put("t", {"n": 2})
    clock.now += 61
    box.expire()
    assert (box.dropped()["expired"], box.depth(), box.pending_bytes()) == (2, 0, 0)


def test_a_put_that_fails_midway_keeps_the_superseded_state(tmp_path: Path) -> None:
    # The reported state is replaced by deleting the pending one and inserting the new
    # one: if the insert fails, the delete must not have happened (one transaction).
    calls = 0

    def clock() -> float:
        nonlocal calls
        calls += 1
        if calls == 4:  # put #2: _expire reads the clock (3), the insert reads it (4)
            raise OSError("disk gone")
        return 1000.0

    box = Outbox(tmp_path / "o.db", max_bytes=10_000, ttl_secs=60, clock=clock)
    box.put("r", {"n": 0}, retain=True, key="reported")
    try:
        box.put("r", {"n": 1}, retain=True, key="reported")
    except OSError:
        pass
    else:
        raise AssertionError("the clock did not fail the second put")
    reopened = Outbox(tmp_path / "o.db", max_bytes=10_000, ttl_secs=60, clock=lambda: 1000.0)
    assert bodies(reopened) == [0]
