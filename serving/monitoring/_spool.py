"""The local spool: append-only segment files of framed records.

A segment is written as ``<start-ns>-<pid>.open`` under an exclusive ``flock``
and renamed ``.seg`` when closed. Each frame is ``<u32 length><u32 crc32>`` and
the payload; every batch of appends is flushed to the OS, so a SIGKILL loses
nothing already appended (the page cache outlives the process) and a frame torn
by a power cut fails its checksum and ends the segment there.

A process that finds a ``.open`` segment it can lock knows its writer is dead
and closes it, so a restart (or another worker) rolls what a crashed one left.
"""

from __future__ import annotations

import fcntl
import os
import struct
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

__all__ = ["Segment", "Spool", "read_frames"]

_HEADER = struct.Struct("<II")
OPEN = ".open"
CLOSED = ".seg"


def read_frames(path: Path) -> Iterator[bytes]:
    """Every intact frame of a segment, in order; stops at the first torn one."""
    with path.open("rb") as f:
        while True:
            head = f.read(_HEADER.size)
            if len(head) < _HEADER.size:
                return
            length, crc = _HEADER.unpack(head)
            payload = f.read(length)
            if len(payload) < length or zlib.crc32(payload) != crc:
                return
            yield payload


class Segment:
    """The segment being written; only the writer thread touches it."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / f"{time.time_ns():020d}-{os.getpid()}{OPEN}"
        self._file: BinaryIO = self.path.open("xb")
        fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.created = time.monotonic()
        self.bytes = 0
        self.frames = 0

    def append(self, payload: bytes) -> None:
        self._file.write(_HEADER.pack(len(payload), zlib.crc32(payload)))
        self._file.write(payload)
        self.bytes += _HEADER.size + len(payload)
        self.frames += 1

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> Path:
        """Close and rename to ``.seg``; returns the closed path."""
        self._file.flush()
        os.fsync(self._file.fileno())
        closed = self.path.with_suffix(CLOSED)
        os.rename(self.path, closed)
        self._file.close()  # releases the lock after the rename, so no one rolls it twice
        return closed


class Spool:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def new_segment(self) -> Segment:
        return Segment(self.directory)

    def adopt_orphans(self) -> int:
        """Close every ``.open`` segment whose writer is gone (its lock is free)."""
        adopted = 0
        for path in sorted(self.directory.glob(f"*{OPEN}")):
            try:
                f = path.open("rb")
            except FileNotFoundError:
                continue
            with f:
                try:
                    fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live writer holds it
                try:
                    os.rename(path, path.with_suffix(CLOSED))
                    adopted += 1
                except FileNotFoundError:
                    pass
        return adopted

    def closed_segments(self) -> list[Path]:
        """Closed segments, oldest first (names start with their creation time)."""
        return sorted(self.directory.glob(f"*{CLOSED}"))

    def size(self) -> int:
        total = 0
        for path in self.directory.iterdir():
            try:
                total += path.stat().st_size
            except FileNotFoundError:
                pass
        return total

    @contextmanager
    def claim(self, path: Path) -> Iterator[bool]:
        """Lock a closed segment for rolling: False when another process holds it or
        has already rolled it."""
        try:
            f = path.open("rb")
        except FileNotFoundError:
            yield False
            return
        with f:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield path.exists()
