"""The benchmark models, built with ``onnx.helper`` (fixed-seed weights, nothing downloaded),
and the Sluice model repository that serves them in several configurations.

- ``tiny``: serving.examples' MLP, FP32 64 -> 256 (ReLU) -> 10.
- ``wide``: FP32 512 -> 2048 -> 2048 -> 512, ReLU between.
- ``seq``: FP32 [batch, seq, 64] -> mean over seq -> dense 64 -> 10; a variable-length input.

Every model takes ``INPUT0`` and answers ``OUTPUT0`` with a dynamic batch dimension.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "MODELS",
    "SLUICE_VARIANTS",
    "BenchModel",
    "SluiceVariant",
    "build_seq",
    "build_wide_mlp",
    "sample_inputs",
    "write_onnx_models",
    "write_sluice_repository",
]

OPSET = 17
IR_VERSION = 8
WIDE_SIZES = (512, 2048, 2048, 512)
WIDE_SEED = 20240602
SEQ_FEATURES = 64
SEQ_CLASSES = 10
SEQ_SEED = 20240603
SEQ_LENGTHS = (8, 16, 32, 64)  # the lengths a seq load cycles through


def _finish(graph: Any, producer: str) -> bytes:
    import onnx
    from onnx import helper

    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name=producer
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model.SerializeToString()


def build_wide_mlp() -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(WIDE_SEED)
    nodes, inits = [], []
    current = "INPUT0"
    layers = list(itertools.pairwise(WIDE_SIZES))
    for i, (fan_in, fan_out) in enumerate(layers):
        w = (rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)).astype(np.float32)
        b = (rng.standard_normal(fan_out) * 0.1).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"W{i}"), numpy_helper.from_array(b, f"B{i}")]
        last = i == len(layers) - 1
        out = "OUTPUT0" if last else f"dense{i}"
        nodes.append(helper.make_node("Gemm", [current, f"W{i}", f"B{i}"], [out]))
        if not last:
            nodes.append(helper.make_node("Relu", [out], [f"relu{i}"]))
            current = f"relu{i}"
    graph = helper.make_graph(
        nodes,
        "wide_mlp",
        [helper.make_tensor_value_info("INPUT0", TensorProto.FLOAT, ["batch", WIDE_SIZES[0]])],
        [helper.make_tensor_value_info("OUTPUT0", TensorProto.FLOAT, ["batch", WIDE_SIZES[-1]])],
        initializer=inits,
    )
    return _finish(graph, "sluice.benchmarks")


def build_seq() -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(SEQ_SEED)
    w = (rng.standard_normal((SEQ_FEATURES, SEQ_CLASSES)) / 8.0).astype(np.float32)
    b = (rng.standard_normal(SEQ_CLASSES) * 0.1).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["INPUT0"], ["pooled"], axes=[1], keepdims=0),
            helper.make_node("Gemm", ["pooled", "W", "B"], ["OUTPUT0"]),
        ],
        "seq_pool",
        [
            helper.make_tensor_value_info(
                "INPUT0", TensorProto.FLOAT, ["batch", "seq", SEQ_FEATURES]
            )
        ],
        [helper.make_tensor_value_info("OUTPUT0", TensorProto.FLOAT, ["batch", SEQ_CLASSES])],
        initializer=[numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")],
    )
    return _finish(graph, "sluice.benchmarks")


IDENT_ELEMENTS = 1 << 20  # FP32 elements: 4 MiB a tensor


def build_ident() -> bytes:
    """INPUT0 -> OUTPUT0 identity on [batch, 1 Mi] FP32: moving 4 MiB each way is the work."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["INPUT0"], ["OUTPUT0"])],
        "ident_4mb",
        [helper.make_tensor_value_info("INPUT0", TensorProto.FLOAT, ["batch", IDENT_ELEMENTS])],
        [helper.make_tensor_value_info("OUTPUT0", TensorProto.FLOAT, ["batch", IDENT_ELEMENTS])],
    )
    return _finish(graph, "sluice.benchmarks")


def _build_tiny() -> bytes:
    from serving.examples import build_mlp

    return build_mlp()


@dataclass(frozen=True, slots=True)
class BenchModel:
    key: str  # "tiny" | "wide" | "seq" | "ident"
    file: str
    input_dims: tuple[int, ...]  # one sample, without the batch dimension; -1 variable
    output_dims: tuple[int, ...]
    output_name: str = "OUTPUT0"
    input_name: str = "INPUT0"

    def build(self) -> bytes:
        builders = {
            "tiny": _build_tiny,
            "wide": build_wide_mlp,
            "seq": build_seq,
            "ident": build_ident,
        }
        return builders[self.key]()


MODELS: dict[str, BenchModel] = {
    "tiny": BenchModel("tiny", "tiny_mlp.onnx", (64,), (10,)),
    "wide": BenchModel("wide", "wide_mlp.onnx", (WIDE_SIZES[0],), (WIDE_SIZES[-1],)),
    "seq": BenchModel("seq", "seq_pool.onnx", (-1, SEQ_FEATURES), (SEQ_CLASSES,)),
    "ident": BenchModel("ident", "ident_4mb.onnx", (IDENT_ELEMENTS,), (IDENT_ELEMENTS,)),
}


def sample_inputs(model: BenchModel, count: int = 1, seed: int = 7) -> list[np.ndarray]:
    """Batch-1 inputs for ``model``: one per sequence length for ``seq``, else ``count``."""
    rng = np.random.default_rng(seed)
    if model.key == "seq":
        return [rng.standard_normal((1, n, SEQ_FEATURES)).astype(np.float32) for n in SEQ_LENGTHS]
    return [rng.standard_normal((1, *model.input_dims)).astype(np.float32) for _ in range(count)]


def write_onnx_models(directory: Path, keys: list[str]) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for key in keys:
        path = directory / MODELS[key].file
        if not path.exists():
            path.write_bytes(MODELS[key].build())
        paths[key] = path
    return paths


@dataclass(frozen=True, slots=True)
class SluiceVariant:
    """One Sluice configuration of a model, served under its own name."""

    name: str
    model: str  # MODELS key
    max_batch_size: int  # 0: no batching (requests run one by one)
    instances: int
    queue_delay_us: int | None  # dynamic batching's max_queue_delay_microseconds
    intra_op_threads: int = 0  # ONNX Runtime threads per instance; 0: cores // instances

    def config_pbtxt(self) -> str:
        """Triton config text. Without batching, ``max_batch_size`` is 0 and the batch
        dimension is spelled out in ``dims``: a batching model with no scheduler block
        gets an empty ``dynamic_batching`` from config completion, as in Triton."""
        m = MODELS[self.model]
        lead = () if self.max_batch_size else (-1,)
        dims = ", ".join(str(d) for d in (*lead, *m.input_dims))
        out = ", ".join(str(d) for d in (*lead, *m.output_dims))
        batching = (
            ""
            if self.queue_delay_us is None
            else f"dynamic_batching {{ max_queue_delay_microseconds: {self.queue_delay_us} }}\n"
        )
        threads = (
            f'parameters [ {{ key: "intra_op_thread_count" value: '
            f'{{ string_value: "{self.intra_op_threads}" }} }} ]\n'
            if self.intra_op_threads
            else ""
        )
        return (
            f'name: "{self.name}"\n'
            'platform: "onnxruntime_onnx"\n'
            f"max_batch_size: {self.max_batch_size}\n"
            f'input [ {{ name: "{m.input_name}", data_type: TYPE_FP32, dims: [ {dims} ] }} ]\n'
            f'output [ {{ name: "{m.output_name}", data_type: TYPE_FP32, dims: [ {out} ] }} ]\n'
            f"{batching}"
            f"instance_group [ {{ kind: KIND_CPU, count: {self.instances} }} ]\n"
            f"{threads}"
        )


# Sluice serves every variant from one process; each scenario names the variants it
# tries, and the report keeps the best.
SLUICE_VARIANTS: dict[str, SluiceVariant] = {
    v.name: v
    for v in (
        SluiceVariant("tiny_mlp", "tiny", 0, 2, None),
        SluiceVariant("tiny_mlp_batched", "tiny", 64, 1, 200),
        SluiceVariant("wide_mlp_batched", "wide", 64, 1, 1000),
        SluiceVariant("wide_mlp_batched_i2", "wide", 64, 2, 1000),
        # One instance on one thread: on 2 cores shared with the front end and the client,
        # a 2-thread ONNX Runtime pool waits on a thread the event loop holds (issue 14).
        SluiceVariant("wide_mlp_batched_t1", "wide", 64, 1, 1000, intra_op_threads=1),
        SluiceVariant("seq_pool_batched", "seq", 64, 1, 500),
        SluiceVariant("ident_4mb", "ident", 0, 1, None),
    )
}


def write_sluice_repository(
    directory: Path, onnx_paths: dict[str, Path], variants: list[str]
) -> Path:
    for name in variants:
        variant = SLUICE_VARIANTS[name]
        version = directory / name / "1"
        version.mkdir(parents=True, exist_ok=True)
        target = version / "model.onnx"
        if not target.exists():
            target.symlink_to(onnx_paths[variant.model].resolve())
        (directory / name / "config.pbtxt").write_text(variant.config_pbtxt())
    return directory
