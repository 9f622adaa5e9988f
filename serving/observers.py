"""What happens after an inference: the observers a model version tells.

After each request (and, once per execution, for the request that led a batch) a
model version hands every observer one ``InferenceRecord``: model, version, request
id, batch rows, the timings (queue, compute input / infer / output, total), the
outcome and, only when some observer asks for them (``wants_tensors``), the decoded
inputs and the outputs. Statistics (``serving.stats.VersionStats``) and Prometheus
metrics (``serving.metrics.Metrics``) are observers; a data collector or a profiler
is added with ``ObserverSet.add`` and hears every version, loaded or still to load.

Observers run on the event loop inside the request: they must not block (enqueue and
return). One that raises is logged once and never fails the request. With no optional
observer a successful request builds no record: the version hands the statistics and
the metrics its ``RequestTimings`` directly (what their ``on_inference`` and
``on_execution`` would take from a record); failures always build one. Inputs and
outputs stay ``None`` unless an observer wants tensors.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from serving.stats import RequestTimings
from serving.types import InferInput, InferOutput

__all__ = ["OK", "InferenceRecord", "Observer", "ObserverSet", "notify", "observer_failed"]

log = logging.getLogger("sluice.observers")

OK = "ok"  # the outcome of a request that was answered; else the ErrorCode's value


@dataclass(frozen=True, slots=True)
class InferenceRecord(RequestTimings):
    """One inference, as observers see it (timings in nanoseconds, from RequestTimings).

    ``execution_size`` is the rows of the model execution this request led (0 when it
    rode in a batch another request leads, or failed before running): each execution
    is reported once, through ``Observer.on_execution``.
    """

    model: str = ""
    version: str = ""
    request_id: str = ""
    outcome: str = OK
    error: str = ""  # the message when outcome is not OK
    batch_size: int = 0  # rows of this request
    total_ns: int = 0
    execution_size: int = 0
    inputs: tuple[InferInput, ...] | None = None  # only for observers that want tensors
    outputs: tuple[InferOutput, ...] | None = None

    @property
    def ok(self) -> bool:
        return self.outcome == OK


class Observer(Protocol):
    """Hears every inference of the versions it observes.

    ``wants_tensors``: whether records should carry inputs and outputs (a reference
    to the request's and response's arrays, never a copy; do not change them).
    """

    wants_tensors: bool

    def on_inference(self, record: InferenceRecord) -> None: ...

    def on_execution(self, record: InferenceRecord) -> None:
        """One model execution of ``record.execution_size`` rows, led by ``record``."""
        ...


class ObserverSet:
    """The optional observers of one server (shared by every model version)."""

    __slots__ = ("observers", "wants_tensors")

    def __init__(self, observers: Iterable[Observer] = ()) -> None:
        self.observers: tuple[Observer, ...] = ()
        self.wants_tensors = False
        for observer in observers:
            self.add(observer)

    def add(self, observer: Observer) -> None:
        self.observers = (*self.observers, observer)
        self.wants_tensors = any(o.wants_tensors for o in self.observers)

    def remove(self, observer: Observer) -> None:
        self.observers = tuple(o for o in self.observers if o is not observer)
        self.wants_tensors = any(o.wants_tensors for o in self.observers)

    def __len__(self) -> int:
        return len(self.observers)


_failed: set[int] = set()  # ids of observers whose failure was already logged


def notify(observers: tuple[Any, ...], record: InferenceRecord) -> None:
    """Tell each of ``observers`` about ``record``; a failing observer is logged (once)
    and skipped, never raised into the request."""
    for observer in observers:
        try:
            observer.on_inference(record)
            if record.execution_size:
                observer.on_execution(record)
        except Exception:
            observer_failed(observer)


def observer_failed(observer: object) -> None:
    """In an ``except`` block: log ``observer``'s failure (once per observer)."""
    if id(observer) not in _failed:
        _failed.add(id(observer))
        log.exception("observer %r failed; the request is unaffected", observer)
