from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.models import (
    MODELS,
    SLUICE_VARIANTS,
    build_seq,
    sample_inputs,
    write_onnx_models,
    write_sluice_repository,
)


def test_seq_model_mean_pools_any_length() -> None:
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(build_seq(), providers=["CPUExecutionProvider"])
    outputs = []
    for x in sample_inputs(MODELS["seq"]):
        (y,) = session.run(["OUTPUT0"], {"INPUT0": x})
        assert y.shape == (1, 10)
        outputs.append(y)
    # repeating a sequence does not change its mean
    x = sample_inputs(MODELS["seq"])[0]
    (a,) = session.run(["OUTPUT0"], {"INPUT0": x})
    (b,) = session.run(["OUTPUT0"], {"INPUT0": np.concatenate([x, x], axis=1)})
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_repository_configs_load_in_sluice(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from serving.config import load_model_config

    onnx = write_onnx_models(tmp_path / "models", ["tiny", "seq"])
    names = [n for n, v in SLUICE_VARIANTS.items() if v.model in onnx]
    repo = write_sluice_repository(tmp_path / "repo", onnx, names)
    for name in names:
        config = load_model_config(repo / name)
        variant = SLUICE_VARIANTS[name]
        assert config.name == name
        assert config.max_batch_size == variant.max_batch_size
        assert config.instance_group[0].count == variant.instances
        assert config.HasField("dynamic_batching") == (variant.max_batch_size > 0)
        if variant.queue_delay_us is not None:
            delay = config.dynamic_batching.max_queue_delay_microseconds
            assert delay == variant.queue_delay_us
