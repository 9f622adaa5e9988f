"""The agent: boot from local state, follow the desired document, converge, report.

Order at start matters: the committed versions serve before any network call (a device
that reboots offline comes back), then the broker link and the HTTP poller start and
keep retrying with backoff. Desired documents only move forward: one whose ``version``
is not newer than the one held changes nothing, so duplicates, retained re-deliveries
and out-of-order documents are harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import shutil
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edge_agent._config import AgentConfig
from edge_agent._document import DesiredDocument, DocumentError, ModelSpec, parse_document
from edge_agent._health import judge_live
from edge_agent._outbox import Outbox
from edge_agent._state import MAX_ATTEMPTS, SETTLED, ModelRow, State, StateStore
from edge_agent._topics import Topics

__all__ = ["Agent"]

log = logging.getLogger("sluice.edge")

_GATE_POLL_SECS = 0.1


class _Retry(Exception):
    """A step that failed for a reason that may pass (network, registry down)."""


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.topics = Topics(config.device_id, config["mqtt.topic_prefix"])
        state_dir = config.state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        self.models_dir = state_dir / "models"
        self.models_dir.mkdir(exist_ok=True)
        self.store = StateStore(state_dir / "state.db")
        self.outbox = Outbox(
            state_dir / "outbox.db",
            max_bytes=config["outbox.max_bytes"],
            ttl_secs=config["outbox.ttl_secs"],
            policy=config["outbox.policy"],
        )
        self.shipper: Any = None
        self.collect_dir: Path | None = None
        if config["collect.enabled"]:
            from edge_agent._shipper import CollectShipper

            self.collect_dir = state_dir / "collect"
            self.shipper = CollectShipper(
                state_dir / "collect-outbox.db", self.collect_dir, self.topics,
                max_bytes=config["collect.max_bytes"], chunk_bytes=config["collect.chunk_bytes"],
                on_dropped=self._collect_dropped,
            )  # fmt: skip
        self.started = time.monotonic()
        self.host: Any = None
        self.link: Any = None
        self._kick = asyncio.Event()
        self._drain_wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._inflight: dict[int, tuple[Any, int]] = {}  # MQTT message id -> (store, row)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._rng = random.Random()

    # -- start and stop ---------------------------------------------------------

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._recover()
        serve_task: asyncio.Task[None] | None = None
        if self.config["serve.enabled"]:
            from edge_agent._host import ServingHost

            self.host = ServingHost(self.config, self.models_dir, self.collect_dir)
            committed = {r.name: r.committed for r in self.store.rows() if r.committed is not None}
            splits = {name: self._committed_traffic(name) for name in committed}
            serve_task = await self.host.start(committed, splits)
            log.info(
                "edge agent serving: http=%d grpc=%d metrics=%d models=%s",
                self.host.http_port, self.host.grpc_port, self.host.metrics_port,
                ",".join(f"{n}/{'+'.join(v)}" for n, v in self.host.serving().items()) or "-",
            )  # fmt: skip
        else:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self._stopping.set)
            log.info("edge agent running (serving disabled)")
        self.event("boot", committed={r.name: r.committed for r in self.store.rows()})
        self.report("boot")
        tasks = [
            asyncio.create_task(self._reconcile_forever(), name="edge-reconcile"),
            asyncio.create_task(self._drain_forever(), name="edge-drain"),
            asyncio.create_task(self._heartbeat_forever(), name="edge-heartbeat"),
        ]
        if self.shipper is not None:
            tasks.append(asyncio.create_task(self._ship_forever(), name="edge-collect"))
        if self.config["mqtt.url"]:
            from edge_agent._link import MqttLink

            self.link = MqttLink(
                self.config, self.topics,
                on_desired=self.on_desired, on_connected=self._on_connected,
                on_acked=self._on_acked,
            )  # fmt: skip
            self.link.start()
        if self.config["poll.url"]:
            from edge_agent._poll import poll_forever

            tasks.append(asyncio.create_task(poll_forever(self.config, self.on_desired)))
        held = self.store.desired()
        if held is not None:
            self._kick.set()  # finish what the last run left half done
        waiters = [asyncio.create_task(self._stopping.wait())]
        if serve_task is not None:
            waiters.append(serve_task)  # type: ignore[arg-type]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks + waiters:
                task.cancel()
            await asyncio.gather(*tasks, *waiters, return_exceptions=True)
            if self.link is not None:
                self.link.stop()
            if self.host is not None:
                await self.host.close()
            if self.shipper is not None:
                await asyncio.to_thread(self.shipper.scan)  # what the core rolled as it stopped
                self.shipper.close()
            self.store.close()
            self.outbox.close()
            log.info("edge agent stopped")

    def _recover(self) -> None:
        """A version caught mid-activation by a crash goes back to ``verified`` (it is
        retried; the committed version serves meanwhile)."""
        for row in self.store.rows():
            if row.state in (State.LOADING, State.CANARY):
                self.store.transition(row.name, State.VERIFIED, reason=f"interrupted in {row.state}")  # fmt: skip
                self.event("resumed", model=row.name, version=row.version, was=row.state.value)

    # -- desired state ----------------------------------------------------------

    def held_version(self) -> int:
        held = self.store.desired()
        return int(held["version"]) if held else -1

    def on_desired(self, payload: bytes) -> None:
        try:
            doc = parse_document(payload)
        except DocumentError as exc:
            reason = str(exc)
            if self.store.get_value("desired_error") != reason:
                log.warning("desired document refused: %s", reason)
                self.store.set_value("desired_error", reason)
                self.event("desired_refused", reason=reason)
                self.report("desired refused")
            return
        if doc.version <= self.held_version():
            return  # a duplicate, a re-delivery or an older document: changes nothing
        self.store.set_desired(doc.to_json())
        self.store.set_value("desired_error", "")
        log.info("desired document version %d accepted", doc.version)
        self.event("desired_accepted", version=doc.version)
        self.report("desired accepted")
        self._kick.set()

    # -- convergence -------------------------------------------------------------

    async def _reconcile_forever(self) -> None:
        delay = self.config["download.retry_min_secs"]
        while True:
            await self._kick.wait()
            self._kick.clear()
            held = self.store.desired()
            if held is None:
                continue
            doc = parse_document(held)
            try:
                await self._converge(doc)
                delay = self.config["download.retry_min_secs"]
            except _Retry as exc:
                log.warning("will retry in %.1fs: %s", delay, exc)
                await asyncio.sleep(delay * (0.5 + self._rng.random()))
                delay = min(delay * 2, self.config["download.retry_max_secs"])
                self._kick.set()

    async def _converge(self, doc: DesiredDocument) -> None:
        for spec in doc.models.values():
            await self._converge_model(doc.version, spec)
        for row in self.store.rows():
            if row.name not in doc.models:
                if self.host is not None:
                    await self.host.deactivate(row.name)
                self.store.remove(row.name)
                self.store.set_value(f"committed_traffic/{row.name}", "")
                self.event("removed", model=row.name)
                self.report("model removed")

    async def _converge_model(self, doc_version: int, spec: ModelSpec) -> None:
        row = self.store.get(spec.name)
        if row is None or row.doc_version != doc_version or row.ref != spec.ref:
            row = self.store.begin(spec.name, doc_version, spec.ref, spec.golden, spec.pinned_version)  # fmt: skip
            self._changed(row)
        if row.state in SETTLED:
            return
        if row.state is State.DOWNLOADING:
            row = await self._download(row, spec.traffic)
            if row.state in SETTLED:
                return
        if row.state is State.VERIFIED:
            await self._activate(row, spec.traffic)

    def _committed_traffic(self, name: str) -> dict[int, int]:
        """The split that served with the committed version (empty: it serves alone)."""
        text = self.store.get_value(f"committed_traffic/{name}")
        return {int(v): int(w) for v, w in json.loads(text).items()} if text else {}

    async def _download(self, row: ModelRow, traffic: Mapping[int, int]) -> ModelRow:
        """Pull the version ``ref`` names and every other version ``traffic`` names that is
        not on disk yet."""
        from registry_client import (
            InsufficientSpace,
            NetworkError,
            Puller,
            RegistryError,
            open_registry,
        )
        from registry_client import NotFound as RegistryNotFound

        try:
            async with open_registry(self.config["registry"]) as registry:
                from registry_client import parse_reference

                source = parse_reference(row.ref).name
                ref = row.ref if row.version is None else f"models:/{source}/{row.version}"
                version = await registry.resolve(parse_reference(ref))
                if row.version is None:
                    row = self.store.transition(row.name, State.DOWNLOADING, version=version.version)  # fmt: skip
                    self._changed(row)
                if traffic and not traffic.get(version.version):
                    raise RegistryError(f"traffic: version {version.version}, which {row.ref} names, carries no weight")  # fmt: skip
                wanted = [version]
                for other in sorted(set(traffic) - {version.version}):
                    wanted.append(await registry.resolve(parse_reference(f"models:/{source}/{other}")))  # fmt: skip
                missing = [w for w in wanted if not (self.models_dir / row.name / str(w.version)).is_dir()]  # fmt: skip
                in_force = self.host.traffic(row.name) if self.host is not None else {}
                unchanged = in_force == {str(v): w for v, w in traffic.items()}
                if row.version == row.committed and not missing and unchanged:
                    row = self.store.transition(row.name, State.VERIFIED)
                    row = self.store.transition(row.name, State.COMMITTED, reason="already serving")
                    self._changed(row)
                    return row
                need = sum(w.total_size or 0 for w in missing)
                free = shutil.disk_usage(self.models_dir).free
                if need + self.config["download.min_free_bytes"] > free:
                    raise InsufficientSpace(f"{version.name}/{'+'.join(str(w.version) for w in missing)} needs {need} bytes (+{self.config['download.min_free_bytes']} kept free); {free} free")  # fmt: skip
                for pulled in missing:
                    await Puller(registry, self.models_dir).install(pulled, install_as=row.name)
        except (NetworkError, OSError) as exc:
            raise _Retry(f"{row.name}: {exc}") from None
        except (RegistryNotFound, InsufficientSpace, RegistryError) as exc:
            row = self.store.transition(row.name, State.FAILED, reason=f"download: {exc}")
            self._changed(row)
            return row
        row = self.store.transition(row.name, State.VERIFIED)
        self._changed(row)
        return row

    async def _activate(self, row: ModelRow, traffic: Mapping[int, int]) -> None:
        assert row.version is not None
        if self.host is None:  # serving disabled: files only
            self._commit(row, traffic=traffic)
            return
        if row.attempts >= MAX_ATTEMPTS:
            row = self.store.transition(row.name, State.FAILED, reason=f"activation interrupted {row.attempts} times")  # fmt: skip
            self._changed(row)
            return
        row = self.store.transition(row.name, State.LOADING, attempts=row.attempts + 1)
        self._changed(row)
        problem = await self.host.activate(row.name, row.version, traffic)
        if problem is not None:
            await self._roll_back(row, f"load: {problem}")
            return
        row = self.store.transition(row.name, State.CANARY)
        self._changed(row)
        if row.golden:
            problem = await self.host.golden(row.name, row.version, row.golden)
            if problem is not None:
                await self._roll_back(row, problem)
                return
        self.host.watch(row.name, row.version)
        began = time.monotonic()
        try:
            while True:
                await asyncio.sleep(_GATE_POLL_SECS)
                sample = self.host.live_sample()
                verdict = judge_live(sample, time.monotonic() - began, self.config)
                if verdict.done:
                    break
        finally:
            self.host.watch(row.name, None)
        if not verdict.healthy:
            await self._roll_back(row, verdict.reason)
            return
        self._commit(row, verdict.reason, traffic=traffic)

    def _commit(self, row: ModelRow, note: str = "", *, traffic: Mapping[int, int]) -> None:
        assert row.version is not None
        previous = row.committed if row.committed != row.version else row.previous
        self.store.set_value(f"committed_traffic/{row.name}", json.dumps({str(v): w for v, w in traffic.items()}))  # fmt: skip
        row = self.store.transition(row.name, State.COMMITTED, reason=note, committed=row.version, previous=previous)  # fmt: skip
        self._changed(row)
        self._prune(row)

    def _prune(self, row: ModelRow) -> None:
        """Keep the committed version and the one before it; remove older ones."""
        from registry_client import remove_version

        keep = {row.committed, row.previous, row.version, *self._committed_traffic(row.name)}
        model_dir = self.models_dir / row.name
        for child in model_dir.iterdir() if model_dir.is_dir() else []:
            if child.name.isdigit() and int(child.name) not in keep:
                remove_version(self.models_dir, row.name, int(child.name))

    async def _roll_back(self, row: ModelRow, reason: str) -> None:
        log.warning("%s version %s rolled back: %s", row.name, row.version, reason)
        if row.committed is not None:
            problem = await self.host.activate(row.name, row.committed, self._committed_traffic(row.name))  # fmt: skip
            if problem is not None:
                reason += f"; and the committed version {row.committed} failed to load again: {problem}"  # fmt: skip
        else:
            await self.host.deactivate(row.name)
        row = self.store.transition(row.name, State.ROLLED_BACK, reason=reason)
        self._changed(row)

    # -- reporting ---------------------------------------------------------------

    def _changed(self, row: ModelRow) -> None:
        log.info("%s: %s version %s%s", row.name, row.state.value, row.version, f" ({row.reason})" if row.reason else "")  # fmt: skip
        self.event("state", model=row.name, state=row.state.value, version=row.version, reason=row.reason)  # fmt: skip
        self.report("state")

    def event(self, kind: str, **fields: Any) -> None:
        self.outbox.put(self.topics.events, {"device": self.config.device_id, "ts": time.time(), "kind": kind, **fields})  # fmt: skip
        self._drain_wake.set()

    def reported(self) -> dict[str, Any]:
        self.outbox.expire()  # the drop counts below include what expired while offline
        held = self.store.desired()
        models: dict[str, Any] = {}
        for row in self.store.rows():
            models[row.name] = {
                "state": row.state.value,
                "applied": row.committed,
                "previous": row.previous,
                "version": row.version,
                "desired_ref": row.ref,
                "traffic": self._traffic_in_force(row.name),
                "error": row.reason if row.state in (State.FAILED, State.ROLLED_BACK) else "",
            }
        return {
            "device": self.config.device_id,
            "ts": time.time(),
            "desired_version": held["version"] if held else None,
            "desired_error": self.store.get_value("desired_error") or "",
            "models": models,
            "device_info": {
                "uptime_secs": round(time.monotonic() - self.started, 1),
                "disk_free_bytes": shutil.disk_usage(self.config.state_dir).free,
                "rss_bytes": _rss_bytes(),
                "outbox_depth": self.outbox.depth(),
                "outbox_bytes": self.outbox.pending_bytes(),
                "dropped": self.outbox.dropped(),
                "broker_error": self.link.last_error if self.link is not None else "",
            }
            | ({"collect": self.shipper.stats()} if self.shipper is not None else {}),
        }

    def _traffic_in_force(self, name: str) -> dict[str, int]:
        if self.host is not None:
            return dict(self.host.traffic(name))
        return {str(v): w for v, w in self._committed_traffic(name).items()}

    def report(self, why: str) -> None:
        body = self.reported() | {"why": why}
        self.outbox.put(self.topics.reported, body, retain=True, key="reported")
        self._drain_wake.set()

    async def _heartbeat_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config["heartbeat_secs"])
            self.report("heartbeat")

    # -- the outbox drain ------------------------------------------------------

    def _on_connected(self, up: bool) -> None:
        if up:  # the fleet sees the state as of now, drop counts included, after the backlog
            self.report("connected")

    def _on_acked(self, mid: int) -> None:
        entry = self._inflight.pop(mid, None)
        if entry is not None:
            store, row = entry
            store.ack(row)
            self._drain_wake.set()

    def _next_message(self) -> tuple[Any, Any] | None:
        """The next message to send: events and reported state first, then collected data."""
        for store in (self.outbox, self.shipper):
            if store is None:
                continue
            sent = {row for s, row in self._inflight.values() if s is store}
            batch = store.pending(limit=1, exclude=sent)
            if batch:
                return store, batch[0]
        return None

    async def _drain_forever(self) -> None:
        gap = 1.0 / self.config["outbox.drain_per_sec"]
        while True:
            await self._drain_wake.wait()
            self._drain_wake.clear()
            while self.link is not None and self.link.connected and len(self._inflight) < 20:
                found = self._next_message()
                if found is None:
                    break
                store, message = found
                mid = self.link.publish(message.topic, message.payload, retain=message.retain)
                if mid is None:
                    break
                self._inflight[mid] = (store, message.row)
                await asyncio.sleep(gap)

    # -- collected data ------------------------------------------------------------

    async def _ship_forever(self) -> None:
        """Take every Parquet file the core rolled into the collection outbox, now and then."""
        while True:
            try:
                if await asyncio.to_thread(self.shipper.scan):
                    self._drain_wake.set()
            except Exception:
                log.exception("taking collected files in failed")
            await asyncio.sleep(self.config["collect.scan_secs"])

    def _collect_dropped(self, path: str, rows: int, reason: str) -> None:
        """From the shipper's thread: the fleet hears of every dropped file."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(lambda: self.event("collect_dropped", path=path, rows=rows, reason=reason))  # fmt: skip


def _rss_bytes() -> int:
    with contextlib.suppress(OSError, ValueError, IndexError):
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    return 0
