"""Online drift over a window of collected records against a baseline profile:
the score metric, detected once, no flapping near the threshold, recovered."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from serving.monitoring import CollectConfig, OnlineDrift
from serving.monitoring._drift import profile_features
from serving.monitoring._features import split_features
from serving.monitoring._record import ERROR, OK, CollectRecord

WINDOW = 1000


def _config(**params: str) -> CollectConfig:
    return CollectConfig.from_parameters(
        "m", {f"sluice.collect.{k}": v for k, v in params.items()},
        [("x", np.dtype(np.float32), (3,))], [("y", np.dtype(np.float32), (3,))],
    )  # fmt: skip


def _record(x: np.ndarray, status: str = OK) -> CollectRecord:
    return CollectRecord("r", 0, "m", "1", 1.0, status, None, 10, {"x": x}, {"y": 2 * x})


class Drift:
    def __init__(self, tmp_path: Path, train: np.ndarray) -> None:
        path = tmp_path / "drift_baseline.json"
        path.write_text(json.dumps(profile_features(split_features("x", train))))
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.registry = CollectorRegistry()
        self.drift = OnlineDrift(
            lambda model, version: path if (model, version) == ("m", "1") else tmp_path / "none",
            window=WINDOW, registry=self.registry,
            publish=lambda kind, data, subject: self.events.append((kind, data)),
        )  # fmt: skip
        self.config = _config()

    def feed(self, x: np.ndarray) -> None:
        for i in range(0, len(x), 10):
            self.drift.observe(_record(x[i : i + 10]), self.config)
        self.drift.evaluate()

    def score(self, feature: str, method: str) -> float | None:
        labels = {"model": "m", "version": "1", "feature": feature, "method": method}
        return self.registry.get_sample_value("sluice_drift_score", labels)

    def kinds(self) -> list[tuple[str, str]]:
        return [(kind.rsplit(".", 1)[1], data["feature"]) for kind, data in self.events]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(5)


def test_a_shift_is_scored_and_detected_once_then_recovers(tmp_path: Path, rng: Any) -> None:
    d = Drift(tmp_path, rng.normal(size=(5000, 3)))
    shifted = rng.normal(size=(WINDOW, 3))
    shifted[:, 2] += 1.0
    d.feed(shifted)
    assert d.kinds() == [("detected", "x[2]")]
    assert d.score("x[2]", "psi") > 0.1 and d.score("x[0]", "psi") < 0.1
    assert d.score("x[2]", "chi2") is not None
    d.feed(shifted)  # still drifted: no second event
    assert d.kinds() == [("detected", "x[2]")]
    d.feed(rng.normal(size=(WINDOW, 3)))
    assert d.kinds() == [("detected", "x[2]"), ("recovered", "x[2]")]
    assert d.events[1][1]["window"] == WINDOW and d.events[1][1]["model"] == "m"
    assert d.score("x[2]", "psi") < 0.05


def test_no_flapping_while_the_window_hovers_near_the_threshold(tmp_path: Path, rng: Any) -> None:
    """Below the drift threshold but above RECOVER_RATIO of it: still drifted."""
    d = Drift(tmp_path, rng.normal(size=(5000, 3)))
    shifted = rng.normal(size=(WINDOW, 3))
    shifted[:, 0] += 1.0
    d.feed(shifted)
    near = rng.normal(size=(WINDOW, 3))
    near[:, 0] += 0.25  # a PSI between 0.05 and 0.1: under the threshold, above half of it
    d.feed(near)
    psi = d.score("x[0]", "psi")
    assert psi is not None and 0.05 <= psi < 0.1, psi
    assert d.kinds() == [("detected", "x[0]")]
    d.feed(rng.normal(size=(WINDOW, 3)))
    assert d.kinds() == [("detected", "x[0]"), ("recovered", "x[0]")]


def test_the_window_is_bounded_and_failed_requests_are_left_out(tmp_path: Path, rng: Any) -> None:
    d = Drift(tmp_path, rng.normal(size=(5000, 3)))
    for _ in range(5):
        d.drift.observe(_record(rng.normal(size=(WINDOW, 3))), d.config)
    d.drift.observe(_record(np.full((WINDOW, 3), 9.0), ERROR), d.config)
    d.drift.evaluate()
    assert d.events == []
    for method in ("chi2", "psi"):
        assert d.score("x[1]", method) is not None
    win = d.drift._windows[("m", "1")]
    assert win is not None and {len(v) for v in win.values.values()} == {WINDOW}


def test_a_version_without_a_baseline_is_not_tracked(tmp_path: Path, rng: Any) -> None:
    d = Drift(tmp_path, rng.normal(size=(5000, 3)))
    other = CollectRecord("r", 0, "m", "2", 1.0, OK, None, 1, {"x": np.ones((4, 3))}, {})
    d.drift.observe(other, d.config)
    d.drift.evaluate()
    assert d.drift._windows[("m", "2")] is None
    assert (
        d.registry.get_sample_value(
            "sluice_drift_score", {"model": "m", "version": "2", "feature": "x[0]", "method": "psi"}
        )
        is None
    )


def test_a_baseline_lacking_a_feature_is_named_and_the_rest_compared(
    tmp_path: Path, rng: Any, caplog: pytest.LogCaptureFixture
) -> None:
    d = Drift(tmp_path, rng.normal(size=(5000, 2)))  # profile of x[0], x[1] only
    with caplog.at_level(logging.ERROR, "sluice.drift"):
        d.feed(rng.normal(size=(WINDOW, 3)))
    assert "the baseline profile lacks feature 'x[2]'" in caplog.text
    assert d.score("x[0]", "psi") is not None and d.score("x[2]", "psi") is None


def test_only_versions_with_a_baseline_are_wanted(tmp_path: Path, rng: Any) -> None:
    """The collector asks once per version and hands records only to those it wants."""
    d = Drift(tmp_path, rng.normal(size=(500, 3)))
    assert d.drift.wants("m", "1") and not d.drift.wants("m", "2")
    assert d.drift._windows[("m", "2")] is None
