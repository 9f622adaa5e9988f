"""System shared memory (Triton's extension): tensors read from and written to POSIX shm.

A client registers a region (a name for ``key``'s bytes ``offset .. offset +
byte_size``); tensors then carry ``shared_memory_region`` /
``shared_memory_offset`` / ``shared_memory_byte_size`` parameters instead of
data. Protocol-neutral: both front ends resolve inputs and the core places
outputs through the one registry of a process. Every offset and size is checked
against the region before a byte is touched, so a bad request is an
``InvalidArgument``, never an out-of-bounds read.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from serving import codecs
from serving.datatypes import DataType, by_name
from serving.errors import InvalidArgument, NotFound, Unsupported
from serving.types import InferOutput, InferRequest, InferResponse

__all__ = [
    "REGION",
    "SHM_ROOT",
    "SharedMemoryRef",
    "SharedMemoryRegistry",
    "disabled_error",
    "output_references",
    "placed_parameters",
    "reference",
]

REGION = "shared_memory_region"
OFFSET = "shared_memory_offset"
BYTE_SIZE = "shared_memory_byte_size"
SHM_ROOT = "/dev/shm"


def disabled_error() -> Unsupported:
    return Unsupported(
        "system shared memory is off on this server; start it with --allow-shared-memory"
    )


@dataclass(frozen=True, slots=True)
class SharedMemoryRef:
    """Where one tensor lives: ``byte_size`` bytes at ``offset`` within a registered region."""

    region: str
    offset: int
    byte_size: int

    def parameters(self, byte_size: int | None = None) -> dict[str, Any]:
        """The tensor parameters that describe this placement on the wire."""
        return {
            REGION: self.region,
            OFFSET: self.offset,
            BYTE_SIZE: self.byte_size if byte_size is None else byte_size,
        }


def _non_negative(value: Any, key: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidArgument(f"{where}: {key} must be a non-negative integer, got {value!r}")
    return value


def reference(parameters: Mapping[str, Any], where: str) -> SharedMemoryRef | None:
    """The shared-memory placement a tensor's parameters ask for, or None."""
    if REGION not in parameters:
        for key in (OFFSET, BYTE_SIZE):
            if key in parameters:
                raise InvalidArgument(f"{where} has {key} but no {REGION}")
        return None
    region = parameters[REGION]
    if not isinstance(region, str) or not region:
        raise InvalidArgument(f"{where}: {REGION} must be a non-empty string, got {region!r}")
    if BYTE_SIZE not in parameters:
        raise InvalidArgument(f"{where} names {REGION} {region!r} but no {BYTE_SIZE}")
    offset = _non_negative(parameters.get(OFFSET, 0), OFFSET, where)
    size = _non_negative(parameters[BYTE_SIZE], BYTE_SIZE, where)
    return SharedMemoryRef(region, offset, size)


def output_references(request: InferRequest) -> dict[str, SharedMemoryRef]:
    """Requested outputs that go to shared memory, by output name."""
    refs = {}
    for out in request.outputs:
        ref = reference(out.parameters, f"output {out.name!r}")
        if ref is not None:
            refs[out.name] = ref
    return refs


def _wire_size(out: InferOutput) -> int:
    datatype = by_name(out.datatype)
    if datatype.is_bytes:
        return len(codecs.encode_bytes(out.data))
    return int(out.data.size) * datatype.itemsize


def placed_parameters(ref: SharedMemoryRef, out: InferOutput) -> dict[str, Any]:
    """The parameters of an output the core wrote to shared memory (its data stays there)."""
    return ref.parameters(_wire_size(out))


class _Region:
    """One registered region: a mapping of ``key`` up to ``offset + byte_size``."""

    __slots__ = ("byte_size", "closed", "key", "map", "name", "offset", "writable")

    def __init__(self, name: str, key: str, offset: int, byte_size: int) -> None:
        self.name, self.key, self.offset, self.byte_size = name, key, offset, byte_size
        self.closed = False
        path = os.path.join(SHM_ROOT, _key_file(key))
        try:
            fd = os.open(path, os.O_RDWR)
            self.writable = True
        except PermissionError:
            fd = self._open_read_only(path)
        except OSError as exc:
            raise InvalidArgument(
                f"cannot open shared memory key {key!r} for region {name!r}: {exc.strerror}"
            ) from None
        try:
            size = os.fstat(fd).st_size
            if offset + byte_size > size:
                raise InvalidArgument(
                    f"shared memory region {name!r}: offset {offset} + byte_size {byte_size} "
                    f"exceeds the {size} bytes of key {key!r}"
                )
            access = mmap.ACCESS_WRITE if self.writable else mmap.ACCESS_READ
            self.map = mmap.mmap(fd, offset + byte_size, access=access)
        finally:
            os.close(fd)

    def _open_read_only(self, path: str) -> int:
        self.writable = False
        try:
            return os.open(path, os.O_RDONLY)
        except OSError as exc:
            raise InvalidArgument(
                f"cannot open shared memory key {self.key!r} for region {self.name!r}: "
                f"{exc.strerror}"
            ) from None

    def span(self, ref: SharedMemoryRef, where: str) -> tuple[int, int]:
        """Absolute ``(start, end)`` in the mapping of ``ref``, checked against the region."""
        if self.closed:
            raise NotFound(f"{where}: shared memory region {self.name!r} was unregistered")
        if ref.offset + ref.byte_size > self.byte_size:
            raise InvalidArgument(
                f"{where}: {OFFSET} {ref.offset} + {BYTE_SIZE} {ref.byte_size} exceeds the "
                f"{self.byte_size} bytes of shared memory region {self.name!r}"
            )
        start = self.offset + ref.offset
        return start, start + ref.byte_size

    def close(self) -> None:
        self.closed = True
        try:
            self.map.close()
        except BufferError:
            # Arrays of requests in flight still view the mapping; it is unmapped
            # when the last of them is dropped.
            pass

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "key": self.key,
            "offset": self.offset,
            "byte_size": self.byte_size,
        }


def _key_file(key: str) -> str:
    name = key[1:] if key.startswith("/") else key
    if not name or "/" in name or name in (".", ".."):
        raise InvalidArgument(
            f"shared memory key {key!r} is not a POSIX shared memory name like '/my_region'"
        )
    return name


class SharedMemoryRegistry:
    """The registered system shared-memory regions of one server process."""

    def __init__(self) -> None:
        self._regions: dict[str, _Region] = {}

    def register(self, name: str, key: str, offset: int, byte_size: int) -> None:
        if not name:
            raise InvalidArgument("a shared memory region needs a non-empty name")
        _non_negative(offset, "offset", f"shared memory region {name!r}")
        _non_negative(byte_size, "byte_size", f"shared memory region {name!r}")
        if byte_size == 0:
            raise InvalidArgument(f"shared memory region {name!r}: byte_size must be positive")
        if name in self._regions:
            raise InvalidArgument(f"shared memory region {name!r} is already registered")
        self._regions[name] = _Region(name, key, offset, byte_size)

    def unregister(self, name: str = "") -> None:
        """Drop one region, or every region when ``name`` is empty (unknown names are fine,
        as in Triton)."""
        names = [name] if name else list(self._regions)
        for n in names:
            region = self._regions.pop(n, None)
            if region is not None:
                region.close()

    def status(self, name: str = "") -> list[dict[str, Any]]:
        if name:
            region = self._regions.get(name)
            if region is None:
                raise NotFound(f"shared memory region {name!r} is not registered")
            return [region.status()]
        return [r.status() for r in sorted(self._regions.values(), key=lambda r: r.name)]

    def close(self) -> None:
        self.unregister()

    def _region(self, ref: SharedMemoryRef, where: str) -> _Region:
        region = self._regions.get(ref.region)
        if region is None:
            raise InvalidArgument(f"{where}: shared memory region {ref.region!r} is not registered")
        return region

    # -- tensors -----------------------------------------------------------

    def read(
        self, ref: SharedMemoryRef, datatype: DataType, shape: tuple[int, ...], name: str
    ) -> np.ndarray:
        """A read-only array over the region's bytes (no copy for fixed-size datatypes)."""
        where = f"input {name!r}"
        region = self._region(ref, where)
        start, end = region.span(ref, where)
        view = memoryview(region.map)[start:end].toreadonly()
        return codecs.binary_to_array(view, datatype, shape, name)

    def check_outputs(self, refs: Mapping[str, SharedMemoryRef]) -> None:
        """Fail before inference when an output's placement is already known to be bad."""
        for name, ref in refs.items():
            where = f"output {name!r}"
            region = self._region(ref, where)
            region.span(ref, where)
            if not region.writable:
                raise InvalidArgument(
                    f"{where}: shared memory region {ref.region!r} is mapped read-only "
                    "(its key could not be opened for writing)"
                )

    def write_outputs(
        self, refs: Mapping[str, SharedMemoryRef], response: InferResponse
    ) -> dict[str, int]:
        """Copy outputs into their regions; return the bytes written per output name."""
        written: dict[str, int] = {}
        for out in response.outputs:
            ref = refs.get(out.name)
            if ref is None:
                continue
            where = f"output {out.name!r}"
            region = self._region(ref, where)
            start, end = region.span(ref, where)
            data = codecs.array_to_binary(out.data, by_name(out.datatype))
            size = memoryview(data).nbytes
            if size > end - start:
                raise InvalidArgument(
                    f"{where} needs {size} bytes but {BYTE_SIZE} is {ref.byte_size}"
                )
            region.map[start : start + size] = data
            written[out.name] = size
        return written
