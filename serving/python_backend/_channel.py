"""How the server and a Python model's worker process talk.

Control messages are small JSON documents on a socket (4-byte length, then the
text); tensors never travel in them. Each side writes the tensors it sends into its
own memory-mapped file in a private directory (under /dev/shm where there is one)
and sends their places (file, offset, dtype, shape); the other side maps the same
file and reads them in place. No pickles cross: a model's process cannot hand the
server an object to run.

This module is imported by the worker too, so it imports numpy and nothing of the
server.
"""

from __future__ import annotations

import json
import mmap
import os
import socket
import struct
import time
from collections.abc import Mapping, Sequence
from itertools import count
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Arena", "ArenaReader", "ChannelClosed", "ChannelTimeout", "receive", "send"]

_LENGTH = struct.Struct("<I")
_ALIGN = 64
_MIN_ARENA = 1 << 20
_names = count()


class ChannelClosed(ConnectionError):
    """The other side went away (a worker that exited or crashed)."""


class ChannelTimeout(TimeoutError):
    """No message arrived before the deadline."""


def send(sock: socket.socket, message: Mapping[str, Any]) -> None:
    body = json.dumps(message, separators=(",", ":")).encode()
    try:
        sock.sendall(_LENGTH.pack(len(body)) + body)
    except OSError as exc:
        raise ChannelClosed(str(exc)) from exc


def _read_exactly(sock: socket.socket, size: int, deadline: float | None) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ChannelTimeout()
            sock.settimeout(left)
        else:
            sock.settimeout(None)
        try:
            chunk = sock.recv(size - len(chunks))
        except TimeoutError:
            raise ChannelTimeout() from None
        except OSError as exc:
            raise ChannelClosed(str(exc)) from exc
        if not chunk:
            raise ChannelClosed("the other side closed the channel")
        chunks += chunk
    return bytes(chunks)


def receive(sock: socket.socket, deadline: float | None = None) -> dict[str, Any]:
    """The next message; ``deadline`` is a ``time.monotonic()`` instant (None: wait)."""
    (length,) = _LENGTH.unpack(_read_exactly(sock, _LENGTH.size, deadline))
    message = json.loads(_read_exactly(sock, length, deadline))
    if not isinstance(message, dict):
        raise ChannelClosed("malformed message")
    return message


def _encode_bytes(array: np.ndarray) -> bytes:
    """BYTES elements as Triton lays them out: a 4-byte little-endian length, the bytes."""
    parts = []
    for item in array.ravel():
        data = item if isinstance(item, bytes) else str(item).encode()
        parts.append(_LENGTH.pack(len(data)))
        parts.append(data)
    return b"".join(parts)


def _decode_bytes(buffer: memoryview, shape: Sequence[int]) -> np.ndarray:
    items = []
    offset = 0
    total = int(np.prod(shape)) if shape else 1
    for _ in range(total):
        (length,) = _LENGTH.unpack_from(buffer, offset)
        offset += _LENGTH.size
        items.append(bytes(buffer[offset : offset + length]))
        offset += length
    out = np.empty(total, dtype=object)
    out[:] = items
    return out.reshape(tuple(shape))


class Arena:
    """One side's outgoing tensors: a file in ``directory``, grown (as a new file) when
    a message does not fit. Whatever was written before is overwritten by the next
    write, so the reader copies what it keeps."""

    def __init__(self, directory: Path, tag: str) -> None:
        self._directory = directory
        self._tag = tag
        self._path: Path | None = None
        self._map: mmap.mmap | None = None
        self._size = 0

    def write(self, batches: Sequence[Mapping[str, np.ndarray]]) -> tuple[str, list[list[Any]]]:
        """Lay out each mapping's tensors; return the file and each mapping's places."""
        prepared: list[list[tuple[str, str, tuple[int, ...], Any, int]]] = []
        total = 0
        for tensors in batches:
            entries = []
            for name, value in tensors.items():
                array = np.asarray(value)
                if array.dtype == object or array.dtype.kind in "SU":
                    payload: Any = _encode_bytes(array)
                    kind, nbytes = "BYTES", len(payload)
                else:
                    payload = np.ascontiguousarray(array)
                    kind, nbytes = payload.dtype.str, payload.nbytes
                entries.append((name, kind, tuple(array.shape), payload, total))
                total += (nbytes + _ALIGN - 1) // _ALIGN * _ALIGN
            prepared.append(entries)
        if total > self._size or self._map is None:
            self._grow(max(total, self._size * 2, _MIN_ARENA))
        assert self._map is not None and self._path is not None
        places = []
        for entries in prepared:
            spots = []
            for name, kind, shape, payload, offset in entries:
                if kind == "BYTES":
                    self._map[offset : offset + len(payload)] = payload
                    nbytes = len(payload)
                else:
                    nbytes = payload.nbytes
                    if nbytes:
                        target = np.ndarray(payload.shape, payload.dtype, self._map, offset)
                        target[...] = payload
                spots.append([name, kind, list(shape), offset, nbytes])
            places.append(spots)
        return str(self._path), places

    def _grow(self, size: int) -> None:
        old = self._path
        path = self._directory / f"{self._tag}-{os.getpid()}-{next(_names)}"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, size)
            self._map = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self._path, self._size = path, size
        if old is not None:
            old.unlink(missing_ok=True)  # the reader's mapping stays valid until it drops it

    def close(self) -> None:
        if self._path is not None:
            self._path.unlink(missing_ok=True)
        self._map = None
        self._path = None


class ArenaReader:
    """Maps the other side's arena files (only inside ``directory``) and reads tensors."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory.resolve()
        self._maps: dict[str, mmap.mmap] = {}

    def read(self, path: str, places: Sequence[Sequence[Any]], *, copy: bool) -> dict[str, Any]:
        """The tensors at ``places`` of ``path``; views into the file unless ``copy``."""
        buffer = self._map(path)
        out: dict[str, Any] = {}
        for name, kind, shape, offset, nbytes in places:
            if offset < 0 or nbytes < 0 or offset + nbytes > len(buffer):
                raise ValueError(f"tensor {name!r} lies outside its shared-memory file")
            if kind == "BYTES":
                out[name] = _decode_bytes(memoryview(buffer)[offset : offset + nbytes], shape)
                continue
            dtype = np.dtype(kind)
            if dtype.hasobject or int(np.prod(shape)) * dtype.itemsize != nbytes:
                raise ValueError(f"tensor {name!r}: its shape and dtype do not match its size")
            array = np.ndarray(tuple(shape), dtype, buffer, offset)
            out[name] = array.copy() if copy else array
        return out

    def _map(self, path: str) -> mmap.mmap:
        found = self._maps.get(path)
        if found is not None:
            return found
        resolved = Path(path).resolve()
        if resolved.parent != self._directory:
            raise ValueError(f"shared-memory file {path!r} is outside the channel's directory")
        tag = resolved.name.split("-", 1)[0]
        for known in [p for p in self._maps if Path(p).name.split("-", 1)[0] == tag]:
            del self._maps[known]  # replaced by a larger file; views keep the old mapping alive
        fd = os.open(resolved, os.O_RDWR)
        try:
            mapping = mmap.mmap(fd, os.fstat(fd).st_size)
        finally:
            os.close(fd)
        self._maps[path] = mapping
        return mapping
