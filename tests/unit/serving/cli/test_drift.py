"""``sluice drift`` and ``sluice drift profile`` through the ``sluice`` command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from serving.cli import main
from serving.monitoring import Collector, CollectorOptions


def _collect(dest: Path, x: np.ndarray) -> None:
    collector = Collector(CollectorOptions(dest, roll_secs=3600))
    collector.attach("m", "1", {}, [("x", np.dtype("<f4"), (4,))], [])
    collector.start()
    for i in range(0, len(x), 50):
        assert collector.observe("m", "1", f"r{i}", {"x": x[i : i + 50]}, {}, 1000)
    collector.close()


@pytest.fixture
def data(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(11)
    np.savez(tmp_path / "train.npz", x=rng.normal(size=(2000, 4)).astype(np.float32))
    current = rng.normal(size=(600, 4)).astype(np.float32)
    current[:, 3] += 0.8
    _collect(tmp_path / "collected", current)
    return tmp_path / "train.npz", tmp_path / "collected"


def _run(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as exited:
        main(argv)
        raise SystemExit(0)
    return int(exited.value.code or 0)


def test_drift_flags_the_shifted_feature_and_fails_on_it(
    data: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train, collected = data
    out = tmp_path / "report.json"
    argv = ["drift", "--baseline", str(train), "--current", str(collected), "--model", "m",
            "--out", str(out)]  # fmt: skip
    assert _run(argv) == 0
    assert json.loads(out.read_text())["drifted_features"] == ["x[3]"]
    assert "drifted: x[3]" in capsys.readouterr().out
    assert _run([*argv, "--fail-on-drift"]) == 3


def test_drift_profile_writes_a_baseline_the_comparison_takes(
    data: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train, collected = data
    profile = tmp_path / "baseline.json"
    assert _run(["drift", "profile", str(train), "-o", str(profile)]) == 0
    assert "4 features profiled" in capsys.readouterr().out
    assert sorted(json.loads(profile.read_text())["features"]) == [f"x[{i}]" for i in range(4)]
    argv = ["drift", "--baseline", str(profile), "--current", str(collected), "--model", "m"]
    assert _run([*argv, "--fail-on-drift"]) == 3
    assert "drifted: x[3]" in capsys.readouterr().out


def test_input_that_cannot_be_compared_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "train.txt").write_text("")
    argv = ["drift", "--baseline", str(tmp_path / "train.txt"), "--current", str(tmp_path)]
    assert _run(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("sluice: error: ") and err.count("\n") == 1
    assert _run(["drift", "profile", str(tmp_path / "train.txt")]) == 2
    assert "usage: sluice drift profile TRAIN -o baseline.json" in capsys.readouterr().err
