"""Completing a model config from its ONNX graph, as Triton's onnxruntime autocomplete does."""

from __future__ import annotations

from collections.abc import Sequence

from serving.backends import backend_for
from serving.config import model_config_pb2 as pb
from serving.config._graph import GraphSignature, GraphTensor
from serving.errors import InvalidArgument, Unsupported

__all__ = ["BACKEND", "PLATFORM", "complete_config"]

PLATFORM = "onnxruntime_onnx"
BACKEND = "onnxruntime"

_Tensor = pb.ModelInput | pb.ModelOutput


def complete_config(
    cfg: pb.ModelConfig,
    model_name: str,
    graph: GraphSignature | None,
    *,
    derive_batching: bool,
    default_max_batch_size: int,
    source: str = "config.pbtxt",
) -> None:
    """Fill what ``cfg`` leaves out, in place, and check what it states against the graph.

    With ``derive_batching`` (the caller decides; see ``load_model_config``) the model
    batches when every graph input and output has a dynamic first dimension: then
    ``max_batch_size`` becomes ``default_max_batch_size`` and that dimension is left
    out of the derived ``dims``. A batching model without a scheduler gets an empty
    ``dynamic_batching`` block, as Triton's autocomplete gives it.
    """
    _complete_identity(cfg, model_name, source)
    if graph is not None:
        if derive_batching and default_max_batch_size > 0 and _graph_batches(graph):
            cfg.max_batch_size = default_max_batch_size
        _complete_tensors(cfg, cfg.input, graph.inputs, "input", source)
        _complete_tensors(cfg, cfg.output, graph.outputs, "output", source)
    _complete_defaults(cfg)


def _complete_identity(cfg: pb.ModelConfig, model_name: str, source: str) -> None:
    if not cfg.name:
        cfg.name = model_name
    elif cfg.name != model_name:
        raise InvalidArgument(
            f"{source} names the model {cfg.name!r} but its directory is {model_name!r}; "
            "the two must agree"
        )
    if backend_for(cfg) is not None:
        return  # another backend's model (serving.backends): no ONNX graph to complete from
    if cfg.platform not in ("", PLATFORM):
        raise Unsupported(
            f"{source}: platform {cfg.platform!r} is not supported; Sluice serves ONNX models "
            f"only (platform {PLATFORM!r})"
        )
    if cfg.backend not in ("", BACKEND):
        raise Unsupported(
            f"{source}: backend {cfg.backend!r} is not supported; Sluice serves ONNX models "
            f"only (backend {BACKEND!r})"
        )
    cfg.platform = PLATFORM
    cfg.backend = BACKEND


def _graph_batches(graph: GraphSignature) -> bool:
    tensors = (*graph.inputs, *graph.outputs)
    return bool(graph.inputs) and all(t.dims and t.dims[0] == -1 for t in tensors)


def _complete_tensors(
    cfg: pb.ModelConfig,
    listed: Sequence[_Tensor],
    in_graph: Sequence[GraphTensor],
    role: str,
    source: str,
) -> None:
    by_name = {t.name: t for t in in_graph}
    batching = cfg.max_batch_size > 0
    for tensor in listed:
        graph_tensor = by_name.get(tensor.name)
        if graph_tensor is None:
            known = ", ".join(repr(n) for n in by_name) or "none"
            raise InvalidArgument(
                f"{source}: {role} {tensor.name!r} is not an {role} of the ONNX graph "
                f"(its {role}s: {known})"
            )
        if tensor.data_type == pb.TYPE_INVALID:
            tensor.data_type = pb.DataType.Value(graph_tensor.config_type)  # type: ignore[assignment]
        elif pb.DataType.Name(tensor.data_type) != graph_tensor.config_type:
            raise InvalidArgument(
                f"{source}: {role} {tensor.name!r} has data_type "
                f"{pb.DataType.Name(tensor.data_type)} but the ONNX graph has "
                f"{graph_tensor.config_type}"
            )
        if not tensor.dims:
            _set_dims(tensor, graph_tensor, batching, role)
        else:
            _check_dims(tensor, graph_tensor, cfg.max_batch_size, role, source)
    listed_names = {t.name for t in listed}
    for graph_tensor in in_graph:
        if graph_tensor.name not in listed_names:
            added = listed.add()  # type: ignore[attr-defined]
            added.name = graph_tensor.name
            added.data_type = pb.DataType.Value(graph_tensor.config_type)
            _set_dims(added, graph_tensor, batching, role)


def _set_dims(tensor: _Tensor, graph_tensor: GraphTensor, batching: bool, role: str) -> None:
    if graph_tensor.dims is None:
        raise InvalidArgument(
            f"the ONNX graph gives no shape for {role} {graph_tensor.name!r}; "
            "state its dims in config.pbtxt"
        )
    dims = graph_tensor.dims[1:] if batching else graph_tensor.dims
    if dims:
        tensor.dims.extend(dims)
    else:
        # Triton's spelling of a scalar (per batch element): dims [1], reshaped to [].
        tensor.dims.append(1)
        tensor.reshape.SetInParent()


def _check_dims(
    tensor: _Tensor, graph_tensor: GraphTensor, max_batch_size: int, role: str, source: str
) -> None:
    graph_dims = graph_tensor.dims
    if graph_dims is None:
        return
    model_dims = list(tensor.reshape.shape) if tensor.HasField("reshape") else list(tensor.dims)
    if max_batch_size > 0:
        if not graph_dims or graph_dims[0] != -1:
            raise InvalidArgument(
                f"{source}: max_batch_size {max_batch_size} needs a dynamic first dimension "
                f"for {role} {tensor.name!r}, but the ONNX graph's shape is {list(graph_dims)}"
            )
        graph_dims = graph_dims[1:]
    # As Triton: a scalar (per batch item) is dims [1] with reshape { shape: [] }; dims [1]
    # alone on a scalar is refused, since the answers would not have the shape it states.
    compatible = len(model_dims) == len(graph_dims) and all(
        c == g or c == -1 or g == -1 for c, g in zip(model_dims, graph_dims, strict=True)
    )
    if not compatible:
        what = "reshape" if tensor.HasField("reshape") else "dims"
        batch_note = " (after the batch dimension)" if max_batch_size > 0 else ""
        hint = ""
        if not graph_dims and model_dims == [1]:
            hint = "; a scalar per batch item is dims: [1] with reshape: { shape: [] }"
        raise InvalidArgument(
            f"{source}: {role} {tensor.name!r} has {what} {model_dims} but the ONNX graph's "
            f"shape{batch_note} is {list(graph_dims)}{hint}"
        )


def _complete_defaults(cfg: pb.ModelConfig) -> None:
    if not cfg.HasField("version_policy"):
        cfg.version_policy.latest.num_versions = 1
    if not cfg.instance_group:
        cfg.instance_group.add(count=1, kind=pb.ModelInstanceGroup.KIND_CPU)
    for group in cfg.instance_group:
        if group.kind == pb.ModelInstanceGroup.KIND_AUTO:
            group.kind = pb.ModelInstanceGroup.KIND_CPU
        if group.count == 0:
            group.count = 1
    # Tools read model_transaction_policy.decoupled and response_cache.enable unguarded.
    cfg.model_transaction_policy.SetInParent()
    cfg.response_cache.SetInParent()
    if cfg.max_batch_size > 1 and cfg.WhichOneof("scheduling_choice") is None:
        cfg.dynamic_batching.SetInParent()
