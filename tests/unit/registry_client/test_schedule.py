"""Poll waits with jitter (registry_client.PollSchedule): a fleet of followers started
together must not poll the registry in step."""

from __future__ import annotations

import random

import pytest

from registry_client import POLL_JITTER, PollSchedule


def test_steady_waits_are_spread_within_20_percent_of_the_interval() -> None:
    schedule = PollSchedule(30.0, rng=random.Random(7))
    waits = [schedule.delay() for _ in range(500)]
    assert POLL_JITTER == 0.2
    assert all(24.0 <= w <= 36.0 for w in waits)
    assert len(set(waits)) == len(waits)  # no two pods (or polls) wait alike
    # they use the whole band, not a corner of it
    assert min(waits) < 25.0 and max(waits) > 35.0


def test_the_first_wait_is_a_random_part_of_one_interval() -> None:
    firsts = [PollSchedule(30.0, rng=random.Random(seed)).first() for seed in range(200)]
    assert all(0.0 <= w <= 30.0 for w in firsts)
    assert min(firsts) < 3.0 and max(firsts) > 27.0


def test_the_same_seed_draws_the_same_waits() -> None:
    one, two = PollSchedule(10.0, rng=random.Random(3)), PollSchedule(10.0, rng=random.Random(3))
    assert [one.delay() for _ in range(5)] == [two.delay() for _ in range(5)]


def test_failures_back_off_with_jitter_up_to_the_cap() -> None:
    schedule = PollSchedule(30.0, max_backoff=60.0, rng=random.Random(1))
    for failures, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (6, 32.0), (7, 60.0), (20, 60.0)]:
        waits = [schedule.delay(failures) for _ in range(50)]
        assert all(ceiling / 2 <= w <= ceiling for w in waits), (failures, waits)
        assert len(set(waits)) == 50


def test_no_jitter_waits_the_interval() -> None:
    assert PollSchedule(5.0, jitter=0.0).delay() == 5.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"interval": 0.0}, "poll interval must be above 0 seconds, not 0.0"),
        ({"interval": 5.0, "jitter": 1.0}, "poll jitter must be in [0, 1), not 1.0"),
        ({"interval": 5.0, "jitter": -0.1}, "poll jitter must be in [0, 1), not -0.1"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError) as info:
        PollSchedule(**kwargs)
    assert str(info.value) == message
