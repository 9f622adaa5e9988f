import numpy as np
import onnx
import pytest
from google.protobuf import text_format

from serving import examples
from serving.config import model_config_pb2
from serving.datatypes import DATATYPES
from serving.runtime import create_runtime
from serving.warmup import warmup_samples


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    path = tmp_path_factory.mktemp("repo")
    examples.write_repository(path)
    return path


def runtime_for(repo, name, cfg=None):
    return create_runtime(repo / name / "1" / "model.onnx", cfg or model_config_pb2.ModelConfig())


def load_config(repo, name):
    text = (repo / name / "config.pbtxt").read_text()
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def test_repository_layout_and_size(repo):
    dirs = sorted(p.name for p in repo.iterdir())
    assert dirs == sorted(examples.EXAMPLES)
    assert {f"identity_{d.name.lower()}" for d in DATATYPES} <= set(dirs)
    total = sum(p.stat().st_size for p in repo.rglob("*") if p.is_file())
    assert total < 1_000_000
    for name in dirs:
        onnx.checker.check_model(onnx.load(repo / name / "1" / "model.onnx"))


def test_configs_parse_and_name_their_model(repo):
    for name in ("simple", "mlp"):
        cfg = load_config(repo, name)
        assert cfg.name == name
        assert cfg.platform == "onnxruntime_onnx"
    assert load_config(repo, "simple").version_policy.latest.num_versions == 1


def test_simple(repo):
    runtime = runtime_for(repo, "simple", load_config(repo, "simple"))
    a = np.arange(48, dtype=np.int32).reshape(3, 16)
    b = np.full((3, 16), 7, dtype=np.int32)
    out = runtime.run({"INPUT0": a, "INPUT1": b})
    np.testing.assert_array_equal(out["OUTPUT0"], a + b)
    np.testing.assert_array_equal(out["OUTPUT1"], a - b)


def test_mlp_matches_numpy_and_its_warmup_runs(repo):
    cfg = load_config(repo, "mlp")
    runtime = runtime_for(repo, "mlp", cfg)
    assert runtime.instances == 2
    x = np.random.default_rng(7).standard_normal((5, 64)).astype(np.float32)
    out = runtime.run({"INPUT0": x})["OUTPUT0"]
    assert out.shape == (5, 10)
    np.testing.assert_allclose(out, examples.mlp_reference(x), rtol=1e-4, atol=1e-4)
    ((name, count, inputs),) = warmup_samples(cfg, repo / "mlp")
    assert (name, count, inputs["INPUT0"].shape) == ("zeros", 1, (4, 64))
    assert runtime.run(inputs)["OUTPUT0"].shape == (4, 10)


def test_mlp_is_deterministic():
    assert examples.build_mlp() == examples.build_mlp()


def _sample(datatype):
    if datatype.is_bytes:
        return np.array([[b"a", b"", "ü".encode()], [b"xyz", b"0", b" "]], dtype=object)
    if datatype.name == "BOOL":
        return np.array([[True, False, True], [False, False, True]])
    if datatype.name == "BF16":
        return np.array([[0x3F80, 0x4000, 0xC040], [0, 0x8000, 0x7F80]], dtype=np.uint16)
    info = np.finfo if datatype.numpy.kind == "f" else np.iinfo
    limits = info(datatype.numpy)
    return np.array([[limits.min, 0, limits.max], [1, 2, 3]], dtype=datatype.numpy)


@pytest.mark.parametrize("datatype", DATATYPES, ids=lambda d: d.name)
def test_identity_round_trips_every_datatype(repo, datatype):
    runtime = runtime_for(repo, f"identity_{datatype.name.lower()}")
    data = _sample(datatype)
    out = runtime.run({"INPUT0": data})["OUTPUT0"]
    assert out.dtype == data.dtype
    assert out.tolist() == data.tolist()


def test_command_line_writes_chosen_models(tmp_path, capsys):
    assert examples.main([str(tmp_path), "simple", "identity_fp32"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["identity_fp32", "simple"]
    assert (tmp_path / "simple" / "config.pbtxt").is_file()
    assert not (tmp_path / "identity_fp32" / "config.pbtxt").exists()
    assert "simple" in capsys.readouterr().out


def test_command_line_rejects_unknown_models(tmp_path):
    with pytest.raises(SystemExit):
        examples.main([str(tmp_path), "resnet50"])
