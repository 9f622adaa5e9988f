"""The server-side split of a load point, from two readings of the statistics endpoint."""

from __future__ import annotations

from serving.profile._sweep import ServerCounters, server_split

MS = 1_000_000  # ns


def test_the_split_is_the_mean_of_what_the_server_counted_during_the_point() -> None:
    before = ServerCounters(
        phases={"success": (10, 50 * MS), "queue": (10, 5 * MS), "compute_infer": (10, 30 * MS)},
        batches={1: (10, 30 * MS)},
    )
    # 4 more requests: two alone (2 ms each), two together in one batch of 2 (6 ms, which
    # both requests count, as Triton's statistics do).
    after = ServerCounters(
        phases={
            "success": (14, 50 * MS + 4 * 3 * MS),
            "queue": (14, 5 * MS + 4 * MS),
            "compute_infer": (14, 30 * MS + 2 * 2 * MS + 2 * 6 * MS),
        },
        batches={1: (12, 34 * MS), 2: (1, 6 * MS)},
    )
    split = server_split(before, after)
    assert split["requests"] == 4
    assert split["request_ms"] == 3.0
    assert split["queue_ms"] == 1.0
    assert split["compute_infer_ms"] == 4.0
    assert split["compute_input_ms"] is None  # not counted during the point
    assert split["compute_infer_ms_by_batch_size"] == {"1": 2.0, "2": 6.0}


def test_a_point_the_server_answered_nothing_of_has_no_means() -> None:
    same = ServerCounters(phases={"success": (3, 9 * MS)}, batches={1: (3, 6 * MS)})
    split = server_split(same, same)
    assert split["requests"] == 0 and split["request_ms"] is None
    assert split["compute_infer_ms_by_batch_size"] == {}
