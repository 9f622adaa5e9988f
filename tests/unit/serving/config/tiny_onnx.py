"""Tiny ONNX graphs written into a test's tmp_path; nothing is downloaded."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

Dim = int | str | None
TensorSpec = tuple[str, int, Sequence[Dim] | None]

FLOAT = TensorProto.FLOAT
INT64 = TensorProto.INT64


def _value_info(name: str, elem_type: int, shape: Sequence[Dim] | None) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem_type, None if shape is None else list(shape))


def write_onnx(
    path: Path,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    *,
    weight_as_input: bool = True,
) -> Path:
    """A tiny graph: each output is the first input cast to the output's type.

    A weight initializer that is also listed among the graph inputs (as older
    exporters do) checks that initializers are not taken for inputs.
    """
    nodes = [
        helper.make_node("Cast", [inputs[0][0]], [name], to=elem_type)
        for name, elem_type, _ in outputs
    ]
    weight = numpy_helper.from_array(np.ones((2,), dtype=np.float32), name="weight")
    graph_inputs = [_value_info(*spec) for spec in inputs]
    if weight_as_input:
        graph_inputs.append(_value_info("weight", FLOAT, [2]))
    graph = helper.make_graph(
        nodes,
        "tiny",
        graph_inputs,
        [_value_info(*spec) for spec in outputs],
        initializer=[weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
