"""Small example models built with ``onnx.helper``; nothing is downloaded.

``python -m serving.examples DIR [NAME ...]`` writes a Triton-layout repository:
``DIR/<model>/1/model.onnx`` plus a ``config.pbtxt`` where the config shows something.

- ``simple``: Triton's classic: INPUT0, INPUT1 INT32 [-1, 16] -> OUTPUT0 = sum, OUTPUT1 =
  difference.
- ``mlp``: FP32 64 -> 256 (ReLU) -> 10 with fixed-seed weights, dynamic batch.
- ``identity_<datatype>`` for every wire datatype (``identity_bytes`` is an ONNX STRING
  identity): INPUT0 [-1, -1] -> OUTPUT0, to round-trip each datatype.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from serving.datatypes import DATATYPES

__all__ = [
    "EXAMPLES",
    "build_identity",
    "build_mlp",
    "build_simple",
    "main",
    "mlp_reference",
    "write_repository",
]

OPSET = 17  # Identity for bfloat16 needs 13+; 17 loads on every ONNX Runtime >= 1.14
IR_VERSION = 8
MLP_SEED = 20240601
MLP_SIZES = (64, 256, 10)


def _finish(graph: Any) -> bytes:
    import onnx
    from onnx import helper

    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="sluice.examples"
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model.SerializeToString()


def build_simple() -> bytes:
    from onnx import TensorProto, helper

    def tensor(name: str) -> Any:
        return helper.make_tensor_value_info(name, TensorProto.INT32, [None, 16])

    graph = helper.make_graph(
        [
            helper.make_node("Add", ["INPUT0", "INPUT1"], ["OUTPUT0"]),
            helper.make_node("Sub", ["INPUT0", "INPUT1"], ["OUTPUT1"]),
        ],
        "simple",
        [tensor("INPUT0"), tensor("INPUT1")],
        [tensor("OUTPUT0"), tensor("OUTPUT1")],
    )
    return _finish(graph)


def _mlp_weights() -> list[np.ndarray]:
    rng = np.random.default_rng(MLP_SEED)
    weights = []
    for fan_in, fan_out in itertools.pairwise(MLP_SIZES):
        scale = np.float32(1.0 / np.sqrt(fan_in))
        weights.append((rng.standard_normal((fan_in, fan_out)) * scale).astype(np.float32))
        weights.append((rng.standard_normal(fan_out) * np.float32(0.1)).astype(np.float32))
    return weights


def mlp_reference(x: np.ndarray) -> np.ndarray:
    """What the ``mlp`` model computes, in numpy, for checking results."""
    w1, b1, w2, b2 = _mlp_weights()
    hidden = np.maximum(x.astype(np.float32) @ w1 + b1, 0.0)
    return (hidden @ w2 + b2).astype(np.float32)


def build_mlp() -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    names = ("W1", "B1", "W2", "B2")
    inits = [numpy_helper.from_array(w, n) for w, n in zip(_mlp_weights(), names, strict=True)]
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["INPUT0", "W1", "B1"], ["hidden"]),
            helper.make_node("Relu", ["hidden"], ["activated"]),
            helper.make_node("Gemm", ["activated", "W2", "B2"], ["OUTPUT0"]),
        ],
        "mlp",
        [helper.make_tensor_value_info("INPUT0", TensorProto.FLOAT, ["batch", MLP_SIZES[0]])],
        [helper.make_tensor_value_info("OUTPUT0", TensorProto.FLOAT, ["batch", MLP_SIZES[-1]])],
        initializer=inits,
    )
    return _finish(graph)


def build_identity(datatype: str) -> bytes:
    """INPUT0 -> OUTPUT0 of one wire datatype (e.g. "FP16", "BYTES"), shape [-1, -1]."""
    from onnx import helper

    (dt,) = [d for d in DATATYPES if d.name == datatype]
    graph = helper.make_graph(
        [helper.make_node("Identity", ["INPUT0"], ["OUTPUT0"])],
        f"identity_{datatype.lower()}",
        [helper.make_tensor_value_info("INPUT0", dt.onnx_type, [None, None])],
        [helper.make_tensor_value_info("OUTPUT0", dt.onnx_type, [None, None])],
    )
    return _finish(graph)


_SIMPLE_CONFIG = """\
# Triton's classic example model. The latest version policy serves only the newest version
# directory; dims leave out the batch dimension because max_batch_size > 0.
name: "simple"
platform: "onnxruntime_onnx"
max_batch_size: 8
version_policy: { latest: { num_versions: 1 } }
input [
  { name: "INPUT0", data_type: TYPE_INT32, dims: [ 16 ] },
  { name: "INPUT1", data_type: TYPE_INT32, dims: [ 16 ] }
]
output [
  { name: "OUTPUT0", data_type: TYPE_INT32, dims: [ 16 ] },
  { name: "OUTPUT1", data_type: TYPE_INT32, dims: [ 16 ] }
]
instance_group [ { kind: KIND_CPU, count: 1 } ]
"""

_MLP_CONFIG = """\
# Dynamic batching, two CPU instances and an explicit warmup sample.
name: "mlp"
platform: "onnxruntime_onnx"
max_batch_size: 32
input [ { name: "INPUT0", data_type: TYPE_FP32, dims: [ 64 ] } ]
output [ { name: "OUTPUT0", data_type: TYPE_FP32, dims: [ 10 ] } ]
dynamic_batching { max_queue_delay_microseconds: 100 }
instance_group [ { kind: KIND_CPU, count: 2 } ]
model_warmup [
  {
    name: "zeros"
    batch_size: 4
    inputs { key: "INPUT0", value: { data_type: TYPE_FP32, dims: [ 64 ], zero_data: true } }
  }
]
"""

# name -> (builder, config.pbtxt text or None)
EXAMPLES: dict[str, tuple[Callable[[], bytes], str | None]] = {
    "simple": (build_simple, _SIMPLE_CONFIG),
    "mlp": (build_mlp, _MLP_CONFIG),
}
for _dt in DATATYPES:
    EXAMPLES[f"identity_{_dt.name.lower()}"] = (functools.partial(build_identity, _dt.name), None)


def write_repository(path: Path, names: Iterable[str] | None = None) -> list[Path]:
    """Write ``<path>/<model>/1/model.onnx`` (+ config.pbtxt) for each example; returns dirs."""
    chosen = list(EXAMPLES) if names is None else list(names)
    unknown = [n for n in chosen if n not in EXAMPLES]
    if unknown:
        raise ValueError(f"unknown example models {unknown}; known: {sorted(EXAMPLES)}")
    written = []
    for name in chosen:
        builder, config = EXAMPLES[name]
        model_dir = Path(path) / name
        (model_dir / "1").mkdir(parents=True, exist_ok=True)
        (model_dir / "1" / "model.onnx").write_bytes(builder())
        if config is not None:
            (model_dir / "config.pbtxt").write_text(config)
        written.append(model_dir)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m serving.examples", description="Write Sluice's example model repository."
    )
    parser.add_argument("directory", type=Path)
    parser.add_argument(
        "names", nargs="*", help=f"models to write (default: all): {list(EXAMPLES)}"
    )
    args = parser.parse_args(argv)
    try:
        for model_dir in write_repository(args.directory, args.names or None):
            print(model_dir)
    except ValueError as exc:
        parser.error(str(exc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
