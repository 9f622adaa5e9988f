"""The collector as an observer of every model version (``serving.observers``).

A version is described (its ``sluice.collect.*`` parameters and tensor specs) the
first time it is heard, through ``describe``, and remembered; the request path then
only samples and enqueues the record's references (the writer thread reads them).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from serving.monitoring._collector import Collector

if TYPE_CHECKING:
    from serving.observers import InferenceRecord

__all__ = [
    "CollectObserver",
    "VersionDescription",
    "describe_model_config",
    "describe_model_version",
]


@dataclass(frozen=True, slots=True)
class VersionDescription:
    parameters: Mapping[str, str]
    inputs: Sequence[tuple[str, np.dtype, tuple[int, ...]]]
    outputs: Sequence[tuple[str, np.dtype, tuple[int, ...]]]
    batching: bool


def describe_model_config(config: Any) -> VersionDescription:
    """What the collector needs of a version, from its config message (what
    ``InferenceCore.model_config_message`` answers)."""
    from serving.config.model_config_pb2 import DataType as ConfigDataType
    from serving.datatypes import by_config_name

    def specs(tensors: Any) -> list[tuple[str, np.dtype, tuple[int, ...]]]:
        return [
            (t.name, by_config_name(ConfigDataType.Name(t.data_type)).numpy, tuple(t.dims))
            for t in tensors
        ]

    return VersionDescription(
        parameters={key: value.string_value for key, value in config.parameters.items()},
        inputs=specs(config.input),
        outputs=specs(config.output),
        batching=config.max_batch_size > 0,
    )


def describe_model_version(mv: Any) -> VersionDescription:
    """What the collector needs of a ``serving.model.ModelVersion``."""
    return describe_model_config(mv.config)


class CollectObserver:
    wants_tensors = True

    def __init__(
        self, collector: Collector, describe: Callable[[str, str], VersionDescription | None]
    ) -> None:
        self.collector = collector
        self._describe = describe
        self._seen: set[tuple[str, str]] = set()

    def on_inference(self, record: InferenceRecord) -> None:
        key = (record.model, record.version)
        if key not in self._seen:
            self._seen.add(key)
            desc = self._describe(record.model, record.version)
            if desc is not None:
                self.collector.attach(
                    record.model, record.version, desc.parameters, desc.inputs, desc.outputs,
                    batching=desc.batching,
                )  # fmt: skip
        self.collector.observe_inference(record)

    def on_execution(self, record: InferenceRecord) -> None:
        pass

    def forget(self, model: str, version: str) -> None:
        """A version was unloaded: describe it again if it comes back."""
        self._seen.discard((model, version))
        self.collector.detach(model, version)
