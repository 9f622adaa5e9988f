"""The wire format of collected Parquet files sent from a device: one MQTT message per chunk.

MQTT 3.1.1 has no message properties, so each payload carries its own header: one line
of JSON (it has no newline inside), a ``\\n``, then the chunk's bytes. The header names
the file (its path under the collection directory and the sha256 of the whole file),
the chunk's place (``chunk`` of ``chunks``, at ``offset``) and the chunk's own sha256,
so a receiver verifies each chunk on arrival and the whole file once reassembled, and
recognises a duplicate (QoS 1 is at least once) by ``id``.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["FORMAT", "PATH", "Chunk", "ChunkError", "decode_chunk", "encode_chunk", "split"]

FORMAT = "sluice.collect/1"

# A collection file's path, relative to the collection directory; nothing else is sent
# or accepted (a receiver joins it under its own directory).
PATH = re.compile(
    r"^model=(?P<model>[^/\x00]+)/version=(?P<version>[0-9]+)/date=(?P<date>\d{4}-\d{2}-\d{2})"
    r"/(?P<name>part-[A-Za-z0-9_.-]+\.parquet)$"
)


class ChunkError(ValueError):
    """A message that is not a valid chunk; the text says what is wrong."""


@dataclass(frozen=True, slots=True)
class Chunk:
    id: str  # "<file id>-<index>": the same on every re-send
    device: str
    path: str  # model=<m>/version=<v>/date=<d>/part-<segment>.parquet
    digest: str  # sha256 hex of the whole file
    size: int  # bytes of the whole file
    rows: int  # rows in the whole file
    index: int  # 0-based
    count: int  # chunks in the file
    offset: int
    sha256: str  # of this chunk's bytes
    data: bytes

    @property
    def file_id(self) -> str:
        """Names the file across re-sends: its path and its content (two files with the
        same bytes under different paths are two files)."""
        return file_id(self.path, self.digest)

    def header(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "id": self.id, "device": self.device, "path": self.path,
            "digest": self.digest, "size": self.size, "rows": self.rows, "chunk": self.index,
            "chunks": self.count, "offset": self.offset, "sha256": self.sha256,
        }  # fmt: skip


def file_id(path: str, digest: str) -> str:
    return hashlib.sha256(f"{path}\0{digest}".encode()).hexdigest()[:32]


def split(device: str, path: str, content: bytes, rows: int, chunk_bytes: int) -> list[Chunk]:
    """``content`` (a whole file) as chunks of at most ``chunk_bytes`` bytes."""
    if not PATH.match(path):
        raise ChunkError(f"{path!r} is not a collection file path (model=<m>/version=<v>/date=<d>/part-*.parquet)")  # fmt: skip
    digest = hashlib.sha256(content).hexdigest()
    count = max(1, -(-len(content) // chunk_bytes))
    chunks = []
    for index in range(count):
        data = content[index * chunk_bytes : (index + 1) * chunk_bytes]
        chunks.append(Chunk(
            f"{file_id(path, digest)}-{index}", device, path, digest, len(content), rows, index, count,
            index * chunk_bytes, hashlib.sha256(data).hexdigest(), data,
        ))  # fmt: skip
    return chunks


def encode_chunk(chunk: Chunk) -> bytes:
    return json.dumps(chunk.header(), separators=(",", ":")).encode() + b"\n" + chunk.data


def _field(header: dict[str, Any], name: str, kind: type) -> Any:
    value = header.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ChunkError(f"header field {name!r} must be a {kind.__name__}, not {value!r}")
    return value


def decode_chunk(payload: bytes) -> Chunk:
    """The chunk in a message; raises ChunkError saying what is wrong, including a chunk
    whose bytes do not match its sha256 (altered on the way)."""
    head, sep, data = payload.partition(b"\n")
    if not sep:
        raise ChunkError("no header line (a JSON object, then a newline, then the bytes)")
    try:
        header = json.loads(head)
    except ValueError as exc:
        raise ChunkError(f"the header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise ChunkError("the header is not a JSON object")
    if header.get("format") != FORMAT:
        raise ChunkError(f"format {header.get('format')!r}, expected {FORMAT!r}")
    chunk = Chunk(
        _field(header, "id", str), _field(header, "device", str), _field(header, "path", str),
        _field(header, "digest", str), _field(header, "size", int), _field(header, "rows", int),
        _field(header, "chunk", int), _field(header, "chunks", int), _field(header, "offset", int),
        _field(header, "sha256", str), data,
    )  # fmt: skip
    where = f"{chunk.path} (sha256 {chunk.digest[:12]}) chunk {chunk.index + 1}/{chunk.count}"
    if not PATH.match(chunk.path):
        raise ChunkError(f"path {chunk.path!r} is not a collection file path")
    if not re.fullmatch(r"[0-9a-f]{64}", chunk.digest):
        raise ChunkError(f"{chunk.path}: digest {chunk.digest!r} is not a sha256 hex digest")
    if not 0 <= chunk.index < chunk.count or chunk.offset < 0 or chunk.offset + len(data) > chunk.size:  # fmt: skip
        raise ChunkError(f"{where}: offset {chunk.offset} + {len(data)} bytes does not fit a {chunk.size}-byte file")  # fmt: skip
    if chunk.id != f"{chunk.file_id}-{chunk.index}":
        raise ChunkError(f"{where}: id {chunk.id!r} is not {chunk.file_id}-{chunk.index} (the file id, then the chunk index)")  # fmt: skip
    actual = hashlib.sha256(data).hexdigest()
    if actual != chunk.sha256:
        raise ChunkError(f"{where}: its {len(data)} bytes hash to sha256 {actual[:12]}..., the header says {chunk.sha256[:12]}...: altered on the way")  # fmt: skip
    return chunk
