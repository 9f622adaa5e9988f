"""Sluice's ``triton_python_backend_utils``: the names Triton python-backend models import.

A model's worker process installs this module under its Triton name, so
``import triton_python_backend_utils as pb_utils`` works unchanged. What Sluice does
not provide fails with a message naming it (docs/python-models.md lists both).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "TRITONSERVER_REQUEST_FLAG_SEQUENCE_END",
    "TRITONSERVER_REQUEST_FLAG_SEQUENCE_START",
    "TRITONSERVER_RESPONSE_COMPLETE_FINAL",
    "InferenceRequest",
    "InferenceResponse",
    "Logger",
    "Tensor",
    "TritonError",
    "TritonModelException",
    "get_input_config_by_name",
    "get_input_tensor_by_name",
    "get_output_config_by_name",
    "get_output_tensor_by_name",
    "numpy_to_triton_type",
    "triton_string_to_numpy",
    "triton_to_numpy_type",
]

TRITONSERVER_RESPONSE_COMPLETE_FINAL = 1
TRITONSERVER_REQUEST_FLAG_SEQUENCE_START = 1
TRITONSERVER_REQUEST_FLAG_SEQUENCE_END = 2

_UNSUPPORTED_HINT = "is not supported by Sluice's Python backend (see docs/python-models.md)"

# Triton's TRITONSERVER_DataType numbers, as pb_utils exposes them.
_TRITON_TYPES: dict[str, tuple[int, Any]] = {
    "TYPE_BOOL": (1, np.bool_),
    "TYPE_UINT8": (2, np.uint8),
    "TYPE_UINT16": (3, np.uint16),
    "TYPE_UINT32": (4, np.uint32),
    "TYPE_UINT64": (5, np.uint64),
    "TYPE_INT8": (6, np.int8),
    "TYPE_INT16": (7, np.int16),
    "TYPE_INT32": (8, np.int32),
    "TYPE_INT64": (9, np.int64),
    "TYPE_FP16": (10, np.float16),
    "TYPE_FP32": (11, np.float32),
    "TYPE_FP64": (12, np.float64),
    "TYPE_STRING": (13, np.object_),
    "TYPE_BF16": (14, np.uint16),
}
_BY_NUMBER = {number: dtype for number, dtype in _TRITON_TYPES.values()}


def _unsupported(what: str) -> NotImplementedError:
    return NotImplementedError(f"triton_python_backend_utils.{what} {_UNSUPPORTED_HINT}")


def triton_string_to_numpy(triton_type_string: str) -> Any:
    """``"TYPE_FP32"`` -> ``numpy.float32`` (``TYPE_STRING`` -> ``numpy.object_``)."""
    key = "TYPE_STRING" if triton_type_string == "TYPE_BYTES" else triton_type_string
    return _TRITON_TYPES[key][1]


def triton_to_numpy_type(data_type: int) -> Any:
    return _BY_NUMBER[data_type]


def numpy_to_triton_type(data_type: Any) -> int | None:
    dtype = np.dtype(data_type)
    if dtype.kind in "OSU":
        return _TRITON_TYPES["TYPE_STRING"][0]
    for number, candidate in _TRITON_TYPES.values():
        if candidate is not np.object_ and np.dtype(candidate) == dtype:
            return number
    return None


class TritonError:
    """An error a model puts in a response (``InferenceResponse(error=...)``)."""

    UNKNOWN, INTERNAL, NOT_FOUND, INVALID_ARG, UNAVAILABLE, UNSUPPORTED, ALREADY_EXISTS = range(7)
    CANCELLED = 7

    def __init__(self, message: str, code: int = INTERNAL) -> None:
        self._message = message
        self._code = code

    def message(self) -> str:
        return self._message

    def code(self) -> int:
        return self._code

    def __repr__(self) -> str:
        return f"TritonError({self._message!r})"


class TritonModelException(Exception):
    """Raised by pb_utils calls that fail (Triton's name)."""


class Tensor:
    """A named tensor held in this process (``is_cpu()`` is always true)."""

    def __init__(self, name: str, data: Any, dtype: Any = None) -> None:
        array = np.asarray(data) if dtype is None else np.asarray(data, dtype=dtype)
        if array.dtype.kind in "SU":
            array = array.astype(object)
        self._name = name
        self._array = array

    @classmethod
    def from_numpy(cls, name: str, array: np.ndarray) -> Tensor:
        return cls(name, array)

    @staticmethod
    def from_dlpack(name: str, capsule: Any) -> Tensor:
        raise _unsupported("Tensor.from_dlpack")

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._array

    def shape(self) -> list[int]:
        return list(self._array.shape)

    def triton_dtype(self) -> int | None:
        return numpy_to_triton_type(self._array.dtype)

    def is_cpu(self) -> bool:
        return True

    def to_dlpack(self) -> Any:
        raise _unsupported("Tensor.to_dlpack")


def as_numpy(tensor: Tensor) -> np.ndarray:
    """``tensor.as_numpy()``."""
    return tensor.as_numpy()


def from_numpy(name: str, array: np.ndarray) -> Tensor:
    """``Tensor(name, array)``."""
    return Tensor(name, array)


class InferenceResponse:
    def __init__(
        self,
        output_tensors: Sequence[Tensor] = (),
        error: TritonError | None = None,
        parameters: Any = None,
    ) -> None:
        self._outputs = list(output_tensors)
        self._error = error

    def output_tensors(self) -> list[Tensor]:
        return self._outputs

    def has_error(self) -> bool:
        return self._error is not None

    def error(self) -> TritonError | None:
        return self._error


# Set by the worker: runs a BLS request against the server and returns its response.
_bls: Callable[[InferenceRequest], InferenceResponse] | None = None


class InferenceRequest:
    """A request ``execute`` receives, or one a model builds to call another model (BLS)."""

    def __init__(
        self,
        model_name: str = "",
        requested_output_names: Sequence[str] = (),
        inputs: Sequence[Tensor] = (),
        request_id: str = "",
        correlation_id: int = 0,
        model_version: int = -1,
        flags: int = 0,
        timeout: int = 0,
        parameters: Mapping[str, Any] | str | None = None,
        **unsupported: Any,
    ) -> None:
        if unsupported:
            names = ", ".join(sorted(unsupported))
            raise _unsupported(f"InferenceRequest({names}=...)")
        self.model_name = model_name
        self._outputs = list(requested_output_names)
        self._inputs = list(inputs)
        self._request_id = request_id
        self._correlation_id = correlation_id
        self.model_version = model_version
        self._flags = flags
        self._timeout = timeout
        decoded = json.loads(parameters) if isinstance(parameters, str) else parameters
        self._parameters = dict(decoded or {})

    def inputs(self) -> list[Tensor]:
        return self._inputs

    def requested_output_names(self) -> list[str]:
        return self._outputs

    def request_id(self) -> str:
        return self._request_id

    def correlation_id(self) -> int:
        return self._correlation_id

    def flags(self) -> int:
        return self._flags

    def timeout(self) -> int:
        return self._timeout

    def parameters(self) -> str:
        return json.dumps(self._parameters)

    def is_cancelled(self) -> bool:
        return False

    def get_response_sender(self) -> Any:
        raise _unsupported("InferenceRequest.get_response_sender (decoupled models)")

    def exec(self, decoupled: bool = False) -> InferenceResponse:
        """Run this request on another model of the same server (BLS)."""
        if decoupled:
            raise _unsupported("InferenceRequest.exec(decoupled=True)")
        if _bls is None:
            raise TritonModelException("BLS calls are only possible inside execute()")
        return _bls(self)

    async def async_exec(self, decoupled: bool = False) -> InferenceResponse:
        return self.exec(decoupled)


def get_input_tensor_by_name(request: InferenceRequest, name: str) -> Tensor | None:
    return next((t for t in request.inputs() if t.name() == name), None)


def get_output_tensor_by_name(response: InferenceResponse, name: str) -> Tensor | None:
    return next((t for t in response.output_tensors() if t.name() == name), None)


def _config_entry(model_config: Mapping[str, Any], role: str, name: str) -> Any:
    return next((t for t in model_config.get(role, []) if t.get("name") == name), None)


def get_input_config_by_name(model_config: Mapping[str, Any], name: str) -> Any:
    return _config_entry(model_config, "input", name)


def get_output_config_by_name(model_config: Mapping[str, Any], name: str) -> Any:
    return _config_entry(model_config, "output", name)


class Logger:
    """``pb_utils.Logger.log_info(...)`` and friends: lines in the server's log."""

    _log = logging.getLogger("sluice.python_model")

    @classmethod
    def log(cls, message: str, level: int = logging.INFO) -> None:
        cls._log.log(level, message)

    @classmethod
    def log_info(cls, message: str) -> None:
        cls._log.info(message)

    @classmethod
    def log_warn(cls, message: str) -> None:
        cls._log.warning(message)

    @classmethod
    def log_error(cls, message: str) -> None:
        cls._log.error(message)

    @classmethod
    def log_verbose(cls, message: str) -> None:
        cls._log.debug(message)


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    raise AttributeError(f"triton_python_backend_utils.{name} {_UNSUPPORTED_HINT}")


def _install() -> None:
    """Make ``import triton_python_backend_utils`` find this module (in a worker)."""
    sys.modules["triton_python_backend_utils"] = sys.modules[__name__]
