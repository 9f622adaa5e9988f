"""Protobuf messages <-> core types for the gRPC front end.

Pure functions, so every malformed request is testable without a server.
``raw_input_contents`` decode without a copy (``np.frombuffer`` over the bytes);
typed ``contents`` are accepted too. Outputs always go back in
``raw_output_contents`` in output order: tritonclient decodes nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from google.protobuf import json_format

from serving import codecs
from serving.codecs._common import INT_RANGES, checked_count, shape_text
from serving.datatypes import DataType, by_name
from serving.errors import InvalidArgument, SluiceError
from serving.grpc import grpc_service_pb2 as pb
from serving.shared_memory import reference
from serving.types import UNRESOLVED, InferInput, InferRequest, InferResponse, RequestedOutput

__all__ = [
    "decode_infer_request",
    "encode_infer_response",
    "encode_model_metadata",
    "encode_parameters",
    "encode_statistics",
    "parameters_to_dict",
]

# The typed field that carries each datatype, and the numpy type it widens to.
_CONTENTS: dict[str, tuple[str, type]] = {
    "BOOL": ("bool_contents", np.bool_),
    "INT8": ("int_contents", np.int32),
    "INT16": ("int_contents", np.int32),
    "INT32": ("int_contents", np.int32),
    "INT64": ("int64_contents", np.int64),
    "UINT8": ("uint_contents", np.uint32),
    "UINT16": ("uint_contents", np.uint32),
    "UINT32": ("uint_contents", np.uint32),
    "UINT64": ("uint64_contents", np.uint64),
    "FP32": ("fp32_contents", np.float32),
    "FP64": ("fp64_contents", np.float64),
    "BYTES": ("bytes_contents", object),
}
_INT64_MAX = 2**63 - 1


def parameters_to_dict(params: Mapping[str, Any]) -> dict[str, Any]:
    """A map of ``InferParameter`` (or ``ModelRepositoryParameter``) as plain values."""
    out: dict[str, Any] = {}
    if not params:  # the usual case: no items view to build
        return out
    for key, param in params.items():
        which = param.WhichOneof("parameter_choice")
        if which is not None:
            out[key] = getattr(param, which)
    return out


def encode_parameters(values: Mapping[str, Any], target: Any) -> None:
    """Fill a protobuf ``map<string, InferParameter>`` from plain values."""
    for key, value in values.items():
        param = target[key]
        if isinstance(value, bool):
            param.bool_param = value
        elif isinstance(value, int):
            if value > _INT64_MAX:
                param.uint64_param = value
            else:
                param.int64_param = value
        elif isinstance(value, float):
            param.double_param = value
        else:
            param.string_param = str(value)


# -- requests ------------------------------------------------------------------


def decode_infer_request(msg: pb.ModelInferRequest) -> InferRequest:
    """``raw_input_contents`` hold one entry per input that is not in shared memory; an
    input in shared memory gets ``UNRESOLVED`` data, which the core reads."""
    raw = msg.raw_input_contents
    raw_used = 0
    inputs: list[InferInput] = []
    seen: set[str] = set()
    in_shared_memory = False
    for position, tensor in enumerate(msg.inputs):
        name = tensor.name
        if not name:
            raise InvalidArgument(f"inputs[{position}] needs a non-empty name")
        if name in seen:
            raise InvalidArgument(f"input {name!r} appears more than once")
        seen.add(name)
        try:
            datatype = by_name(tensor.datatype)
        except SluiceError as exc:
            raise InvalidArgument(f"input {name!r}: {exc.message}") from None
        shape = tuple(tensor.shape)
        if shape and min(shape) < 0:
            raise InvalidArgument(
                f"input {name!r}: shape {shape_text(shape)} has a negative dimension"
            )
        parameters = parameters_to_dict(tensor.parameters)
        ref = reference(parameters, f"input {name!r}") if parameters else None
        has_contents = tensor.HasField("contents")
        if ref is not None:
            if has_contents:
                raise InvalidArgument(
                    f"input {name!r} has both contents and a shared memory region"
                )
            data = UNRESOLVED
            in_shared_memory = True
        elif raw:
            if has_contents:
                raise InvalidArgument(
                    f"input {name!r} has typed contents while the request uses raw_input_contents"
                )
            if raw_used >= len(raw):
                raise InvalidArgument(
                    f"raw_input_contents has {len(raw)} entries, fewer than the inputs "
                    "that need one"
                )
            data = codecs.binary_to_array(raw[raw_used], datatype, shape, name)
            raw_used += 1
        else:
            data = _typed_contents(tensor.contents, datatype, shape, name)
        inputs.append(InferInput(name, datatype.name, shape, data, parameters))
    if raw_used != len(raw):
        raise InvalidArgument(
            f"raw_input_contents has {len(raw)} entries but {raw_used} inputs take one"
        )
    return InferRequest(
        model_name=msg.model_name,
        model_version=msg.model_version,
        inputs=tuple(inputs),
        id=msg.id,
        outputs=_requested_outputs(msg.outputs),
        parameters=parameters_to_dict(msg.parameters),
        shared_memory_inputs=in_shared_memory,
    )


def _typed_contents(
    contents: pb.InferTensorContents, datatype: DataType, shape: tuple[int, ...], name: str
) -> np.ndarray:
    where = f"input {name!r}"
    count = checked_count(shape, name)
    present = [field.name for field, _ in contents.ListFields()]
    spec = _CONTENTS.get(datatype.name)
    if spec is None:
        raise InvalidArgument(
            f"{where}: {datatype.name} has no typed contents; send it in raw_input_contents"
        )
    field_name, wide = spec
    stray = [f for f in present if f != field_name]
    if stray:
        raise InvalidArgument(
            f"{where}: {datatype.name} data travels in contents.{field_name}, "
            f"not {', '.join(stray)}"
        )
    values = getattr(contents, field_name)
    if len(values) != count:
        if not present and count:
            raise InvalidArgument(
                f"{where} has no data: send raw_input_contents, contents.{field_name} "
                "or a shared memory region"
            )
        raise InvalidArgument(
            f"{where}: shape {shape_text(shape)} needs {count} elements, "
            f"contents.{field_name} has {len(values)}"
        )
    if datatype.is_bytes:
        arr = np.empty(count, dtype=object)
        arr[:] = list(values)
        return arr.reshape(shape)
    arr = np.array(values, dtype=wide)
    bounds = INT_RANGES.get(datatype.name)
    if bounds is not None and wide is not datatype.numpy.type and count:
        low, high = bounds
        bad = (arr < low) | (arr > high)
        if bad.any():
            index = int(bad.argmax())
            raise InvalidArgument(
                f"{where}: element {index} ({int(arr[index])}) is out of range for {datatype.name}"
            )
    return arr.astype(datatype.numpy, copy=False).reshape(shape)


def _requested_outputs(
    outputs: Iterable[pb.ModelInferRequest.InferRequestedOutputTensor],
) -> tuple[RequestedOutput, ...]:
    result: list[RequestedOutput] = []
    seen: set[str] = set()
    for position, out in enumerate(outputs):
        if not out.name:
            raise InvalidArgument(f"outputs[{position}] needs a non-empty name")
        if out.name in seen:
            raise InvalidArgument(f"output {out.name!r} is requested more than once")
        seen.add(out.name)
        result.append(RequestedOutput(out.name, parameters_to_dict(out.parameters)))
    return tuple(result)


# -- responses -----------------------------------------------------------------


def encode_infer_response(resp: InferResponse, request: InferRequest) -> pb.ModelInferResponse:
    """Outputs in ``raw_output_contents``, one entry per output in order; an output
    written to shared memory has an empty entry (none at all when every output is)."""
    msg = pb.ModelInferResponse(
        model_name=resp.model_name, model_version=resp.model_version, id=resp.id or request.id
    )
    if resp.parameters:
        encode_parameters(resp.parameters, msg.parameters)
    placed = resp.placed
    raw: list[bytes] = []
    for out in resp.outputs:
        tensor = msg.outputs.add(name=out.name, datatype=out.datatype, shape=out.shape)
        where = placed.get(out.name)
        if where is not None:
            encode_parameters(where, tensor.parameters)
            raw.append(b"")
            continue
        raw.append(_raw_bytes(out.data, by_name(out.datatype)))
    if len(placed) < len(resp.outputs):
        msg.raw_output_contents.extend(raw)
    return msg


def _raw_bytes(arr: np.ndarray, datatype: DataType) -> bytes:
    if datatype.is_bytes:
        return codecs.encode_bytes(arr)
    return np.ascontiguousarray(arr, dtype=datatype.numpy).tobytes()


def encode_model_metadata(meta: Mapping[str, Any]) -> pb.ModelMetadataResponse:
    msg = pb.ModelMetadataResponse(
        name=meta["name"], versions=meta["versions"], platform=meta["platform"]
    )
    for field in ("inputs", "outputs"):
        target = getattr(msg, field)
        for t in meta[field]:
            target.add(name=t["name"], datatype=t["datatype"], shape=t["shape"])
    return msg


def encode_statistics(stats: Mapping[str, Any]) -> pb.ModelStatisticsResponse:
    """The statistics extension's JSON (same field names) as its message."""
    return json_format.ParseDict(
        dict(stats), pb.ModelStatisticsResponse(), ignore_unknown_fields=True
    )
