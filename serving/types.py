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

__all__ = ["InferInput", "InferOutput", "InferRequest", "InferResponse", "RequestedOutput"]

_EMPTY: Mapping[str, Any] = MappingProxyType({})


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
