"""System shared memory (Triton's extension): tensors read from and written to POSIX shm.

A client registers a region (a name for ``key``'s bytes ``offset .. offset +
byte_size``); tensors then carry ``shared_memory_region`` /
``shared_memory_offset`` / ``shared_memory_byte_size`` parameters instead of
data. Protocol-neutral: both front ends resolve inputs and the core places
outputs through the one registry of a process. Every offset and size is checked
against the region before a byte is touched, so a bad request is an
``InvalidArgument``, never an out-of-bounds read.

The region's owner may ``ftruncate`` it at any time, so the server never maps it:
touching a mapping past a shrunk file's end raises SIGBUS, which Python cannot
turn into an exception (a handler cannot resume the faulting copy), and the
process would die. Inputs are copied out with ``pread``, which returns short at
the file's end instead; outputs go in with ``pwrite`` after an ``fstat`` shows the
file still reaches their end. What remains: a file shrunk between that ``fstat``
and the ``pwrite`` is grown back to the output's end (zero-filled below it), which
its owner sees, but the server does not crash. Keys open as glibc's ``shm_open``
opens them (``O_NOFOLLOW``, one name in ``/dev/shm``) and must name a regular file,
so a planted symlink cannot reach a file elsewhere.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
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
    """One registered region: an open descriptor of ``key`` and its window
    ``offset .. offset + byte_size``.

    Uses count in ``_users`` so that unregistering never closes the descriptor under
    a read or write in progress on another thread (its number could be reused).
    """

    __slots__ = (
        "_lock",
        "_users",
        "byte_size",
        "closed",
        "fd",
        "key",
        "name",
        "offset",
        "writable",
    )

    def __init__(self, name: str, key: str, offset: int, byte_size: int) -> None:
        self.name, self.key, self.offset, self.byte_size = name, key, offset, byte_size
        self.closed = False
        self._lock = threading.Lock()
        self._users = 0
        self.fd, self.writable = _open_key(key, name)
        try:
            info = os.fstat(self.fd)
            if not stat.S_ISREG(info.st_mode):
                raise InvalidArgument(_not_regular(key))
            if offset + byte_size > info.st_size:
                raise InvalidArgument(
                    f"shared memory region {name!r}: offset {offset} + byte_size {byte_size} "
                    f"exceeds the {info.st_size} bytes of key {key!r}"
                )
        except BaseException:
            os.close(self.fd)
            raise

    def span(self, ref: SharedMemoryRef, where: str) -> tuple[int, int]:
        """Absolute ``(start, end)`` in the key's file of ``ref``, checked against the region."""
        if self.closed:
            raise NotFound(f"{where}: shared memory region {self.name!r} was unregistered")
        if ref.offset + ref.byte_size > self.byte_size:
            raise InvalidArgument(
                f"{where}: {OFFSET} {ref.offset} + {BYTE_SIZE} {ref.byte_size} exceeds the "
                f"{self.byte_size} bytes of shared memory region {self.name!r}"
            )
        start = self.offset + ref.offset
        return start, start + ref.byte_size

    @contextmanager
    def _using(self, where: str) -> Iterator[int]:
        with self._lock:
            if self.closed:
                raise NotFound(f"{where}: shared memory region {self.name!r} was unregistered")
            self._users += 1
        try:
            yield self.fd
        finally:
            with self._lock:
                self._users -= 1
                if self.closed and not self._users:
                    os.close(self.fd)

    def _truncated(self, fd: int, start: int, end: int, where: str) -> InvalidArgument:
        return InvalidArgument(
            f"{where}: shared memory region {self.name!r} was truncated after registration: "
            f"its key {self.key!r} now holds {os.fstat(fd).st_size} bytes, and the tensor "
            f"lies at bytes {start} to {end}"
        )

    def read(self, start: int, end: int, where: str) -> bytearray:
        """A copy of bytes ``start .. end`` of the key's file, as they are now."""
        data = bytearray(end - start)
        view = memoryview(data)
        with self._using(where) as fd:
            done = 0
            while done < len(data):
                got = os.preadv(fd, [view[done:]], start + done)
                if not got:
                    raise self._truncated(fd, start, end, where)
                done += got
        return data

    def check_size(self, start: int, end: int, where: str) -> None:
        """Fail when the key's file no longer reaches ``end``."""
        with self._using(where) as fd:
            if os.fstat(fd).st_size < end:
                raise self._truncated(fd, start, end, where)

    def write(self, start: int, data: bytes | memoryview, where: str) -> None:
        view = memoryview(data).cast("B")
        with self._using(where) as fd:
            # A file shrunk after this check is grown back by pwrite: seen by its
            # owner, harmless to the server (see the module's docstring).
            if os.fstat(fd).st_size < start + len(view):
                raise self._truncated(fd, start, start + len(view), where)
            done = 0
            while done < len(view):
                done += os.pwrite(fd, view[done:], start + done)

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
            if not self._users:
                os.close(self.fd)

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "key": self.key,
            "offset": self.offset,
            "byte_size": self.byte_size,
        }


_OPEN_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK  # a FIFO must not block the open


def _not_regular(key: str) -> str:
    return f"shared memory key {key!r} is not a regular file in {SHM_ROOT}"


def _open_key(key: str, name: str) -> tuple[int, bool]:
    """A descriptor of ``key``'s file, read-write where allowed, else read-only; and
    whether it is writable."""
    path = os.path.join(SHM_ROOT, _key_file(key))
    try:
        return os.open(path, os.O_RDWR | _OPEN_FLAGS), True
    except PermissionError:
        pass
    except OSError as exc:
        raise _open_error(exc, key, name) from None
    try:
        return os.open(path, os.O_RDONLY | _OPEN_FLAGS), False
    except OSError as exc:
        raise _open_error(exc, key, name) from None


def _open_error(exc: OSError, key: str, name: str) -> InvalidArgument:
    if exc.errno == errno.ELOOP:
        return InvalidArgument(
            f"shared memory key {key!r} is a symbolic link; a key must name a regular file "
            f"in {SHM_ROOT}"
        )
    if exc.errno == errno.EISDIR:
        return InvalidArgument(_not_regular(key))
    return InvalidArgument(
        f"cannot open shared memory key {key!r} for region {name!r}: {exc.strerror}"
    )


def _key_file(key: str) -> str:
    """The file name in ``SHM_ROOT`` of a key: one name, as ``shm_open`` takes it."""
    name = key[1:] if key.startswith("/") else key
    try:
        os.fsencode(name)  # refuses lone surrogates, which no file name holds
    except UnicodeEncodeError:
        name = ""
    if name in ("", ".", "..") or "/" in name or "\0" in name:
        raise InvalidArgument(
            f"shared memory key {key!r} is not a POSIX shared memory name like '/my_region'"
        )
    return name


# Each region holds an open descriptor: a cap keeps registrations from exhausting them.
MAX_REGIONS = 1024


class SharedMemoryRegistry:
    """The registered system shared-memory regions of one server process."""

    def __init__(self, max_regions: int = MAX_REGIONS) -> None:
        self._regions: dict[str, _Region] = {}
        self._max_regions = max_regions

    def register(self, name: str, key: str, offset: int, byte_size: int) -> None:
        if not name:
            raise InvalidArgument("a shared memory region needs a non-empty name")
        _non_negative(offset, "offset", f"shared memory region {name!r}")
        _non_negative(byte_size, "byte_size", f"shared memory region {name!r}")
        if byte_size == 0:
            raise InvalidArgument(f"shared memory region {name!r}: byte_size must be positive")
        if name in self._regions:
            raise InvalidArgument(f"shared memory region {name!r} is already registered")
        if len(self._regions) >= self._max_regions:
            raise InvalidArgument(
                f"shared memory region {name!r}: {len(self._regions)} regions are registered, "
                f"the most one server holds; unregister some first"
            )
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
        """A read-only array of a copy of the region's bytes: the region's owner may
        rewrite or shrink it while the request runs."""
        where = f"input {name!r}"
        region = self._region(ref, where)
        start, end = region.span(ref, where)
        data = memoryview(region.read(start, end, where)).toreadonly()
        return codecs.binary_to_array(data, datatype, shape, name)

    def check_outputs(self, refs: Mapping[str, SharedMemoryRef]) -> None:
        """Fail before inference when an output's placement is already known to be bad."""
        for name, ref in refs.items():
            where = f"output {name!r}"
            region = self._region(ref, where)
            start, end = region.span(ref, where)
            if not region.writable:
                raise InvalidArgument(
                    f"{where}: shared memory region {ref.region!r} is read-only "
                    "(its key could not be opened for writing)"
                )
            region.check_size(start, end, where)

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
            region.write(start, data, where)
            written[out.name] = size
        return written
