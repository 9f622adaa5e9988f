"""The batcher's settings, read once from a model config's ``dynamic_batching`` block.

Triton's fields keep Triton's meaning. Padding is Sluice's own and is switched on
per input through the config ``parameters`` map:

- ``sluice.pad.<input name>``: the value that fills that input's variable dims when
  requests of different lengths share a batch (e.g. ``"0"``, ``"-1"``, ``"0.5"``,
  ``"true"``; for BYTES inputs the UTF-8 bytes of the string). Which outputs can then
  be cut back to each request's shape is ``serving.config.padding_plan``'s rule.
- ``sluice.pad_max_waste``: the largest fraction of padded elements a batch may hold
  (``0`` to ``1``, default ``0.5``); a request that would push a batch past it waits
  for a batch of its own length.

And one switch of Sluice's own:

- ``sluice.run_lone_at_once``: ``"true"`` (the default) runs a request at once when it is
  the only one waiting and the model is idle (no execution running, and the last one
  served a single request); ``"false"`` makes it always wait out
  ``max_queue_delay_microseconds`` for company, as Triton does.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from serving.config import PAD_PREFIX, OutputCut, padding_plan
from serving.datatypes import by_config_name
from serving.errors import InvalidArgument

__all__ = [
    "PAD_MAX_WASTE_KEY",
    "PAD_PREFIX",
    "RUN_LONE_KEY",
    "BatchingConfig",
    "PaddedInput",
    "QueuePolicy",
]

log = logging.getLogger("sluice.batching")

PAD_MAX_WASTE_KEY = "sluice.pad_max_waste"
RUN_LONE_KEY = "sluice.run_lone_at_once"
DEFAULT_MAX_WASTE = 0.5


@dataclass(frozen=True, slots=True)
class QueuePolicy:
    """Triton's ``ModelQueuePolicy`` for one priority level (times in nanoseconds)."""

    reject_on_timeout: bool = True  # timeout_action REJECT (Triton's default) or DELAY
    default_timeout_ns: int = 0  # 0: no timeout
    allow_timeout_override: bool = False
    max_queue_size: int = 0  # 0: unbounded

    def timeout_ns(self, requested_us: int) -> int:
        """The timeout a request gets: an override may only shorten the default."""
        if not self.allow_timeout_override or requested_us <= 0:
            return self.default_timeout_ns
        requested = requested_us * 1000
        if self.default_timeout_ns:
            return min(requested, self.default_timeout_ns)
        return requested


@dataclass(frozen=True, slots=True)
class PaddedInput:
    """An input whose variable dims may be padded with ``value`` to batch."""

    name: str
    value: Any  # a numpy scalar of the input's dtype (bytes for BYTES)


@dataclass(frozen=True, slots=True)
class BatchingConfig:
    max_batch_size: int
    max_queue_delay_ns: int = 0
    preferred_batch_sizes: tuple[int, ...] = ()
    preserve_ordering: bool = False
    priority_levels: int = 1  # at least one level; Triton's 0 means one
    default_priority: int = 1
    queue_policies: tuple[QueuePolicy, ...] = (QueuePolicy(),)  # index level - 1
    padded: tuple[PaddedInput, ...] = ()
    max_waste: float = DEFAULT_MAX_WASTE
    run_lone_at_once: bool = True
    # Per output name: how it is cut back to a padded input's shape (None: all dims fixed).
    cuts: Mapping[str, OutputCut | None] = field(default_factory=dict)

    def policy(self, level: int) -> QueuePolicy:
        return self.queue_policies[level - 1]

    @classmethod
    def from_model_config(cls, config: Any) -> BatchingConfig:
        """Read ``dynamic_batching``, ``max_batch_size`` and the padding parameters."""
        batching = config.dynamic_batching
        levels = max(1, int(batching.priority_levels))
        default_level = int(batching.default_priority_level) or 1
        if not 1 <= default_level <= levels:
            raise InvalidArgument(
                f"dynamic_batching default_priority_level {default_level} is outside 1..{levels}"
            )
        base = _queue_policy(batching.default_queue_policy)
        policies = tuple(
            _queue_policy(batching.priority_queue_policy[level])
            if level in batching.priority_queue_policy
            else base
            for level in range(1, levels + 1)
        )
        padded, cuts = _padding(config)
        return cls(
            max_batch_size=int(config.max_batch_size),
            max_queue_delay_ns=int(batching.max_queue_delay_microseconds) * 1000,
            preferred_batch_sizes=tuple(sorted(set(batching.preferred_batch_size))),
            preserve_ordering=bool(batching.preserve_ordering),
            priority_levels=levels,
            default_priority=default_level,
            queue_policies=policies,
            padded=padded,
            max_waste=_max_waste(config.parameters),
            run_lone_at_once=_run_lone_at_once(config.parameters),
            cuts=cuts,
        )


def _queue_policy(policy: Any) -> QueuePolicy:
    return QueuePolicy(
        reject_on_timeout=policy.timeout_action == 0,  # REJECT
        default_timeout_ns=int(policy.default_timeout_microseconds) * 1000,
        allow_timeout_override=bool(policy.allow_timeout_override),
        max_queue_size=int(policy.max_queue_size),
    )


def _run_lone_at_once(parameters: Mapping[str, Any]) -> bool:
    if RUN_LONE_KEY not in parameters:
        return True
    text = parameters[RUN_LONE_KEY].string_value
    value = text.strip().lower()
    if value not in ("true", "false"):
        raise InvalidArgument(f"parameter {RUN_LONE_KEY} must be 'true' or 'false', got {text!r}")
    return value == "true"


def _max_waste(parameters: Mapping[str, Any]) -> float:
    if PAD_MAX_WASTE_KEY not in parameters:
        return DEFAULT_MAX_WASTE
    text = parameters[PAD_MAX_WASTE_KEY].string_value
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise InvalidArgument(
            f"parameter {PAD_MAX_WASTE_KEY} must be a number from 0 to 1, got {text!r}"
        )
    return value


def _pad_value(text: str, dtype: np.dtype, name: str) -> Any:
    try:
        if dtype == np.dtype(object):
            return text.encode()
        if dtype == np.dtype(bool):
            if text.lower() not in ("0", "1", "true", "false"):
                raise ValueError(text)
            return np.bool_(text.lower() in ("1", "true"))
        if dtype.kind in "iu":
            value = int(text)
            info = np.iinfo(dtype)
            if not info.min <= value <= info.max:
                raise ValueError(text)
            return dtype.type(value)
        return dtype.type(float(text))
    except ValueError:
        raise InvalidArgument(
            f"parameter {PAD_PREFIX}{name}: {text!r} is not a valid {dtype} pad value"
        ) from None


def _padding(config: Any) -> tuple[tuple[PaddedInput, ...], dict[str, OutputCut | None]]:
    """The padded inputs and, per output, how it is cut back (``serving.config.padding_plan``).

    A model whose outputs cannot be cut back does not pad; that is logged once, with
    the rule, when the config asked for padding.
    """
    plan = padding_plan(config)
    if not plan.pads:
        if plan.asked:
            log.warning("model '%s' %s", config.name, plan.explain())
        return (), {}
    from serving.config.model_config_pb2 import DataType as ConfigDataType

    padded = []
    for t in config.input:
        if t.name not in plan.padded:
            continue
        dtype = by_config_name(ConfigDataType.Name(t.data_type)).numpy
        text = config.parameters[PAD_PREFIX + t.name].string_value
        padded.append(PaddedInput(t.name, _pad_value(text, dtype, t.name)))
    log.info("model '%s' %s", config.name, plan.explain())
    return tuple(padded), dict(plan.cuts)
