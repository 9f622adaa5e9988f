"""Dynamic batching: a scheduler that runs waiting requests together.

``DynamicBatcher`` implements ``serving.scheduler.Scheduler`` from a model
config's ``dynamic_batching`` block (Triton's semantics), adds grouping by shape
and optional padding, and decides with the pure ``FlushPolicy``. Batch assembly
and scatter come from a Cython twin or a pure-Python twin (``IMPLEMENTATION``).
"""

from __future__ import annotations

from serving.batching._assembly import IMPLEMENTATION, assemble, scatter
from serving.batching._batcher import DynamicBatcher
from serving.batching._config import (
    PAD_MAX_WASTE_KEY,
    PAD_PREFIX,
    BatchingConfig,
    PaddedInput,
    QueuePolicy,
)
from serving.batching._policy import SHORT_REASONS, Decision, Flush, FlushPolicy
from serving.batching._queue import Pending, PendingQueue

__all__ = [
    "IMPLEMENTATION",
    "PAD_MAX_WASTE_KEY",
    "PAD_PREFIX",
    "SHORT_REASONS",
    "BatchingConfig",
    "Decision",
    "DynamicBatcher",
    "Flush",
    "FlushPolicy",
    "PaddedInput",
    "Pending",
    "PendingQueue",
    "QueuePolicy",
    "assemble",
    "scatter",
]
