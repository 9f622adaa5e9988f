"""The data collector: sampled on the request path, written off it.

The request path decides sampling (once per request) and appends a record's fields
and references to its arrays to a bounded queue (a deque: no lock, no wake-up), one
``extend`` per record, so that it keeps no object of its own alive (nothing for the
cyclic garbage collector to count and walk while the record waits: keeping the
request's tuples made the collector run over a hundred times more often); when the
queue is full the record is dropped and counted, and the request goes on.
One writer thread looks at the queue every ``POLL_SECS`` and drains it once it holds
``DRAIN_RECORDS`` records or ``DRAIN_SECS`` have passed since the last drain (or at
once when asked): fewer, larger batches cost less per record and wake the writer (and
make it take the GIL) less often. It encodes what it drained as Arrow record batches,
appends them to the spool, rolls closed segments into Parquet, enforces the disk caps
and feeds the optional sink and the listeners that want the model version.

A crash loses at most what is still in the queue; what reached the spool is
rolled by the next process that starts on the same destination.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from serving.monitoring._config import CollectConfig, CollectConfigError, sampled
from serving.monitoring._destination import open_destination
from serving.monitoring._parquet import OutputIndex, roll_segment
from serving.monitoring._record import ERROR, OK, CollectRecord, encode, frame_records
from serving.monitoring._spool import Segment, Spool, read_frames

__all__ = ["DROP_REASONS", "Collector", "CollectorOptions"]

log = logging.getLogger("sluice.collect")

DROP_REASONS = ("queue_full", "too_large", "spool_cap", "output_cap", "write_failed", "sink_failed")
SPOOL_DIR = "_spool"  # underscore: pyarrow, pandas, polars and DuckDB skip it when reading

POLL_SECS = 0.05  # how often the writer looks at the queue
DRAIN_RECORDS = 1024  # ... and drains it once it holds this many records
DRAIN_SECS = 0.25  # ... or this long after the last drain

Listener = Callable[[CollectRecord, CollectConfig], None]
Wants = Callable[[str, str], bool]
# A record as the writer takes it from the queue: config, model, version, request id
# ("" for none), timestamp (us), error (None when answered), latency (ns), inputs,
# outputs (mappings of name to array). In the queue it is flat: the first seven, the
# number of inputs and of outputs, then each tensor's name and array.
Pending = tuple[CollectConfig, str, str, str, int, "str | None", int, Any, Any]
_HEAD = 9  # items before the tensors' names and arrays


@dataclass(frozen=True, slots=True)
class CollectorOptions:
    destination: Path | str  # a local directory, a file:// URL or any fsspec URL
    queue_size: int = 10_000
    segment_bytes: int = 16 * 1024 * 1024  # a segment closes (and rolls) past this size
    roll_secs: float = 60.0  # ... or this long after its first record
    spool_max_bytes: int = 1024 * 1024 * 1024
    output_max_bytes: int = 0  # 0: no cap on the Parquet output
    default_sample_rate: float = 1.0
    spool_dir: Path | None = None  # default: <destination>/_spool; needed for a URL


class Collector:
    def __init__(
        self,
        options: CollectorOptions,
        *,
        registry: Any = None,
        sink: Any = None,
        on_dropping: Callable[[str, int], None] | None = None,
    ) -> None:
        """``registry``: a prometheus_client CollectorRegistry for the counters;
        ``sink``: an object with ``send(record, config)`` (e.g. CloudEventsSink), called
        from the writer thread; ``on_dropping(reason, count)``: told, at most once a
        minute per reason, that data is being dropped."""
        self.options = options
        dest = open_destination(options.destination)
        self.output = dest
        self.destination: Path | str = dest.local if dest.local is not None else dest.url
        if dest.local is not None:
            dest.local.mkdir(parents=True, exist_ok=True)
            spool_dir = options.spool_dir or dest.local / SPOOL_DIR
        elif options.spool_dir is None:
            raise ValueError(f"collecting to {dest.url!r} needs a local spool directory")
        else:
            spool_dir = options.spool_dir
        self.spool = Spool(spool_dir)
        self._queue: deque[Any] = deque()  # flat records (see Pending)
        self._queue_size = options.queue_size
        self._pushed = 0  # records appended (the request path's thread)
        self._popped = 0  # records taken (the writer)
        self._drain_records = max(1, min(DRAIN_RECORDS, options.queue_size // 4))
        self._configs: dict[tuple[str, str], CollectConfig] = {}
        self._listeners: list[tuple[Listener, Wants | None]] = []
        self._listening: dict[tuple[str, str], list[Listener]] = {}  # writer thread only
        self._sink = sink
        self._on_dropping = on_dropping
        self._dropped = dict.fromkeys(DROP_REASONS, 0)
        self._reported: dict[str, tuple[float, int]] = {}
        self.rows_written = 0
        self._segment: Segment | None = None
        self._index: OutputIndex | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._flush = threading.Event()
        self._wake = threading.Event()
        self._counter = self._gauge_rows = None
        if registry is not None:
            from prometheus_client import Counter

            self._counter = Counter(
                "sluice_collect_dropped", "Collected records dropped, by reason",
                ["reason"], registry=registry,
            )  # fmt: skip
            for reason in DROP_REASONS:
                self._counter.labels(reason)
            self._gauge_rows = Counter(
                "sluice_collect_rows", "Rows written to the collection output", registry=registry
            )

    # -- models ----------------------------------------------------------------

    def attach(
        self,
        model: str,
        version: str,
        parameters: Mapping[str, str],
        inputs: Sequence[tuple[str, np.dtype, tuple[int, ...]]],
        outputs: Sequence[tuple[str, np.dtype, tuple[int, ...]]],
        *,
        batching: bool = True,
    ) -> CollectConfig | None:
        """Start collecting a model version; a bad ``sluice.collect.*`` parameter is
        logged and that version is not collected (it still serves)."""
        try:
            config = CollectConfig.from_parameters(
                model, parameters, inputs, outputs,
                default_sample_rate=self.options.default_sample_rate, batching=batching,
            )  # fmt: skip
        except CollectConfigError as exc:
            log.error("collection off for %s version %s: %s", model, version, exc)
            return None
        if config.sample_rate <= 0.0:
            self._configs.pop((model, version), None)
            return None
        self._configs[(model, version)] = config
        return config

    def detach(self, model: str, version: str) -> None:
        self._configs.pop((model, version), None)
        self._listening.pop((model, version), None)

    def add_listener(self, listener: Listener, wants: Wants | None = None) -> None:
        """Called from the writer thread with each record written to the spool;
        ``wants(model, version)``, asked once per version from the writer thread, says
        whether the listener needs that version's records (default: every version)."""
        self._listeners.append((listener, wants))
        self._listening.clear()

    def _listeners_for(self, model: str, version: str) -> list[Listener]:
        found = self._listening.get((model, version))
        if found is None:
            found = []
            for listener, wants in self._listeners:
                try:
                    if wants is None or wants(model, version):
                        found.append(listener)
                except Exception:
                    log.exception("collection listener failed")
            self._listening[(model, version)] = found
        return found

    # -- the request path ----------------------------------------------------------

    def config_for(self, model: str, version: str) -> CollectConfig | None:
        return self._configs.get((model, version))

    def observe(
        self,
        model: str,
        version: str,
        request_id: str,
        inputs: Mapping[str, np.ndarray],
        outputs: Mapping[str, np.ndarray],
        latency_ns: int,
        error: str | None = None,
    ) -> bool:
        """Sample and enqueue one request's record; never blocks, never raises for a
        full queue. Returns whether a record was enqueued."""
        config = self._configs.get((model, version))
        if config is None or not sampled(config, request_id, random.random()):
            return False
        if self._pushed - self._popped >= self._queue_size:
            self._drop("queue_full")
            return False
        flat = [config, model, version, request_id, time.time_ns() // 1000, error, latency_ns,
                len(inputs), len(outputs)]  # fmt: skip
        for name, arr in inputs.items():
            flat += (name, arr)
        for name, arr in outputs.items():
            flat += (name, arr)
        self._queue.extend(flat)
        self._pushed += 1
        return True

    def observe_inference(self, record: Any) -> bool:
        """``observe`` for a ``serving.observers.InferenceRecord``: its arrays are kept
        (references), not the tensor objects holding them."""
        config = self._configs.get((record.model, record.version))
        if config is None or not sampled(config, record.request_id, random.random()):
            return False
        # One producer thread (the event loop) and one consumer: with producers racing,
        # the check may overshoot the bound by a few records, never block.
        if self._pushed - self._popped >= self._queue_size:
            self._drop("queue_full")
            return False
        inputs = record.inputs or ()
        outputs = record.outputs or ()
        flat = [config, record.model, record.version, record.request_id,
                time.time_ns() // 1000,
                None if record.outcome == OK else f"{record.outcome}: {record.error}",
                record.total_ns, len(inputs), len(outputs)]  # fmt: skip
        for t in inputs:
            flat += (t.name, t.data)
        for t in outputs:
            flat += (t.name, t.data)
        self._queue.extend(flat)  # one C call: the writer never sees part of a record
        self._pushed += 1
        return True

    # -- counters --------------------------------------------------------------------

    def _drop(self, reason: str, count: int = 1) -> None:
        self._dropped[reason] += count
        if self._counter is not None:
            self._counter.labels(reason).inc(count)

    def dropped(self, reason: str) -> int:
        return self._dropped[reason]

    def _report_drops(self) -> None:
        if self._on_dropping is None:
            return
        now = time.monotonic()
        for reason, count in self._dropped.items():
            last_at, last_count = self._reported.get(reason, (-1e9, 0))
            if count > last_count and now - last_at >= 60.0:
                self._reported[reason] = (now, count)
                try:
                    self._on_dropping(reason, count)
                except Exception:
                    log.exception("reporting dropped collection data failed")

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Close what a dead writer left, roll every closed segment, start the writer."""
        self.spool.adopt_orphans()
        if self.output.local is not None:
            self._index = OutputIndex(self.output.local)
        self._roll_closed()
        self._thread = threading.Thread(target=self._run, name="sluice-collect", daemon=True)
        self._thread.start()

    def flush(self) -> None:
        """Ask the writer to close the current segment and roll it soon."""
        self._flush.set()
        self._wake.set()

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued, roll everything, stop the writer."""
        if self._thread is None:
            return
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        self._thread = None

    # -- the writer thread --------------------------------------------------------------

    def _take(self) -> list[Pending]:
        """The whole records in the queue (each was appended by one ``extend``)."""
        taken: list[Pending] = []
        queue = self._queue
        pop = queue.popleft
        left = len(queue)
        while left > 0:
            head = [pop() for _ in range(_HEAD)]
            inputs = {}
            for _ in range(head[7]):
                name = pop()
                inputs[name] = pop()
            outputs = {}
            for _ in range(head[8]):
                name = pop()
                outputs[name] = pop()
            left -= _HEAD + 2 * (head[7] + head[8])
            taken.append((*head[:7], inputs, outputs))  # type: ignore[arg-type]
        self._popped += len(taken)
        return taken

    def _run(self) -> None:
        drained = time.monotonic()
        while True:
            segment = self._segment
            wait = POLL_SECS
            if segment is not None:
                age = time.monotonic() - segment.created
                wait = min(wait, max(0.001, self.options.roll_secs - age))
            woken = self._wake.wait(wait)
            self._wake.clear()
            stop = self._stop.is_set()
            now = time.monotonic()
            segment = self._segment
            if not (
                woken or stop
                or self._pushed - self._popped >= self._drain_records
                or now - drained >= DRAIN_SECS
                or (segment is not None and now - segment.created >= self.options.roll_secs)
            ):  # fmt: skip
                continue
            drained = now
            while True:
                taken = self._take()
                try:
                    self._write(taken)
                except Exception:  # the writer must outlive any one batch
                    log.exception("writing collected records failed")
                if not (stop and self._queue):
                    break
            segment = self._segment
            if segment is not None and (
                stop or self._flush.is_set()
                or segment.bytes >= self.options.segment_bytes
                or time.monotonic() - segment.created >= self.options.roll_secs
            ):  # fmt: skip
                self._close_segment()
                self._roll_closed()
            self._flush.clear()
            self._report_drops()
            if stop:
                return

    def _records(
        self, taken: list[Pending]
    ) -> dict[int, tuple[CollectConfig, list[CollectRecord]]]:
        """The drained tuples as records, grouped by the config they were sampled under;
        a request without an id gets a random one (one urandom call for the batch)."""
        missing = sum(1 for p in taken if not p[3])
        ids = os.urandom(16 * missing).hex() if missing else ""
        at = 0
        groups: dict[int, tuple[CollectConfig, list[CollectRecord]]] = {}
        for config, model, version, rid, ts, error, latency_ns, inputs, outputs in taken:
            if not rid:
                rid = ids[at : at + 32]
                at += 32
            record = CollectRecord(
                rid, ts, model, version, config.sample_rate, OK if error is None else ERROR,
                error, latency_ns // 1000, inputs, outputs,
            )  # fmt: skip
            group = groups.get(id(config))
            if group is None:
                group = groups[id(config)] = (config, [])
            group[1].append(record)
        return groups

    def _write(self, taken: list[Pending]) -> None:
        if not taken:
            return
        for config, records in self._records(taken).values():
            try:
                encoded = encode(records, config)
            except Exception as exc:
                self._drop("write_failed", len(records))
                log.error("encoding %d collected records failed: %s", len(records), exc)
                continue
            if encoded.too_large:
                self._drop("too_large", encoded.too_large)
            for payload in encoded.payloads:
                try:
                    if self._segment is None:
                        self._segment = self.spool.new_segment()
                    self._segment.append(payload)
                except OSError as exc:
                    self._drop("write_failed", frame_records(payload))
                    log.error("appending to the collection spool failed: %s", exc)
            listeners = self._listeners_for(records[0].model, records[0].version)
            if self._sink is None and not listeners:
                continue
            for record in records:
                if self._sink is not None:
                    try:
                        self._sink.send(record, config)
                    except Exception as exc:
                        self._drop("sink_failed")
                        log.debug("collection sink failed: %s", exc)
                for listener in listeners:
                    try:
                        listener(record, config)
                    except Exception:
                        log.exception("collection listener failed")
        if self._segment is not None:
            self._segment.flush()

    def _close_segment(self) -> None:
        if self._segment is None:
            return
        try:
            self._segment.close()
        except OSError as exc:
            log.error("closing spool segment %s failed: %s", self._segment.path, exc)
        self._segment = None
        self._cap_spool()

    def _cap_spool(self) -> None:
        over = self.spool.size() - self.options.spool_max_bytes
        for path in self.spool.closed_segments():
            if over <= 0:
                break
            size = path.stat().st_size
            records = sum(frame_records(frame) for frame in read_frames(path))
            path.unlink()
            self._drop("spool_cap", records)
            log.warning("spool over its cap: dropped %s (%d records)", path.name, records)
            over -= size

    def _roll_closed(self) -> None:
        out = self.output
        for path in self.spool.closed_segments():
            try:
                with self.spool.claim(path) as claimed:  # another worker may be rolling it
                    if not claimed:
                        continue
                    if out.local is not None:
                        written = roll_segment(path, out.local)
                    else:
                        written = roll_segment(path, out.root, fs=out.fs)
            except Exception as exc:  # keep the segment: the next roll tries again
                log.error("rolling %s into Parquet failed: %s", path.name, exc)
                return
            if self._index is not None:
                self._index.added(Path(p) for p, _ in written)
            rows = sum(n for _, n in written)
            self.rows_written += rows
            if self._gauge_rows is not None:
                self._gauge_rows.inc(rows)
        if self._index is not None and self.options.output_max_bytes:
            removed = self._index.evict_over(self.options.output_max_bytes)
            if removed:
                self._drop("output_cap", removed)
