"""Protocol-neutral request and response types shared by the core and front ends.

Front ends decode the wire into these and encode these back; the core never
sees JSON, msgpack or protobuf.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

__all__ = [
    "UNRESOLVED",
    "InferInput",
    "InferOutput",
    "InferRequest",
    "InferResponse",
    "RawInputSpec",
    "RequestedOutput",
]

_EMPTY: Mapping[str, Any] = MappingProxyType({})

# The data of an input a front end found in system shared memory: the core reads it
# (``InferenceCore.infer``), so front ends never touch a region.
UNRESOLVED = np.empty(0, dtype=np.uint8)
UNRESOLVED.flags.writeable = False


def _no_parameters() -> Mapping[str, Any]:
    return _EMPTY


@dataclass(frozen=True, slots=True)
class InferInput:
    """A decoded input tensor.

    ``data`` has ``shape`` and the numpy dtype of ``datatype``; BYTES tensors are
    object arrays of ``bytes``; BF16 tensors are uint16 words.
    """

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray
    parameters: Mapping[str, Any] = field(default_factory=_no_parameters)


@dataclass(frozen=True, slots=True)
class RequestedOutput:
    """An output the client asked for; ``parameters`` are kept for the front end."""

    name: str
    parameters: Mapping[str, Any] = field(default_factory=_no_parameters)


@dataclass(frozen=True, slots=True)
class InferRequest:
    model_name: str
    inputs: tuple[InferInput, ...]
    model_version: str = ""  # "" means the model's default (highest ready) version
    id: str = ""
    outputs: tuple[RequestedOutput, ...] = ()  # empty means every output
    parameters: Mapping[str, Any] = field(default_factory=_no_parameters)
    # Some inputs' data is UNRESOLVED: their parameters place them in system shared memory.
    shared_memory_inputs: bool = False
    # Request headers (HTTP) or metadata (gRPC), lower-cased, that the front end passes on
    # only when some model routes on one (a sticky traffic split): otherwise empty.
    headers: Mapping[str, str] = field(default_factory=_no_parameters)


@dataclass(frozen=True, slots=True)
class InferOutput:
    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray


@dataclass(frozen=True, slots=True)
class InferResponse:
    model_name: str
    model_version: str
    outputs: tuple[InferOutput, ...]
    id: str = ""
    parameters: Mapping[str, Any] = field(default_factory=_no_parameters)
    # Outputs the core wrote to system shared memory: name -> the tensor parameters that
    # say where (the front end sends those instead of the data).
    placed: Mapping[str, Mapping[str, Any]] = field(default_factory=_no_parameters)


@dataclass(frozen=True, slots=True)
class RawInputSpec:
    """The model's single input, which receives a raw body (``Inference-Header-Content-Length: 0``).

    ``shape`` is the full shape including a batch dimension of 1; at most one
    ``-1`` is allowed, and only for fixed-size datatypes, where the body size fixes it.
    """

    name: str
    datatype: str
    shape: tuple[int, ...]
