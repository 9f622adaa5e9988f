"""Traffic splits as parsed from config parameters, the admin API and the CLI."""

from __future__ import annotations

import pytest

from serving.traffic import StickyKey, TrafficSplit, parse_shares


def test_config_parameters_parse_to_a_split() -> None:
    split = TrafficSplit.from_parameters(
        {
            "sluice.traffic": "1:80, 2:20",
            "sluice.shadow": "3:10",
            "sluice.sticky": "header:X-User-Id",
        }
    )
    assert split is not None
    assert dict(split.weights) == {1: 80, 2: 20}
    assert dict(split.shadow) == {3: 10}
    assert split.sticky == StickyKey("header", "x-user-id")  # headers compare lower-cased
    assert TrafficSplit.from_parameters({"other": "x"}) is None


def test_json_round_trip_and_cli_form() -> None:
    split = TrafficSplit({2: 20, 1: 80}, {3: 10}, StickyKey("parameter", "user"))
    assert split.to_json() == {
        "traffic": {"1": 80, "2": 20},
        "shadow": {"3": 10},
        "sticky": "parameter:user",
    }
    assert TrafficSplit.from_json(split.to_json()) == split
    assert parse_shares(["1=80", "2=20"], "weights") == {1: 80, 2: 20}


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"sluice.traffic": "1:80,x:20"}, "'x:20' is not VERSION:WEIGHT"),
        ({"sluice.traffic": "1:80,1:20"}, "version 1 is named twice"),
        ({"sluice.traffic": "1:0,2:0"}, "must not all be 0"),
        ({"sluice.shadow": "3:150"}, "percentages"),
        ({"sluice.traffic": "1:50,3:50", "sluice.shadow": "3:10"}, "both an arm and a shadow"),
        ({"sluice.sticky": "cookie:id"}, "expected header:NAME or parameter:NAME"),
        ({"sluice.sticky": "user"}, "expected header:NAME or parameter:NAME"),
    ],
)
def test_bad_splits_are_refused_saying_why(parameters: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrafficSplit.from_parameters(parameters)


def test_bad_admin_bodies_are_refused_saying_why() -> None:
    with pytest.raises(ValueError, match="unknown field 'weights'"):
        TrafficSplit.from_json({"weights": {"1": 1}})
    with pytest.raises(ValueError, match="is not version: whole number"):
        TrafficSplit.from_json({"traffic": {"1": 0.5}})
