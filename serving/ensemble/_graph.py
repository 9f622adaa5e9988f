"""An ensemble's steps as a DAG over tensor names, checked once at load.

Triton's ``ensemble_scheduling { step [ { model_name, model_version, input_map,
output_map } ] }``: ``input_map`` maps a composing model's input to an ensemble tensor,
``output_map`` a composing model's output to one. Every refusal names the step (its
position, from 1, and model) and the tensor: an unknown model, an input or output the
model does not have, a tensor no step or ensemble input produces, one produced twice,
a cycle, and a datatype or shape that does not match between producer and consumer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from serving.errors import InvalidArgument

__all__ = ["Spec", "Step", "build_steps", "specs_of"]


@dataclass(frozen=True, slots=True)
class Spec:
    """A tensor as one side sees it: datatype (wire name) and full shape (-1: any)."""

    datatype: str
    shape: tuple[int, ...]

    def __str__(self) -> str:
        return f"{self.datatype} {list(self.shape)}"

    def fits(self, other: Spec) -> bool:
        return (
            self.datatype == other.datatype
            and len(self.shape) == len(other.shape)
            and all(
                a == b or a == -1 or b == -1 for a, b in zip(self.shape, other.shape, strict=True)
            )
        )


@dataclass(frozen=True, slots=True)
class Step:
    index: int  # position in the config, from 1
    model: str
    version: str  # "" for the latest ready version
    inputs: tuple[tuple[str, str, str], ...]  # (model input, ensemble tensor, datatype)
    outputs: tuple[tuple[str, str], ...]  # (model output, ensemble tensor)

    @property
    def label(self) -> str:
        return f"step {self.index} (model '{self.model}')"


def specs_of(config: Any) -> tuple[dict[str, Spec], dict[str, Spec]]:
    """A model config's inputs and outputs as full-shape specs (batch dimension included)."""
    from serving.config.model_config_pb2 import DataType

    lead = (-1,) if config.max_batch_size > 0 else ()

    def spec(t: Any) -> Spec:
        return Spec(DataType.Name(t.data_type).removeprefix("TYPE_").replace("STRING", "BYTES"),
                    lead + tuple(t.dims))  # fmt: skip

    return {t.name: spec(t) for t in config.input}, {t.name: spec(t) for t in config.output}


def build_steps(config: Any, composing: Callable[[str, int], Any]) -> tuple[Step, ...]:
    """The ensemble's steps in an order that runs (each after its producers), validated.

    ``composing(name, version)`` returns the config of a composing model, or raises
    NotFound naming it."""
    name = config.name
    where = f"ensemble '{name}'"
    scheduling = config.ensemble_scheduling
    if not scheduling.step:
        raise InvalidArgument(f"{where}: ensemble_scheduling has no step")
    ensemble_in, ensemble_out = specs_of(config)
    producers: dict[str, tuple[str, Spec]] = {
        t: ("the ensemble's input", s) for t, s in ensemble_in.items()
    }
    steps: list[Step] = []
    needs: dict[int, set[str]] = {}
    consumers: list[tuple[str, str, Spec]] = []  # (who, tensor, spec wanted)
    for index, raw in enumerate(scheduling.step, start=1):
        label = f"step {index} (model '{raw.model_name}')"
        if not raw.model_name:
            raise InvalidArgument(f"{where}: step {index} names no model")
        if raw.model_name == name:
            raise InvalidArgument(f"{where}: {label} is the ensemble itself")
        try:
            model_config = composing(raw.model_name, int(raw.model_version))
        except Exception as exc:
            message = getattr(exc, "message", str(exc))
            raise InvalidArgument(f"{where}: {label}: {message}") from None
        model_in, model_out = specs_of(model_config)
        inputs = []
        for model_input, tensor in sorted(raw.input_map.items()):
            if model_input not in model_in:
                raise InvalidArgument(
                    f"{where}: {label}: input_map names input '{model_input}', which the model "
                    f"does not have (its inputs: {', '.join(sorted(model_in))})"
                )
            inputs.append((model_input, tensor, model_in[model_input].datatype))
            consumers.append((f"{label} input '{model_input}'", tensor, model_in[model_input]))
        unmapped = sorted(
            t.name for t in model_config.input if t.name not in raw.input_map and not t.optional
        )
        if unmapped:
            raise InvalidArgument(f"{where}: {label}: input '{unmapped[0]}' is not in input_map")
        outputs = []
        for model_output, tensor in sorted(raw.output_map.items()):
            if model_output not in model_out:
                raise InvalidArgument(
                    f"{where}: {label}: output_map names output '{model_output}', which the "
                    f"model does not have (its outputs: {', '.join(sorted(model_out))})"
                )
            if tensor in producers:
                raise InvalidArgument(
                    f"{where}: tensor '{tensor}' is produced twice: by {producers[tensor][0]} "
                    f"and by {label}"
                )
            producers[tensor] = (label, model_out[model_output])
            outputs.append((model_output, tensor))
        version = str(raw.model_version) if raw.model_version > 0 else ""
        steps.append(Step(index, raw.model_name, version, tuple(inputs), tuple(outputs)))
        needs[index] = {tensor for _, tensor, _ in inputs}
    for tensor, spec in ensemble_out.items():
        consumers.append((f"the ensemble's output '{tensor}'", tensor, spec))
    for who, tensor, wanted in consumers:
        if tensor not in producers:
            raise InvalidArgument(
                f"{where}: {who} takes tensor '{tensor}', which no step and no ensemble input "
                "produces"
            )
        producer, made = producers[tensor]
        if not made.fits(wanted):
            raise InvalidArgument(
                f"{where}: {who} takes tensor '{tensor}' as {wanted}, but {producer} gives "
                f"it as {made}"
            )
    return _ordered(where, steps, needs, set(ensemble_in))


def _ordered(
    where: str, steps: list[Step], needs: Mapping[int, set[str]], available: set[str]
) -> tuple[Step, ...]:
    """Steps in a runnable order; a cycle is refused naming its steps and a tensor."""
    done: list[Step] = []
    have = set(available)
    left = list(steps)
    while left:
        ready = [s for s in left if needs[s.index] <= have]
        if not ready:
            stuck = left[0]
            missing = sorted(needs[stuck.index] - have)[0]
            others = ", ".join(s.label for s in left)
            raise InvalidArgument(
                f"{where}: the steps form a cycle: {others} wait on each other "
                f"({stuck.label} needs tensor '{missing}')"
            )
        for step in ready:
            done.append(step)
            have.update(tensor for _, tensor in step.outputs)
            left.remove(step)
    return tuple(done)
