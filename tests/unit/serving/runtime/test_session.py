import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnxruntime
import pytest
from google.protobuf import text_format

from serving import examples
from serving.config import model_config_pb2
from serving.errors import InternalError, InvalidArgument, NotFound, Unavailable
from serving.runtime import session as session_module
from serving.runtime.options import build_session_options, derive_settings
from serving.runtime.session import create_runtime

OPENVINO = "OpenVINOExecutionProvider"
CUDA = "CUDAExecutionProvider"


def config(text: str = "") -> model_config_pb2.ModelConfig:
    return text_format.Parse(text, model_config_pb2.ModelConfig(name="m"))


@pytest.fixture
def repo(tmp_path):
    examples.write_repository(
        tmp_path / "repo", ["simple", "mlp", "identity_bytes", "identity_bf16"]
    )
    return tmp_path / "repo"


def model_file(repo, name):
    return repo / name / "1" / "model.onnx"


# --- session options -------------------------------------------------------------------------


def test_threads_split_the_cores_between_instances():
    settings = derive_settings(config(), instances=3, cores=8)
    options = build_session_options(settings)
    assert options.intra_op_num_threads == 2
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.get_session_config_entry("session.inter_op.allow_spinning") == "0"


def test_one_instance_gets_every_core_and_spins():
    options = build_session_options(derive_settings(config(), instances=1, cores=8))
    assert options.intra_op_num_threads == 8
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "1"


def test_more_instances_than_cores_still_get_one_thread():
    assert derive_settings(config(), instances=4, cores=2).intra_op_threads == 1


def test_triton_thread_parameters_win():
    cfg = config(
        """
        parameters { key: "intra_op_thread_count" value: { string_value: "3" } }
        parameters { key: "inter_op_thread_count" value: { string_value: "2" } }
        parameters { key: "execution_mode" value: { string_value: "1" } }
        """
    )
    options = build_session_options(derive_settings(cfg, instances=2, cores=16))
    assert options.intra_op_num_threads == 3
    assert options.inter_op_num_threads == 2
    assert options.execution_mode == onnxruntime.ExecutionMode.ORT_PARALLEL


def test_bad_thread_parameter_is_invalid_argument():
    cfg = config('parameters { key: "intra_op_thread_count" value: { string_value: "many" } }')
    with pytest.raises(InvalidArgument, match="intra_op_thread_count"):
        derive_settings(cfg, instances=1, cores=2)


@pytest.mark.parametrize(
    ("text", "level"),
    [
        ("", "ORT_ENABLE_ALL"),
        ("optimization { graph { level: 0 } }", "ORT_ENABLE_ALL"),
        ("optimization { graph { level: -1 } }", "ORT_ENABLE_BASIC"),
        ("optimization { graph { level: 1 } }", "ORT_ENABLE_EXTENDED"),
        ("optimization { graph { level: 2 } }", "ORT_DISABLE_ALL"),
        (
            'parameters { key: "disable_graph_optimization" value: { string_value: "true" } }',
            "ORT_DISABLE_ALL",
        ),
    ],
)
def test_graph_optimization_level(text, level):
    options = build_session_options(derive_settings(config(text), instances=1, cores=1))
    assert options.graph_optimization_level == getattr(onnxruntime.GraphOptimizationLevel, level)


# --- running ---------------------------------------------------------------------------------


def test_simple_adds_and_subtracts(repo):
    runtime = create_runtime(model_file(repo, "simple"), config())
    a = np.arange(32, dtype=np.int32).reshape(2, 16)
    b = np.ones((2, 16), dtype=np.int32)
    out = runtime.run({"INPUT0": a, "INPUT1": b})
    np.testing.assert_array_equal(out["OUTPUT0"], a + b)
    np.testing.assert_array_equal(out["OUTPUT1"], a - b)
    assert runtime.providers == ["CPUExecutionProvider"]
    assert runtime.input_names == ["INPUT0", "INPUT1"]
    assert runtime.output_names == ["OUTPUT0", "OUTPUT1"]
    assert list(runtime.run({"INPUT0": a, "INPUT1": b}, ["OUTPUT1"])) == ["OUTPUT1"]


def test_bytes_round_trip(repo):
    runtime = create_runtime(model_file(repo, "identity_bytes"), config())
    data = np.array([[b"hello", "é".encode(), b""]], dtype=object)
    out = runtime.run({"INPUT0": data})["OUTPUT0"]
    assert out.dtype == object
    assert out.tolist() == data.tolist()


def test_bytes_that_are_not_utf8_are_rejected(repo):
    runtime = create_runtime(model_file(repo, "identity_bytes"), config())
    with pytest.raises(InvalidArgument, match="UTF-8"):
        runtime.run({"INPUT0": np.array([[b"\xff"]], dtype=object)})


def test_bf16_round_trip_as_uint16_words(repo):
    runtime = create_runtime(model_file(repo, "identity_bf16"), config())
    words = np.array([[0x3F80, 0x4000, 0xC040]], dtype=np.uint16)  # 1.0, 2.0, -3.0
    out = runtime.run({"INPUT0": words})["OUTPUT0"]
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, words)


@pytest.mark.parametrize(
    "feeds",
    [
        {"INPUT0": np.zeros((1, 15), np.int32), "INPUT1": np.zeros((1, 16), np.int32)},
        {"INPUT0": np.zeros((1, 16), np.float32), "INPUT1": np.zeros((1, 16), np.int32)},
        {"INPUT0": np.zeros(16, np.int32), "INPUT1": np.zeros(16, np.int32)},
        {"INPUT0": np.zeros((1, 16), np.int32)},
        {"INPUT0": np.zeros((1, 16), np.int32), "INPUTX": np.zeros((1, 16), np.int32)},
    ],
    ids=["broadcast", "dtype", "rank", "missing", "unknown"],
)
def test_bad_inputs_are_invalid_argument(repo, feeds):
    runtime = create_runtime(model_file(repo, "simple"), config())
    with pytest.raises(InvalidArgument):
        runtime.run(feeds)


def test_unknown_output_is_invalid_argument(repo):
    runtime = create_runtime(model_file(repo, "simple"), config())
    a = np.zeros((1, 16), np.int32)
    with pytest.raises(InvalidArgument, match="OUTPUT9"):
        runtime.run({"INPUT0": a, "INPUT1": a}, ["OUTPUT9"])


def test_other_runtime_failures_are_internal():
    error = session_module._run_error(
        RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : oom")
    )
    assert isinstance(error, InternalError)
    assert error.message == "6 : RUNTIME_EXCEPTION : oom"


def test_close_makes_runs_unavailable(repo):
    runtime = create_runtime(model_file(repo, "simple"), config())
    runtime.close()
    a = np.zeros((1, 16), np.int32)
    with pytest.raises(Unavailable):
        runtime.run({"INPUT0": a, "INPUT1": a})
    with pytest.raises(Unavailable):  # the sentinel is passed on, not consumed
        runtime.run({"INPUT0": a, "INPUT1": a})


class _GatedSession:
    """Wraps a real session; each run waits at a gate and counts how many run at once."""

    def __init__(self, inner, probe):
        self._inner = inner
        self._probe = probe

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def run(self, names, feeds):
        with self._probe["lock"]:
            self._probe["active"] += 1
            self._probe["max"] = max(self._probe["max"], self._probe["active"])
        self._probe["entered"].release()
        self._probe["gate"].wait()
        try:
            return self._inner.run(names, feeds)
        finally:
            with self._probe["lock"]:
                self._probe["active"] -= 1


def test_instances_cap_concurrent_runs(repo):
    runtime = create_runtime(model_file(repo, "mlp"), config("instance_group [{count: 2}]"))
    assert runtime.instances == 2
    probe = {
        "lock": threading.Lock(),
        "active": 0,
        "max": 0,
        "entered": threading.Semaphore(0),
        "gate": threading.Event(),
    }
    sessions = [runtime._free.get() for _ in range(2)]
    for s in sessions:
        runtime._free.put(_GatedSession(s, probe))

    x = np.ones((1, 64), np.float32)
    with ThreadPoolExecutor(max_workers=5) as pool:
        futures = [pool.submit(runtime.run, {"INPUT0": x}) for _ in range(5)]
        assert probe["entered"].acquire(timeout=30)
        assert probe["entered"].acquire(timeout=30)
        # Both instances are busy: a third run must not get in while the gate is shut.
        assert not probe["entered"].acquire(timeout=0.3)
        probe["gate"].set()
        results = [f.result(timeout=30) for f in futures]
    assert probe["max"] == 2
    expected = examples.mlp_reference(x)
    for result in results:
        np.testing.assert_allclose(result["OUTPUT0"], expected, rtol=1e-5, atol=1e-5)


def test_gpu_request_falls_back_to_cpu_with_one_warning(repo, caplog):
    if CUDA in onnxruntime.get_available_providers():
        pytest.skip("this build has CUDA")
    cfg = config("instance_group [{kind: KIND_GPU, count: 2, gpus: [0]}]")
    with caplog.at_level(logging.WARNING):
        runtime = create_runtime(model_file(repo, "mlp"), cfg)
    assert runtime.providers == ["CPUExecutionProvider"]
    assert runtime.instances == 2
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert CUDA in warnings[0].getMessage()


# --- loading ---------------------------------------------------------------------------------


def test_missing_model_file_is_not_found(tmp_path):
    with pytest.raises(NotFound, match=r"nothing\.onnx"):
        create_runtime(tmp_path / "nothing.onnx", config())


def test_bad_model_file_names_the_file(tmp_path):
    bad = tmp_path / "broken" / "1" / "model.onnx"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"\x08\x07 this is not a model")
    with pytest.raises(InvalidArgument, match=str(bad)):
        create_runtime(bad, config(), cache_dir=tmp_path / "cache")
    assert list((tmp_path / "cache").glob("*")) == []  # no temporary file left behind


@pytest.fixture
def load_spy(monkeypatch):
    loaded = []
    real = session_module._load

    def spy(path, options, providers, model_path):
        loaded.append(path)
        return real(path, options, providers, model_path)

    monkeypatch.setattr(session_module, "_load", spy)
    return loaded


def test_optimized_model_is_cached_once_and_reused(repo, tmp_path, load_spy):
    cache = tmp_path / "cache"
    model = model_file(repo, "mlp")
    first = create_runtime(model, config(), cache_dir=cache)
    (cached,) = cache.iterdir()
    assert cached.suffix == ".onnx" and not cached.name.startswith(".")
    stamp = cached.stat().st_mtime_ns, cached.stat().st_ino
    assert load_spy == [model]

    second = create_runtime(model, config(), cache_dir=cache)
    assert load_spy == [model, cached]
    assert list(cache.iterdir()) == [cached]
    assert (cached.stat().st_mtime_ns, cached.stat().st_ino) == stamp

    x = np.full((3, 64), 0.5, np.float32)
    np.testing.assert_allclose(
        second.run({"INPUT0": x})["OUTPUT0"], first.run({"INPUT0": x})["OUTPUT0"], rtol=1e-6
    )


def test_cache_key_follows_the_model_content(repo, tmp_path):
    cache = tmp_path / "cache"
    create_runtime(model_file(repo, "mlp"), config(), cache_dir=cache)
    create_runtime(model_file(repo, "simple"), config(), cache_dir=cache)
    create_runtime(
        model_file(repo, "mlp"), config("optimization { graph { level: 1 } }"), cache_dir=cache
    )
    assert len(list(cache.iterdir())) == 3


def test_unreadable_cache_entry_is_rebuilt(repo, tmp_path, load_spy):
    cache = tmp_path / "cache"
    model = model_file(repo, "mlp")
    create_runtime(model, config(), cache_dir=cache)
    (cached,) = cache.iterdir()
    cached.write_bytes(b"\x08\x07 torn")
    runtime = create_runtime(model, config(), cache_dir=cache)
    assert load_spy == [model, cached, model]
    assert runtime.run({"INPUT0": np.zeros((1, 64), np.float32)})["OUTPUT0"].shape == (1, 10)
    assert [p.name for p in cache.iterdir()] == [cached.name]
    assert cached.read_bytes() != b"\x08\x07 torn"


def test_failed_build_leaves_no_partial_file(repo, tmp_path, monkeypatch):
    cache = tmp_path / "cache"

    def half_write(path, sess_options=None, providers=None):
        with open(sess_options.optimized_model_filepath, "wb") as f:
            f.write(b"\x08\x07 half")
        raise RuntimeError("[ONNXRuntimeError] : 1 : FAIL : killed mid-write")

    monkeypatch.setattr(onnxruntime, "InferenceSession", half_write)
    with pytest.raises(InvalidArgument, match="killed mid-write"):
        create_runtime(model_file(repo, "mlp"), config(), cache_dir=cache)
    assert list(cache.iterdir()) == []


def test_cache_parameter_false_turns_caching_off(repo, tmp_path):
    cfg = config('parameters { key: "optimized_model_cache" value: { string_value: "false" } }')
    create_runtime(model_file(repo, "mlp"), cfg, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_cache_parameter_true_uses_the_default_dir(repo, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    cfg = config('parameters { key: "optimized_model_cache" value: { string_value: "true" } }')
    create_runtime(model_file(repo, "mlp"), cfg)
    assert len(list((tmp_path / "xdg" / "sluice" / "optimized-models").iterdir())) == 1


# --- accelerators ----------------------------------------------------------------------------


@pytest.mark.openvino
@pytest.mark.skipif(
    OPENVINO not in onnxruntime.get_available_providers(), reason="needs onnxruntime-openvino"
)
def test_openvino_runs_the_mlp(repo, tmp_path):
    cfg = config(
        """
        instance_group [{kind: KIND_CPU, count: 2}]
        optimization { execution_accelerators { cpu_execution_accelerator [
          {name: "openvino", parameters {key: "device_type", value: "CPU"}
                             parameters {key: "precision", value: "FP32"}
                             parameters {key: "num_of_threads", value: "1"}}
        ]}}
        """
    )
    runtime = create_runtime(model_file(repo, "mlp"), cfg, cache_dir=tmp_path / "cache")
    assert runtime.providers[0] == OPENVINO
    assert runtime.providers[-1] == "CPUExecutionProvider"
    x = np.random.default_rng(1).standard_normal((4, 64)).astype(np.float32)
    out = runtime.run({"INPUT0": x})["OUTPUT0"]
    np.testing.assert_allclose(out, examples.mlp_reference(x), rtol=1e-3, atol=1e-3)
    assert not (tmp_path / "cache").exists()  # compiled graphs are not serialized


@pytest.mark.gpu
@pytest.mark.skipif(CUDA not in onnxruntime.get_available_providers(), reason="needs CUDA")
def test_cuda_runs_the_mlp(repo):
    cfg = config("instance_group [{kind: KIND_GPU, gpus: [0]}]")
    runtime = create_runtime(model_file(repo, "mlp"), cfg)
    assert runtime.providers[0] == CUDA
    x = np.ones((2, 64), np.float32)
    out = runtime.run({"INPUT0": x})["OUTPUT0"]
    np.testing.assert_allclose(out, examples.mlp_reference(x), rtol=1e-3, atol=1e-3)


@pytest.mark.openvino
@pytest.mark.skipif(
    OPENVINO not in onnxruntime.get_available_providers(), reason="needs onnxruntime-openvino"
)
def test_openvino_that_cannot_start_is_reported(repo, caplog):
    # ONNX Runtime quietly drops an EP whose device is absent; Sluice logs it.
    cfg = config(
        """
        optimization { execution_accelerators { cpu_execution_accelerator [
          {name: "openvino", parameters {key: "device_type", value: "NPU"}}
        ]}}
        """
    )
    with caplog.at_level(logging.WARNING):
        runtime = create_runtime(model_file(repo, "mlp"), cfg)
    assert runtime.providers == ["CPUExecutionProvider"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert OPENVINO in warnings[0]
