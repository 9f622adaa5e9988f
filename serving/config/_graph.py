"""The input and output signature of an ONNX graph, read without running it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from serving.datatypes import by_onnx_type
from serving.errors import InvalidArgument, NotFound, SluiceError

__all__ = ["GraphSignature", "GraphTensor", "read_graph_signature"]


@dataclass(frozen=True, slots=True)
class GraphTensor:
    """One graph input or output.

    ``dims`` is None when the graph records no shape at all; symbolic and
    unknown dimensions are -1. ``dim_names`` holds each dim's symbolic name
    (``dim_param``, "" where it has none); padding checks outputs against them.
    """

    name: str
    config_type: str  # Triton config spelling, e.g. "TYPE_FP32"
    dims: tuple[int, ...] | None
    dim_names: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class GraphSignature:
    inputs: tuple[GraphTensor, ...]
    outputs: tuple[GraphTensor, ...]

    def input(self, name: str) -> GraphTensor | None:
        return next((t for t in self.inputs if t.name == name), None)

    def output(self, name: str) -> GraphTensor | None:
        return next((t for t in self.outputs if t.name == name), None)


def read_graph_signature(onnx_path: Path) -> GraphSignature:
    """Read the graph's inputs (initializers excluded) and outputs.

    External weights are not loaded: only the graph structure is needed.
    """
    import onnx

    if not onnx_path.is_file():
        raise NotFound(f"model file {onnx_path} does not exist")
    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, ValueError, ...
        raise InvalidArgument(f"{onnx_path} is not a readable ONNX model: {exc}") from None
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    inputs = tuple(
        _tensor(v, "input", onnx_path) for v in graph.input if v.name not in initializers
    )
    outputs = tuple(_tensor(v, "output", onnx_path) for v in graph.output)
    return GraphSignature(inputs, outputs)


def _tensor(value_info, role: str, onnx_path: Path) -> GraphTensor:  # type: ignore[no-untyped-def]
    kind = value_info.type.WhichOneof("value")
    if kind != "tensor_type":
        raise InvalidArgument(
            f"{role} {value_info.name!r} of {onnx_path.name} is a {kind or 'untyped'} value; "
            "only tensors can be served"
        )
    tensor_type = value_info.type.tensor_type
    try:
        config_type = by_onnx_type(tensor_type.elem_type).config_name
    except SluiceError as exc:
        raise InvalidArgument(f"{role} {value_info.name!r} of {onnx_path.name}: {exc}") from None
    dims: tuple[int, ...] | None = None
    names: tuple[str, ...] | None = None
    if tensor_type.HasField("shape"):
        dims = tuple(
            d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1
            for d in tensor_type.shape.dim
        )
        names = tuple(d.dim_param for d in tensor_type.shape.dim)
    return GraphTensor(value_info.name, config_type, dims, names)
