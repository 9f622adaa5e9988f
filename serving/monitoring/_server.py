"""The monitoring parts of one server process, built from its settings: the data
collector (an observer of every model version), online drift over what it collects,
and the event bus (lifecycle, drift, collection and rollout events)."""

from __future__ import annotations

import logging
import socket
from pathlib import Path
from typing import Any

from serving.monitoring._collector import Collector, CollectorOptions
from serving.monitoring._events import EventBus, EventsConfig
from serving.monitoring._observer import CollectObserver, VersionDescription, describe_model_config
from serving.monitoring._online import BASELINE_FILE, OnlineDrift

__all__ = ["Monitoring"]

log = logging.getLogger("sluice.collect")


class Monitoring:
    def __init__(self, collector: Collector | None, events: EventBus | None) -> None:
        self.collector = collector
        self.events = events
        self.observer: CollectObserver | None = None
        self.drift: OnlineDrift | None = None

    @classmethod
    def from_settings(cls, settings: Any, core: Any, metrics: Any) -> Monitoring | None:
        """None when neither ``--collect`` nor ``--events`` is given."""
        if settings.collect is None and settings.events is None:
            return None
        source = f"/sluice/{socket.gethostname()}"
        events = None
        if settings.events is not None:
            events = EventBus(EventsConfig.load(settings.events), source, registry=metrics.registry)
        collector = None
        if settings.collect is not None:
            sink = None
            if settings.collect_sink is not None:
                from serving.monitoring._sink import CloudEventsSink

                sink = CloudEventsSink(settings.collect_sink, source)
            spool = settings.collect_spool
            if spool is None and "://" in settings.collect:
                local = settings.collect.startswith("file://")
                spool = None if local else settings.model_repository / ".sluice" / "collect-spool"
            options = CollectorOptions(
                destination=settings.collect,
                spool_dir=spool,
                queue_size=settings.collect_queue_size,
                roll_secs=settings.collect_roll_secs,
                spool_max_bytes=settings.collect_spool_max_bytes,
                output_max_bytes=settings.collect_max_bytes,
                default_sample_rate=settings.collect_sample_rate,
            )
            on_dropping = None
            if events is not None:
                bus = events

                def on_dropping(reason: str, count: int) -> None:
                    bus.publish(
                        "io.sluice.collect.dropping", {"reason": reason, "dropped_total": count}
                    )

            collector = Collector(
                options, registry=metrics.registry, sink=sink, on_dropping=on_dropping
            )
        monitoring = cls(collector, events)
        if collector is not None:

            def describe(model: str, version: str) -> VersionDescription | None:
                try:
                    return describe_model_config(core.model_config_message(model, version))
                except Exception as exc:
                    log.error("collection off for %s version %s: %s", model, version, exc)
                    return None

            monitoring.observer = CollectObserver(collector, describe)
            repository = Path(settings.model_repository)
            monitoring.drift = OnlineDrift(
                lambda model, version: repository / model / version / BASELINE_FILE,
                window=settings.drift_window,
                interval_s=settings.drift_interval_secs,
                registry=metrics.registry,
                publish=None if events is None else events.publish,
            )
            collector.add_listener(monitoring.drift.observe, monitoring.drift.wants)
        return monitoring

    def start(self, core: Any) -> None:
        """Roll what a previous process left in the spool, then observe every version."""
        if self.events is not None:
            self.events.start()
            core.lifecycle_listeners.append(self._on_lifecycle)
            core.rollout.listeners.append(self._on_rollout)
        if self.collector is not None and self.observer is not None:
            self.collector.start()
            core.observers.add(self.observer)
            if self.drift is not None:
                self.drift.start()
            log.info("collecting to %s", self.collector.destination)

    def _on_lifecycle(self, event: Any) -> None:
        """io.sluice.version.loaded / unloaded / load_failed (an outbox write: rare, short)."""
        assert self.events is not None
        version = None if event.version is None else str(event.version)
        data = {"model": event.model, "version": version}
        if event.reason:
            data["reason"] = event.reason
        subject = event.model if version is None else f"{event.model}:{version}"
        self.events.publish(f"io.sluice.version.{event.kind}", data, subject=subject)

    def _on_rollout(self, state: Any) -> None:
        """io.sluice.rollout.promoted / rolled_back, when a rollout ends either way."""
        assert self.events is not None
        reason = state.history[-1]["reason"] if state.history else ""
        for entry in reversed(state.history):  # the decision's reason, not the alias note
            if entry["action"] in ("advance", "rollback"):
                reason = entry["reason"]
                break
        data = {
            "model": state.model, "baseline": state.baseline, "candidate": state.spec.to,
            "reason": reason,
        }  # fmt: skip
        self.events.publish(f"io.sluice.rollout.{state.state}", data, subject=state.model)

    def close(self, core: Any) -> None:
        """Blocking: writes what is queued and rolls it; call from a thread."""
        if self.events is not None and self._on_lifecycle in core.lifecycle_listeners:
            core.lifecycle_listeners.remove(self._on_lifecycle)
        if self.events is not None and self._on_rollout in core.rollout.listeners:
            core.rollout.listeners.remove(self._on_rollout)
        if self.drift is not None:
            self.drift.close()
        if self.observer is not None:
            core.observers.remove(self.observer)
        if self.collector is not None:
            self.collector.close()
        if self.events is not None:
            self.events.close()
