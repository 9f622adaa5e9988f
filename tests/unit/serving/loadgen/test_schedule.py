from __future__ import annotations

import numpy as np
import pytest

from serving.loadgen import LoadSpec, constant_schedule, poisson_schedule


def test_constant_schedule_is_evenly_spaced() -> None:
    offsets = constant_schedule(100.0, 2.0)
    assert len(offsets) == 200
    assert offsets[0] == 0.0
    np.testing.assert_allclose(np.diff(offsets), 0.01)


def test_poisson_schedule_is_reproducible_from_its_seed() -> None:
    a = poisson_schedule(1000.0, 5.0, seed=3)
    b = poisson_schedule(1000.0, 5.0, seed=3)
    c = poisson_schedule(1000.0, 5.0, seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a[:100], c[:100])


def test_poisson_schedule_has_the_rate_and_exponential_gaps() -> None:
    offsets = poisson_schedule(2000.0, 10.0, seed=1)
    assert np.all(np.diff(offsets) >= 0)
    assert offsets[-1] < 10.0
    assert len(offsets) == pytest.approx(20_000, rel=0.03)
    gaps = np.diff(offsets)
    assert gaps.mean() == pytest.approx(1 / 2000, rel=0.03)
    assert gaps.std() == pytest.approx(gaps.mean(), rel=0.05)  # exponential: std == mean


def test_poisson_schedule_extends_past_an_unlucky_first_draw() -> None:
    offsets = poisson_schedule(3.0, 100.0, seed=0)  # few events: the chunking loop runs
    assert offsets[-1] < 100.0
    assert offsets[-1] > 90.0


def test_load_spec_schedule_covers_warmup_and_duration() -> None:
    spec = LoadSpec(connections=4, duration=2.0, warmup=1.0, mode="constant", rate=50.0)
    assert len(spec.schedule()) == 150
    with pytest.raises(ValueError):
        LoadSpec(connections=1, duration=1.0).schedule()
    with pytest.raises(ValueError):
        constant_schedule(0.0, 1.0)
