from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from serving.monitoring import Collector, CollectorOptions
from serving.monitoring._drift import compare, load_baseline, profile_features
from serving.monitoring._features import DriftInputError, load_baseline_samples, load_collected
from serving.monitoring._html import render_html

SHIFTED = {2, 5}


def _data(seed: int, n: int, shift: float) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype(np.float32)
    for i in SHIFTED:
        x[:, i] += shift
    colour = rng.choice(4, n, p=[0.25, 0.25, 0.25, 0.25] if shift == 0 else [0.1, 0.2, 0.3, 0.4])
    return {"x": x, "colour": colour.astype(np.int64)}


def _features(data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {f"x[{i}]": data["x"][:, i] for i in range(8)}
    out["colour"] = data["colour"]
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exactly_the_shifted_features_drift(seed: int) -> None:
    report = compare(_features(_data(seed, 2000, 0)), _features(_data(seed + 100, 1000, 0.5)))
    assert report["drifted_features"] == ["colour", "x[2]", "x[5]"]
    assert report["features"][0]["name"] == "colour"  # drifted first
    methods = {(f["name"], f["method"]) for f in report["features"]}
    assert ("x[0]", "ks") in methods and ("x[0]", "psi") in methods
    assert ("colour", "chi2") in methods and ("colour", "js") in methods
    ks = next(f for f in report["features"] if f["method"] == "ks")
    assert ks["threshold"] == pytest.approx(0.05 / 9)  # Bonferroni over 9 features


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_drift_on_the_same_distribution(seed: int) -> None:
    report = compare(_features(_data(seed, 2000, 0)), _features(_data(seed + 100, 1000, 0)))
    assert report["drifted_features"] == [] and not report["drift"]


def test_against_a_profile(tmp_path: Path) -> None:
    profile = profile_features(_features(_data(0, 2000, 0)))
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(profile))
    report = compare(load_baseline(path), _features(_data(7, 1000, 0.5)))
    assert report["drifted_features"] == ["colour", "x[2]", "x[5]"]
    quiet = compare(load_baseline(path), _features(_data(8, 1000, 0)))
    assert quiet["drifted_features"] == []


def test_small_samples_are_reported_not_judged() -> None:
    report = compare(_features(_data(0, 2000, 0)), _features(_data(1, 10, 3.0)))
    assert report["drifted_features"] == []
    assert set(report["too_small"]) == {"colour", *(f"x[{i}]" for i in range(8))}


def test_a_baseline_missing_features_is_named() -> None:
    base = _features(_data(0, 100, 0))
    del base["x[3]"]
    with pytest.raises(DriftInputError, match=r"baseline lacks feature\(s\) .*: x\[3\]"):
        compare(base, _features(_data(1, 100, 0)))


def test_baseline_files_npz_csv_parquet(tmp_path: Path) -> None:
    data = _data(0, 50, 0)
    np.savez(tmp_path / "b.npz", **data)
    assert sorted(load_baseline_samples(tmp_path / "b.npz")) == sorted(_features(data))
    (tmp_path / "b.csv").write_text("a,b\n" + "\n".join(f"{i},{i % 3}" for i in range(40)) + "\n")
    csv = load_baseline_samples(tmp_path / "b.csv")
    assert csv["a"].tolist() == list(range(40))
    pq.write_table(pa.table({"x": list(data["x"]), "colour": data["colour"]}), tmp_path / "b.pq")
    parquet = load_baseline_samples(tmp_path / "b.pq")
    np.testing.assert_array_equal(parquet["x[4]"], data["x"][:, 4])
    with pytest.raises(DriftInputError, match=r"expected \.npz, \.csv, \.parquet"):
        (tmp_path / "b.txt").write_text("")
        load_baseline_samples(tmp_path / "b.txt")


def test_collected_directory_round_trip_and_html(tmp_path: Path) -> None:
    current = _data(5, 300, 0.5)
    c = Collector(CollectorOptions(tmp_path, roll_secs=3600))
    specs = [("x", np.dtype("<f4"), (8,)), ("colour", np.dtype("<i8"), (1,))]
    c.attach("m", "1", {}, specs, [("y", np.dtype("<f4"), (1,))])
    c.start()
    for i in range(0, 300, 30):
        x, colour = current["x"][i : i + 30], current["colour"][i : i + 30, None]
        assert c.observe("m", "1", f"r{i}", {"x": x, "colour": colour}, {}, 1000)
    assert c.observe("m", "1", "failed", {}, {}, 1000, error="boom")
    c.close()
    collected = load_collected(tmp_path, model="m", version="1")
    np.testing.assert_array_equal(collected["x[2]"], current["x"][:, 2])
    assert sorted(collected) == sorted(_features(current))
    future = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() + 3600))
    assert load_collected(tmp_path, since=future)["x[0]"].size == 0
    baseline = _features(_data(0, 2000, 0))
    report = compare(baseline, collected)
    assert report["drifted_features"] == ["colour", "x[2]", "x[5]"]
    page = render_html(report, baseline, collected)
    assert page.index("<h2>colour") < page.index("<h2>x[2]") < page.index("<h2>x[0]")
    assert page.count("<svg") == 2 * 9


def test_a_foreign_parquet_directory_is_named(tmp_path: Path) -> None:
    part = tmp_path / "model=m" / "version=1" / "date=2024-01-01"
    part.mkdir(parents=True)
    pq.write_table(pa.table({"a": [1, 2]}), part / "x.parquet")
    with pytest.raises(DriftInputError, match="is not a Sluice collection file"):
        load_collected(tmp_path)
    with pytest.raises(DriftInputError, match="no collected Parquet"):
        load_collected(tmp_path / "model=m", model="other")
