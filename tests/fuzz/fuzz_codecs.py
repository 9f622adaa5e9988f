"""Atheris fuzz targets for the codec entry points and both front ends' request decoders.

``python -m tests.fuzz.fuzz_codecs TARGET [libFuzzer flags]`` runs one target;
``tests.fuzz.runner`` runs each for a bounded time in a subprocess. The contract
every target checks: an input either decodes (and round-trips where the target
can tell) or raises a ``SluiceError`` with a message; any other exception is a
crash, which libFuzzer reports and saves as a ``crash-*`` file.

The selected codec twin is fuzzed: the native one unless ``SLUICE_NO_EXTENSIONS=1``
(checked at start, so a broken build cannot quietly fuzz the Python twin). Atheris
instruments the Python decoding functions for coverage feedback; the Cython twin
runs uninstrumented but is exercised through the same entry points.
"""

from __future__ import annotations

import inspect
import json
import os
import sys
from collections.abc import Callable
from types import ModuleType

import atheris
import numpy as np

from serving import codecs
from serving.codecs import _common, _python
from serving.datatypes import DATATYPES
from serving.errors import SluiceError
from serving.grpc import codec as grpc_codec
from serving.grpc import grpc_service_pb2 as pb
from serving.http import request_codec


def _instrument(*modules: ModuleType) -> None:
    """Coverage feedback from the decoding modules' own functions.

    ``atheris.instrument_imports`` would instrument every module the front ends
    pull in (the core, the manager, ...) and cost seconds per run.
    """
    for module in modules:
        for value in vars(module).values():
            if inspect.isfunction(value) and value.__module__ == module.__name__:
                atheris.instrument_func(value)


_instrument(_common, _python, request_codec, grpc_codec)

__all__ = ["TARGETS", "expected_implementation", "main"]

# Dimensions the fuzzer may pick besides small ones. Huge ones start at 2**40 so an
# array allocated before its size check fails at once rather than filling memory.
_DIMS = [0, 1, 2, 3, 4, 7, 2**40, 2**62, 2**63 - 1, 2**63, 2**64]
_ENCODINGS = ["gzip", "x-gzip", "deflate", "identity", "br", ""]
_CONTENT_TYPES = [None, "application/json", "application/msgpack", "text/plain"]


def expected_implementation() -> str:
    return "python" if os.environ.get("SLUICE_NO_EXTENSIONS") == "1" else "native"


def _sluice_error_only(call: Callable[[], object]) -> object | None:
    try:
        return call()
    except SluiceError as exc:
        if not exc.message:
            raise AssertionError(f"{type(exc).__name__} without a message") from exc
        return None


def _shape(fdp: atheris.FuzzedDataProvider) -> tuple[int, ...]:
    rank = fdp.ConsumeIntInRange(0, 70) if fdp.ConsumeProbability() < 0.05 else None
    if rank is not None:
        return tuple(fdp.ConsumeIntInRange(0, 1) for _ in range(rank))
    return tuple(fdp.PickValueInList(_DIMS) for _ in range(fdp.ConsumeIntInRange(0, 4)))


def fuzz_binary_to_array(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    datatype = fdp.PickValueInList(list(DATATYPES))
    shape = _shape(fdp)
    buf = fdp.ConsumeBytes(atheris.ALL_REMAINING)
    arr = _sluice_error_only(lambda: codecs.binary_to_array(buf, datatype, shape, "x"))
    if isinstance(arr, np.ndarray):
        assert arr.shape == shape and arr.dtype == datatype.numpy
        # What decoded encodes back to the same bytes.
        assert bytes(codecs.array_to_binary(arr, datatype)) == buf


def fuzz_decode_bytes(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    count = fdp.PickValueInList(_DIMS) if fdp.ConsumeBool() else fdp.ConsumeIntInRange(0, 64)
    buf = fdp.ConsumeBytes(atheris.ALL_REMAINING)
    arr = _sluice_error_only(lambda: codecs.decode_bytes(buf, count, name="x"))
    if isinstance(arr, np.ndarray):
        assert len(arr) == count
        assert codecs.encode_bytes(arr) == buf


def fuzz_json_to_array(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    datatype = fdp.PickValueInList(list(DATATYPES))
    shape = _shape(fdp)
    text = fdp.ConsumeUnicodeNoSurrogates(atheris.ALL_REMAINING)
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return  # the JSON parser is the request decoder's target, not this one
    arr = _sluice_error_only(lambda: codecs.json_to_array(value, datatype, shape, name="x"))
    if isinstance(arr, np.ndarray):
        assert arr.shape == shape and arr.dtype == datatype.numpy


def fuzz_http_body(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    encoding = fdp.PickValueInList(_ENCODINGS)
    limit = fdp.ConsumeIntInRange(0, 1 << 16)
    body = fdp.ConsumeBytes(atheris.ALL_REMAINING)
    result = _sluice_error_only(lambda: request_codec.decode_body(body, encoding, limit))
    if isinstance(result, bytes):
        assert len(result) <= limit


def fuzz_http_request(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    content_type = fdp.PickValueInList(_CONTENT_TYPES)
    header_length = fdp.ConsumeIntInRange(-1, 4096) if fdp.ConsumeBool() else None
    body = fdp.ConsumeBytes(atheris.ALL_REMAINING)
    _sluice_error_only(
        lambda: request_codec.decode_infer_request(
            body,
            model_name="m",
            model_version="",
            content_type=content_type,
            header_length=header_length,
        )
    )


def fuzz_grpc_request(data: bytes) -> None:
    try:
        msg = pb.ModelInferRequest.FromString(data)
    except Exception:  # DecodeError and friends: grpc answers these before the decoder runs
        return
    _sluice_error_only(lambda: grpc_codec.decode_infer_request(msg))


TARGETS: dict[str, Callable[[bytes], None]] = {
    "binary_to_array": fuzz_binary_to_array,
    "decode_bytes": fuzz_decode_bytes,
    "json_to_array": fuzz_json_to_array,
    "http_body": fuzz_http_body,
    "http_request": fuzz_http_request,
    "grpc_request": fuzz_grpc_request,
}


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv if argv is None else argv)
    if len(args) < 2 or args[1] not in TARGETS:
        sys.exit(
            f"usage: python -m tests.fuzz.fuzz_codecs {{{','.join(TARGETS)}}} [libFuzzer flags]"
        )
    if codecs.IMPLEMENTATION != expected_implementation():
        sys.exit(
            f"fuzzing the {codecs.IMPLEMENTATION} codec twin, expected "
            f"{expected_implementation()} (SLUICE_NO_EXTENSIONS="
            f"{os.environ.get('SLUICE_NO_EXTENSIONS', '')!r})"
        )
    print(f"fuzzing {args[1]} with the {codecs.IMPLEMENTATION} codec twin", flush=True)
    atheris.Setup([args[0], *args[2:]], TARGETS[args[1]])
    atheris.Fuzz()


if __name__ == "__main__":
    main()
