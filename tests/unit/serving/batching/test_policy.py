"""The flush policy, fed queues and times by hand."""

from __future__ import annotations

from collections import Counter

from serving.batching import Decision, FlushPolicy, Pending, PendingQueue

US = 1000


def _item(
    seq: int,
    rows: int = 1,
    *,
    at: int = 0,
    level: int = 1,
    timeout_us: int = 0,
    reject: bool = True,
    group: object = "a",
    pad: tuple[tuple[int, ...] | None, ...] = (),
) -> Pending:
    return Pending(
        seq, {}, (), rows, level=level, arrival_ns=at * US, timeout_ns=timeout_us * US,
        reject_on_timeout=reject, group=group, pad_shapes=pad,
    )  # fmt: skip


def _queue(*items: Pending, levels: int = 2) -> PendingQueue:
    q = PendingQueue(levels)
    for item in items:
        q.push(item)
    return q


def _seqs(decision: Decision) -> list[list[int]]:
    return [[i.seq for i in f.requests] for f in decision.flushes]


def test_a_lone_request_runs_at_once_on_a_free_instance() -> None:
    d = FlushPolicy(8, 1000 * US).decide(_queue(_item(1)), 0, 1)
    assert _seqs(d) == [[1]] and d.flushes[0].short == "idle"


def test_a_lone_request_waits_for_the_delay_when_told_to() -> None:
    policy = FlushPolicy(8, 1000 * US, run_lone_at_once=False)
    q = _queue(_item(1))
    waiting = policy.decide(q, 0, 1)
    assert waiting.flushes == () and waiting.wake_at_ns == 1000 * US
    due = policy.decide(q, 1000 * US, 1)
    assert _seqs(due) == [[1]] and due.flushes[0].short == "delay_expired"
    assert _seqs(policy.decide(q, 0, 1, draining=True)) == [[1]]


def test_a_lone_request_waits_for_company_while_the_model_is_loaded() -> None:
    policy = FlushPolicy(8, 1000 * US)
    q = _queue(_item(1))
    waiting = policy.decide(q, 0, 1, loaded=True)  # another instance runs, or the last batch
    assert waiting.flushes == () and waiting.wake_at_ns == 1000 * US  # had several requests
    due = policy.decide(q, 1000 * US, 1, loaded=True)
    assert _seqs(due) == [[1]] and due.flushes[0].short == "delay_expired"


def test_without_deadlines_a_busy_model_decides_nothing_and_sets_no_timer() -> None:
    q = _queue(_item(1), _item(2, at=10))
    assert q.timed == 0
    assert FlushPolicy(8, 100 * US).decide(q, 500 * US, 0) == Decision()
    timed = _queue(_item(1, timeout_us=300), _item(2, timeout_us=900))
    assert timed.timed == 2
    d = FlushPolicy(8, 100 * US).decide(timed, 500 * US, 0)
    assert [i.seq for i in d.expired] == [1] and d.wake_at_ns == 900 * US + 1
    timed.remove(d.expired)
    assert timed.timed == 1 and len(timed) == 1 and timed.rows == 1


def test_waiting_requests_wait_for_the_delay_then_run_together() -> None:
    policy = FlushPolicy(8, 100 * US)
    q = _queue(_item(1, 2, at=0), _item(2, 3, at=40))
    waiting = policy.decide(q, 50 * US, 1)
    assert waiting.flushes == () and waiting.wake_at_ns == 100 * US
    due = policy.decide(q, 100 * US, 1)
    assert _seqs(due) == [[1, 2]]
    assert due.flushes[0].rows == 5 and due.flushes[0].short == "delay_expired"


def test_no_instance_free_means_no_batch() -> None:
    d = FlushPolicy(8, 0).decide(_queue(_item(1), _item(2)), 10**9, 0)
    assert d.flushes == () and d.wake_at_ns is None


def test_zero_delay_batches_what_waits_and_never_waits() -> None:
    d = FlushPolicy(8, 0).decide(_queue(_item(1), _item(2, 3), _item(3)), 0, 1)
    assert _seqs(d) == [[1, 2, 3]] and d.flushes[0].short == "delay_expired"


def test_a_full_batch_runs_at_once_and_requests_are_never_split() -> None:
    policy = FlushPolicy(4, 10**9)
    full = policy.decide(_queue(_item(1, 2), _item(2, 2), _item(3, 1)), 0, 1)
    assert _seqs(full) == [[1, 2]] and full.flushes[0].short is None
    fit = policy.decide(_queue(_item(1, 3), _item(2, 2), _item(3, 1)), 0, 1)
    assert _seqs(fit) == [[1]] and fit.flushes[0].short == "fit"


def test_batch_size_histogram_over_a_stream() -> None:
    """Sizes 2 then 6 from max 8 and preferred 6, the way a user would see them."""
    policy = FlushPolicy(8, 100 * US, preferred_batch_sizes=[6])
    q = _queue(_item(1, 1, at=0), _item(2, 1, at=10))
    sizes: Counter[int] = Counter()
    d = policy.decide(q, 100 * US, 1)
    for flush in d.flushes:
        sizes[flush.rows] += 1
        q.remove(flush.requests)
    for seq, rows in ((3, 2), (4, 2), (5, 2), (6, 1)):
        q.push(_item(seq, rows, at=200))
    d = policy.decide(q, 200 * US, 1)
    for flush in d.flushes:
        sizes[flush.rows] += 1
        q.remove(flush.requests)
        assert flush.short == "preferred"
    assert sizes == {2: 1, 6: 1}
    assert [i.seq for i in q] == [6]


def test_priority_levels_are_served_first_then_arrival() -> None:
    q = _queue(_item(1, level=2), _item(2, level=2), _item(3, level=1), _item(4, level=1))
    d = FlushPolicy(1, 0).decide(q, 0, 4)
    assert _seqs(d) == [[3], [4], [1], [2]]


def test_lower_priority_requests_fill_a_batch_behind_higher_ones() -> None:
    q = _queue(_item(1, level=2), _item(2, level=1))
    assert _seqs(FlushPolicy(4, 0).decide(q, 0, 1)) == [[2, 1]]


def test_reject_timeouts_expire_strictly_after_the_deadline() -> None:
    policy = FlushPolicy(8, 10**9)
    q = _queue(_item(1, timeout_us=100), _item(2))
    at_deadline = policy.decide(q, 100 * US, 0)
    assert at_deadline.expired == () and at_deadline.wake_at_ns == 100 * US + 1
    after = policy.decide(q, 100 * US + 1, 0)
    assert [i.seq for i in after.expired] == [1]


def test_a_deadline_before_the_delay_runs_the_batch_early() -> None:
    policy = FlushPolicy(8, 1000 * US)
    q = _queue(_item(1, at=0), _item(2, at=0, timeout_us=300))
    assert policy.decide(q, 0, 1).wake_at_ns == 300 * US
    d = policy.decide(q, 300 * US, 1)
    assert _seqs(d) == [[1, 2]] and d.flushes[0].short == "timeout"


def test_delayed_requests_go_behind_their_level() -> None:
    q = _queue(_item(1, timeout_us=10, reject=False), _item(2), _item(3, level=2))
    d = FlushPolicy(1, 0).decide(q, 11 * US, 3)
    assert d.expired == () and _seqs(d) == [[2], [1], [3]]


def test_shapes_are_grouped_instead_of_stopping_at_the_first_mismatch() -> None:
    q = _queue(_item(1, group="a"), _item(2, group="b"), _item(3, group="a"), _item(4, group="b"))
    d = FlushPolicy(8, 0).decide(q, 0, 2)
    assert _seqs(d) == [[1, 3], [2, 4]]
    assert [f.short for f in d.flushes] == ["shape", "delay_expired"]


def test_padding_joins_lengths_within_the_waste_cap() -> None:
    a, b, c = _item(1, pad=((4,),)), _item(2, pad=((3,),)), _item(3, pad=((1,),))
    # 1+3 real of 4+4 padded for (a, b): 12.5% waste; adding c: 8 real of 12 -> 33%.
    assert _seqs(FlushPolicy(8, 0, max_waste=0.2).decide(_queue(a, b, c), 0, 1)) == [[1, 2]]
    assert _seqs(FlushPolicy(8, 0, max_waste=0.5).decide(_queue(a, b, c), 0, 1)) == [[1, 2, 3]]


def test_draining_runs_what_waits_without_the_delay() -> None:
    d = FlushPolicy(8, 10**9).decide(_queue(_item(1), _item(2)), 0, 1, draining=True)
    assert _seqs(d) == [[1, 2]] and d.flushes[0].short == "closing"
