"""``sluice convert``, ``sluice optimize`` and ``sluice profile`` as a user runs them: the
real command in a subprocess, its exit status, its lines and the files it leaves."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.cluster import Birch
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from serving.examples import write_repository
from tests.unit.serving.optimize.test_optimizer import OUTLIER, matmul_model

pytestmark = pytest.mark.integration

RNG = np.random.default_rng(5)
X = RNG.standard_normal((150, 4))
Y = (X[:, 0] > X[:, 1]).astype(int)


def sluice(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "serving", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def listing(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@pytest.fixture
def pickled(tmp_path: Path) -> Path:
    model = make_pipeline(StandardScaler(), GradientBoostingClassifier(n_estimators=10))
    joblib.dump(model.fit(X, Y), tmp_path / "gbc.joblib")
    np.save(tmp_path / "x.npy", X)
    (tmp_path / "repo").mkdir()
    return tmp_path


def test_convert_writes_successive_versions_and_refuses_an_untrusted_pickle(
    pickled: Path,
) -> None:
    args = ["convert", "sklearn", pickled / "gbc.joblib", "--sample", pickled / "x.npy",
            "--out", pickled / "repo" / "gbc"]  # fmt: skip
    refused = sluice(*args)
    assert refused.returncode == 1
    assert "loading a pickle runs the code inside it" in refused.stderr
    assert listing(pickled / "repo") == []
    first = sluice(*args, "--trust-pickle", "--json")
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert report["version"] == 1 and report["wrote_config"] is True
    assert {o["name"] for o in report["outputs"]} == {"label", "probabilities"}
    second = sluice(*args, "--trust-pickle")
    assert second.returncode == 0, second.stderr
    assert "(version 2 of gbc)" in second.stdout
    assert listing(pickled / "repo") == [
        "gbc", "gbc/1", "gbc/1/model.onnx", "gbc/2", "gbc/2/model.onnx", "gbc/config.pbtxt",
    ]  # fmt: skip
    config = sluice("config", pickled / "repo" / "gbc")
    assert config.returncode == 0 and 'name: "probabilities"' in config.stdout


def test_convert_names_an_estimator_it_cannot_convert(pickled: Path) -> None:
    joblib.dump(make_pipeline(StandardScaler(), Birch()).fit(X), pickled / "odd.joblib")
    done = sluice("convert", "sklearn", pickled / "odd.joblib", "--trust-pickle",
                  "--sample", pickled / "x.npy", "--out", pickled / "repo" / "odd")  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.startswith("sluice: error: Birch has no ONNX converter (skl2onnx)")
    assert "Supported include" in done.stderr and "KMeans" in done.stderr
    assert listing(pickled / "repo") == []


def test_convert_torch_without_torch_says_what_to_install(pickled: Path) -> None:
    if importlib.util.find_spec("torch") is not None:
        pytest.skip("torch is installed here; this case is about its absence")
    done = sluice("convert", "torch", "model.py:build", "--sample", pickled / "x.npy",
                  "--out", pickled / "repo" / "t")  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "sluice: error: sluice convert torch needs PyTorch, which is not installed: "
        "pip install torch"
    )


def test_convert_torch_exports_a_module(pickled: Path) -> None:
    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed (an optional extra, never required)")
    (pickled / "model.py").write_text(
        "import torch\n"
        "def build():\n"
        "    torch.manual_seed(0)\n"
        "    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))\n"
    )
    done = sluice("convert", "torch", f"{pickled / 'model.py'}:build", "--sample",
                  pickled / "x.npy", "--out", pickled / "repo" / "t", "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["version"] == 1


def test_optimize_refuses_a_quantization_that_breaks_accuracy(tmp_path: Path) -> None:
    (tmp_path / "m" / "1").mkdir(parents=True)
    (tmp_path / "m" / "1" / "model.onnx").write_bytes(matmul_model(OUTLIER))
    rows = RNG.standard_normal((32, 4)).astype(np.float32)
    rows[:, 3] = 0
    np.save(tmp_path / "x.npy", rows)
    before = listing(tmp_path / "m")
    done = sluice("optimize", tmp_path / "m", "--quantize", "dynamic", "--sample",
                  tmp_path / "x.npy", "--measure-secs", "0.05")  # fmt: skip
    assert done.returncode == 1
    assert "sluice: error: accuracy does not hold after int8:dynamic" in done.stderr
    assert listing(tmp_path / "m") == before
    graph = sluice("optimize", tmp_path / "m", "--level", "basic", "--sample",
                   tmp_path / "x.npy", "--measure-secs", "0.05", "--json")  # fmt: skip
    assert graph.returncode == 0, graph.stderr
    report = json.loads(graph.stdout)
    assert report["written_version"] == 2 and report["accuracy_holds"] is True


def test_profile_prints_the_recommendation_and_writes_its_files(tmp_path: Path) -> None:
    write_repository(tmp_path / "repo", ["mlp"])
    done = sluice("profile", tmp_path / "repo" / "mlp", "--max-batch-sizes", "8",
                  "--queue-delays-us", "0", "--concurrency", "2", "--duration", "0.4s",
                  "--warmup", "0.1s", "--slo-p99-ms", "1000", "--out", tmp_path / "out")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "rule: among load points with 0 errors" in done.stdout
    assert "recommended: {'instances': 1, 'max_batch_size': 8" in done.stdout
    assert "re-run:" in done.stdout
    written = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"profile.json", "profile.csv", "config.pbtxt"} <= written
    report = json.loads((tmp_path / "out" / "profile.json").read_text())
    assert report["recommendation"]["point"] == 0
