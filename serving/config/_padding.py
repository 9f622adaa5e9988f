"""Whether a batching model pads variable-length inputs, and how each output is cut back.

A ``sluice.pad.<input>`` parameter asks the dynamic batcher to pad that input's
variable dims so that requests of different lengths share a batch. The answers are
right only if every output's per-request shape can be told from the request's own
inputs, so an output is either

- taken whole: all its dims (after the batch dim) are fixed; or
- cut back to a padded input: its dims equal that input's dims, or they are that
  input's variable dims, in order, followed by fixed dims (``ids [-1]`` ->
  ``embeddings [-1, 384]``); its k-th variable dim is the input's k-th variable dim.
  Where the ONNX graph names those dims (``dim_param``), the names must agree.

Any other output, or a reshape on a padded input or an output, means the model
does not pad: requests then batch only with others of the same shape.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from serving.config import model_config_pb2 as pb
from serving.config._graph import GraphSignature, GraphTensor
from serving.errors import InvalidArgument

__all__ = ["PAD_PREFIX", "PAD_RULE", "OutputCut", "PaddingPlan", "padding_plan"]

PAD_PREFIX = "sluice.pad."
PAD_RULE = (
    "an output is cut back per request only when its dims equal a padded input's dims, or "
    "are that input's variable dims followed by fixed dims"
)


@dataclass(frozen=True, slots=True)
class OutputCut:
    """How an output's per-request row shape follows a padded input's row shape."""

    source: str  # the padded input
    positions: tuple[int, ...]  # the input's variable dims (after the batch dim), in order
    dims: tuple[int, ...]  # the output's dims; each -1 takes the next of those

    def shape(self, source_shape: Sequence[int]) -> tuple[int, ...]:
        lengths = iter([source_shape[p] for p in self.positions])
        return tuple(next(lengths) if d == -1 else d for d in self.dims)


@dataclass(frozen=True, slots=True)
class PaddingPlan:
    """The padded inputs (config order) and, per output, its cut (None: taken whole)."""

    padded: tuple[str, ...] = ()
    cuts: Mapping[str, OutputCut | None] = field(default_factory=dict)
    reason: str = ""  # why the model does not pad; empty when it pads
    asked: bool = False  # a sluice.pad.<input> parameter is set

    @property
    def pads(self) -> bool:
        return bool(self.padded)

    def explain(self) -> str:
        """One line for people: does the model pad, and why not."""
        if not self.pads:
            return f"does not pad: {self.reason}"
        inputs = ", ".join(repr(name) for name in self.padded)
        outputs = "; ".join(
            f"output {name!r} is taken whole"
            if cut is None
            else f"output {name!r} {list(cut.dims)} is cut back to input {cut.source!r}'s length"
            for name, cut in self.cuts.items()
        )
        return f"pads inputs {inputs}; {outputs}"


def padding_plan(
    cfg: pb.ModelConfig, graph: GraphSignature | None = None, source: str = ""
) -> PaddingPlan:
    """Decide padding for ``cfg``; with ``graph``, also check its dim names agree.

    Raises ``InvalidArgument`` when a ``sluice.pad.`` parameter names no input, or
    when the graph's dim names contradict the cut the dims alone imply; messages
    start with ``source`` (default: the model's config).
    """
    source = source or f"config of model {cfg.name!r}"
    if cfg.max_batch_size <= 0 or cfg.WhichOneof("scheduling_choice") != "dynamic_batching":
        return PaddingPlan(reason="the model has no dynamic batcher")
    wanted = [key[len(PAD_PREFIX) :] for key in cfg.parameters if key.startswith(PAD_PREFIX)]
    inputs = {t.name: t for t in cfg.input}
    if not wanted:
        if any(-1 in t.dims for t in cfg.input):
            return PaddingPlan(
                reason=f"no {PAD_PREFIX}<input> parameter; requests batch only with others "
                "of the same shape"
            )
        return PaddingPlan(reason="every input has fixed dims; any requests batch together")
    unknown = sorted(set(wanted) - set(inputs))
    if unknown:
        known = ", ".join(repr(name) for name in inputs) or "none"
        raise InvalidArgument(
            f"{source}: parameter {PAD_PREFIX}{unknown[0]} names no input of the model "
            f"(its inputs: {known})"
        )
    padded = [t for t in cfg.input if t.name in wanted]  # config order: the first one wins
    if not any(-1 in t.dims for t in padded):
        return PaddingPlan(reason="the padded inputs have only fixed dims", asked=True)
    for tensor in padded:
        if tensor.HasField("reshape"):
            return PaddingPlan(reason=f"padded input {tensor.name!r} has a reshape", asked=True)
    cuts: dict[str, OutputCut | None] = {}
    for out in cfg.output:
        dims = tuple(out.dims)
        if out.HasField("reshape"):
            return PaddingPlan(reason=f"output {out.name!r} has a reshape", asked=True)
        if -1 not in dims:
            cuts[out.name] = None
            continue
        cut = next((c for t in padded if (c := _cut(dims, t)) is not None), None)
        if cut is None:
            return PaddingPlan(
                reason=f"output {out.name!r} dims {list(dims)} follow no padded input ("
                f"{PAD_RULE}), so its unpadded shape cannot be known",
                asked=True,
            )
        if graph is not None:
            _check_names(cut, out.name, graph, cfg.max_batch_size > 0, source)
        cuts[out.name] = cut
    return PaddingPlan(tuple(t.name for t in padded), cuts, asked=True)


def _cut(dims: tuple[int, ...], padded: pb.ModelInput) -> OutputCut | None:
    own = tuple(padded.dims)
    positions = tuple(i for i, d in enumerate(own) if d == -1)
    variable = len(positions)
    leading = dims[:variable] == (-1,) * variable and -1 not in dims[variable:]
    if dims == own or leading:
        return OutputCut(padded.name, positions, dims)
    return None


def _check_names(
    cut: OutputCut, output: str, graph: GraphSignature, batching: bool, source: str
) -> None:
    """The graph's names for the paired dims must agree where both have one."""
    offset = 1 if batching else 0
    in_names = _names(graph.input(cut.source), offset)
    out_names = _names(graph.output(output), offset)
    out_positions = [j for j, d in enumerate(cut.dims) if d == -1]
    for i, j in zip(cut.positions, out_positions, strict=True):
        a = in_names[i] if i < len(in_names) else ""
        b = out_names[j] if j < len(out_names) else ""
        if a and b and a != b:
            raise InvalidArgument(
                f"{source}: parameter {PAD_PREFIX}{cut.source} pads input {cut.source!r} and "
                f"output {output!r} {list(cut.dims)} would be cut back to that input's length, "
                f"but the ONNX graph names that output dim {b!r} and the input's {a!r}, so "
                "padded answers could not be cut back to each request's length; name the dims "
                "alike in the graph, or remove the parameter"
            )


def _names(tensor: GraphTensor | None, offset: int) -> tuple[str, ...]:
    if tensor is None or tensor.dim_names is None:
        return ()
    return tensor.dim_names[offset:]
