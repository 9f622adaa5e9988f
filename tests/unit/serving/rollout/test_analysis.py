"""The rule for one interval: advance, hold for samples, or roll back saying why."""

from __future__ import annotations

import pytest

from serving.rollout import ADVANCE, HOLD, ROLLBACK, RolloutSpec, Window, decide, parse_duration

SPEC = RolloutSpec(to=2, min_samples=20, max_error_rate=0.05, max_p99_ratio=2.0)
BASE = Window(requests=100, errors=0, p99_ms=1.0)


def test_too_few_samples_hold_instead_of_deciding() -> None:
    decision = decide(SPEC, Window(requests=19, errors=19), BASE, shadow=False, baseline_p99=None)
    assert decision.action == HOLD and "19 of 20 candidate requests" in decision.reason
    few_base = Window(requests=3, p99_ms=1.0)
    decision = decide(
        SPEC, Window(requests=50, p99_ms=1.0), few_base, shadow=False, baseline_p99=None
    )
    assert decision.action == HOLD and "3 of 20 baseline requests" in decision.reason
    # at 100% the baseline gets nothing: its p99 from an earlier interval stands in
    decision = decide(
        SPEC, Window(requests=50, p99_ms=1.5), few_base, shadow=False, baseline_p99=1.0
    )
    assert decision.action == ADVANCE


@pytest.mark.parametrize(
    ("candidate", "reason"),
    [
        (Window(requests=100, errors=6, p99_ms=1.0), "error rate 6.00% (6 of 100) is above 5.00%"),
        (
            Window(requests=100, errors=0, p99_ms=2.5),
            "p99 2.500 ms is 2.50x the baseline's 1.000 ms",
        ),
    ],
)
def test_errors_and_slowness_roll_back(candidate: Window, reason: str) -> None:
    decision = decide(SPEC, candidate, BASE, shadow=False, baseline_p99=None)
    assert (decision.action, decision.reason.split(" (at most")[0]) == (ROLLBACK, reason)
    fine = Window(requests=100, errors=5, p99_ms=2.0)  # at the limits: still fine
    assert decide(SPEC, fine, BASE, shadow=False, baseline_p99=None).action == ADVANCE


def test_output_agreement_on_shadow_traffic() -> None:
    spec = RolloutSpec(to=2, min_samples=10, min_agreement=0.9, shadow_first=True)
    agree = Window(requests=10, p99_ms=1.0, compared=10, rows=10, agreeing_rows=9)
    assert decide(spec, agree, BASE, shadow=True, baseline_p99=None).action == ADVANCE
    disagree = Window(requests=10, p99_ms=1.0, compared=10, rows=10, agreeing_rows=8)
    decision = decide(spec, disagree, BASE, shadow=True, baseline_p99=None)
    assert decision.action == ROLLBACK and "agreement 80.00% over 10 rows" in decision.reason
    spec = RolloutSpec(to=2, min_samples=10, max_output_diff=0.01, shadow_first=True)
    far = Window(requests=10, p99_ms=1.0, compared=10, max_abs_diff=0.5)
    decision = decide(spec, far, BASE, shadow=True, baseline_p99=None)
    assert decision.action == ROLLBACK and "differ by up to 0.5" in decision.reason


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"steps": (50, 25, 100)}, "increasing"),
        ({"steps": (5, 50)}, "last step must be 100"),
        ({"min_agreement": 0.9}, "needs shadow_first"),
        ({"min_agreement": 0.9, "max_output_diff": 1.0, "shadow_first": True}, "not both"),
        ({"promote_alias": "prod"}, "go together"),
    ],
)
def test_bad_specs_are_refused(fields: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RolloutSpec(to=2, **fields)


def test_specs_from_json_and_durations() -> None:
    spec = RolloutSpec.from_json({"to": "3", "steps": "10,100", "interval": "500ms"})
    assert (spec.to, spec.steps, spec.interval_s) == (3, (10, 100), 0.5)
    assert RolloutSpec.from_json(spec.to_json()) == spec
    assert parse_duration("2m") == 120.0
    with pytest.raises(ValueError, match="unknown field 'too'"):
        RolloutSpec.from_json({"to": 1, "too": 2})
