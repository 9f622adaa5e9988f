"""The fleet side of collected data: reassemble devices' chunks into a collection directory.

Each chunk is checked on arrival (its sha256, its header against the topic and against
the file's earlier chunks) and kept on disk under ``OUT/_incoming`` (skipped by Parquet
readers) until the file is whole; the file is then checked against its sha256, written
beside its final name, fsynced and renamed into place, so ``sluice drift --current OUT``
never sees half a file. A chunk is acknowledged to the broker only once it is on disk or
refused, so a receiver that dies loses nothing of a persistent session. Duplicates (QoS
1 is at least once, and a device re-sends a file taken in just before a crash) are
recognised by the file's sha256 and dropped.

Layout: ``OUT/model=<m>/version=<v>/date=<d>/<device>--part-<segment>.parquet`` (every
device together, for drift over the fleet) or, with ``per_device``,
``OUT/device=<id>/model=<m>/version=<v>/date=<d>/part-<segment>.parquet``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from edge_agent._chunk import PATH, Chunk, ChunkError, decode_chunk
from edge_agent._durable import fsync_dir
from edge_agent._topics import DEVICE_ID, Topics

__all__ = ["CollectReceiver", "Incomplete", "Received", "receive_collected"]

log = logging.getLogger("sluice.edge.receive")

INCOMING = "_incoming"
_SAME = ("path", "digest", "size", "rows", "chunks")  # every chunk of a file agrees on these


@dataclass(frozen=True, slots=True)
class Received:
    device: str
    path: str  # as the device named it
    file: Path  # where it landed
    rows: int


@dataclass(frozen=True, slots=True)
class Incomplete:
    device: str
    path: str
    digest: str
    count: int
    missing: tuple[int, ...]  # 0-based indices
    idle_secs: float  # since its last chunk arrived

    def __str__(self) -> str:
        shown = ", ".join(str(i + 1) for i in self.missing[:20]) + (" ..." if len(self.missing) > 20 else "")  # fmt: skip
        return (
            f"{self.device}: {self.path} (sha256 {self.digest[:12]}) is incomplete: chunk(s) "
            f"{shown} of {self.count} missing, the last chunk came {self.idle_secs:.0f}s ago"
        )


def _write_durably(path: Path, parts: list[bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as f:
        for part in parts:
            f.write(part)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


class CollectReceiver:
    def __init__(self, out: Path, *, prefix: str = "sluice/devices", per_device: bool = False) -> None:  # fmt: skip
        self.out = out
        self.prefix = prefix
        self.per_device = per_device
        out.mkdir(parents=True, exist_ok=True)

    def _where(self, topic: str) -> tuple[str, str, str]:
        head = self.prefix + "/"
        parts = topic[len(head) :].split("/") if topic.startswith(head) else []
        if len(parts) != 4 or parts[1] != "collect" or not DEVICE_ID.match(parts[0]):
            raise ChunkError(f"topic {topic!r} is not {head}<device>/collect/<model>/<version>")
        return parts[0], unquote(parts[2]), unquote(parts[3])

    def final_path(self, device: str, path: str) -> Path:
        match = PATH.match(path)
        assert match is not None
        if self.per_device:
            return self.out / f"device={device}" / path
        return self.out / path.rsplit("/", 1)[0] / f"{device}--{match['name']}"

    def handle(self, topic: str, payload: bytes) -> Received | None:
        """Keep one message's chunk; returns the file once it is whole (None before, and
        for a duplicate). Raises ChunkError saying why a chunk or a file is refused."""
        device, model, version = self._where(topic)
        try:
            chunk = decode_chunk(payload)
        except ChunkError as exc:
            raise ChunkError(f"{device}: {exc}") from None
        where = f"{device}: {chunk.path} chunk {chunk.index + 1}/{chunk.count}"
        if chunk.device != device:
            raise ChunkError(f"{where}: the header names device {chunk.device!r}, the topic {device!r}")  # fmt: skip
        match = PATH.match(chunk.path)
        assert match is not None  # decode_chunk checked it
        if (match["model"], match["version"]) != (model, version):
            raise ChunkError(f"{where}: the path names {match['model']}/{match['version']}, the topic {model}/{version}")  # fmt: skip
        device_dir = self.out / INCOMING / device
        if (device_dir / "done" / chunk.file_id).exists():
            return None  # a duplicate of a file already written
        staging = device_dir / chunk.file_id
        meta_path = staging / "file.json"
        header = chunk.header()
        if meta_path.exists():
            meta = json.loads(meta_path.read_text())
            for name in _SAME:
                if meta[name] != header[name]:
                    raise ChunkError(f"{where}: {name} {header[name]!r} differs from its earlier chunks' {meta[name]!r}")  # fmt: skip
        else:
            _write_durably(meta_path, [json.dumps({k: header[k] for k in _SAME}).encode()])
        part = staging / f"{chunk.index}.chunk"
        if not part.exists():
            _write_durably(part, [json.dumps({"offset": chunk.offset}).encode() + b"\n" + chunk.data])  # fmt: skip
        if sum(1 for _ in staging.glob("*.chunk")) < chunk.count:
            return None
        return self._assemble(device, chunk, staging)

    def _assemble(self, device: str, chunk: Chunk, staging: Path) -> Received:
        digest = hashlib.sha256()
        parts = []
        offset = 0
        for index in range(chunk.count):
            head, _, data = (staging / f"{index}.chunk").read_bytes().partition(b"\n")
            if json.loads(head)["offset"] != offset:
                self._discard(staging)
                raise ChunkError(f"{device}: {chunk.path}: chunk {index + 1}/{chunk.count} starts at byte {json.loads(head)['offset']}, expected {offset}; file refused")  # fmt: skip
            digest.update(data)
            parts.append(data)
            offset += len(data)
        if offset != chunk.size or digest.hexdigest() != chunk.digest:
            self._discard(staging)
            raise ChunkError(
                f"{device}: {chunk.path}: the {chunk.count} chunks reassemble to {offset} bytes "
                f"with sha256 {digest.hexdigest()[:12]}..., the device sent {chunk.size} bytes "
                f"with sha256 {chunk.digest[:12]}...; file refused"
            )
        final = self.final_path(device, chunk.path)
        _write_durably(final, parts)
        done = staging.parent / "done" / chunk.file_id
        done.parent.mkdir(exist_ok=True)
        done.touch()
        shutil.rmtree(staging, ignore_errors=True)
        return Received(device, chunk.path, final, chunk.rows)

    @staticmethod
    def _discard(staging: Path) -> None:
        shutil.rmtree(staging, ignore_errors=True)

    def incomplete(self, now: float | None = None) -> list[Incomplete]:
        """Files some of whose chunks have not arrived (yet, or ever: a chunk refused as
        altered, or a file the device dropped while sending it)."""
        now = time.time() if now is None else now
        found = []
        for meta_path in sorted((self.out / INCOMING).glob("*/*/file.json")):
            staging = meta_path.parent
            meta = json.loads(meta_path.read_text())
            have = {int(p.stem) for p in staging.glob("*.chunk")}
            last = max((p.stat().st_mtime for p in staging.iterdir()), default=now)
            missing = tuple(i for i in range(meta["chunks"]) if i not in have)
            found.append(Incomplete(staging.parent.name, meta["path"], meta["digest"], meta["chunks"], missing, now - last))  # fmt: skip
        return found


def receive_collected(
    broker: str,
    out: Path,
    *,
    device: str | None = None,
    prefix: str = "sluice/devices",
    client_id: str = "sluice-collect-receiver",
    per_device: bool = False,
    idle_secs: float | None = None,
    on_file: Any = None,
    on_refused: Any = None,
    stop: threading.Event | None = None,
) -> CollectReceiver:
    """Subscribe (a persistent session under ``client_id``: what arrives while the
    receiver is away waits at the broker) and write every whole file under ``out``.
    Returns after ``idle_secs`` without a message, or when ``stop`` is set.
    ``on_file(Received)``; ``on_refused(reason)`` (default: logged as an error)."""
    from edge_agent._link import broker_address, make_client

    receiver = CollectReceiver(out, prefix=prefix, per_device=per_device)
    client = make_client(broker, client_id, clean=False)
    client.manual_ack_set(True)
    last = [time.monotonic()]
    stop = stop or threading.Event()

    def on_connect(client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:  # fmt: skip
        if not reason_code.is_failure:
            client.subscribe(Topics.collect_filter(prefix, device), qos=1)

    def on_message(client: Any, userdata: Any, message: Any) -> None:
        last[0] = time.monotonic()
        try:
            got = receiver.handle(message.topic, bytes(message.payload))
        except ChunkError as exc:
            if on_refused is None:
                log.error("refused: %s", exc)
            else:
                on_refused(str(exc))
        except OSError as exc:  # not acknowledged: the broker sends it again
            log.error("cannot keep a chunk from %s: %s", message.topic, exc)
            return
        else:
            if got is not None and on_file is not None:
                on_file(got)
        client.ack(message.mid, message.qos)

    client.on_connect = on_connect
    client.on_message = on_message
    client.reconnect_delay_set(1, 30)
    host, port = broker_address(broker)
    client.connect(host, port, keepalive=30)
    client.loop_start()
    try:
        while not stop.wait(0.05):
            if idle_secs is not None and time.monotonic() - last[0] >= idle_secs:
                break
    finally:
        client.disconnect()
        client.loop_stop()
    return receiver
