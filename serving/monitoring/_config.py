"""Per-model collection settings, read once from config.pbtxt ``parameters`` (``sluice.collect.*``).

Validated when the model version is attached to the collector, so a typo is one
precise message in the log and that model is not collected; serving is never
affected.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["PREFIX", "CollectConfig", "CollectConfigError", "ColumnSpec", "sampled"]

PREFIX = "sluice.collect."
_KEYS = frozenset(
    {"sample_rate", "by_request_id", "inputs", "outputs", "deny", "hash", "max_record_bytes"}
)


class CollectConfigError(ValueError):
    """A ``sluice.collect.*`` parameter that cannot be used."""


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    """One collected tensor: its column name, where it comes from and what a row holds."""

    column: str
    tensor: str
    kind: str  # "input" | "output"
    dtype: np.dtype  # numpy dtype of the elements; object for BYTES
    dims: tuple[int, ...]  # one batch element's shape (-1 for variable)
    hashed: bool = False  # stored as the sha256 hex digest of the element's bytes


@dataclass(frozen=True, slots=True)
class CollectConfig:
    sample_rate: float
    by_request_id: bool
    columns: tuple[ColumnSpec, ...]
    max_record_bytes: int  # 0: no cap
    batching: bool  # inputs carry a leading batch dimension

    @classmethod
    def from_parameters(
        cls,
        model: str,
        parameters: Mapping[str, str],
        inputs: Sequence[tuple[str, np.dtype, tuple[int, ...]]],
        outputs: Sequence[tuple[str, np.dtype, tuple[int, ...]]],
        *,
        default_sample_rate: float = 1.0,
        batching: bool = True,
    ) -> CollectConfig:
        """``parameters``: the model config's string parameters; ``inputs``/``outputs``:
        (name, numpy dtype, dims without the batch dimension) from the model config."""
        params = {k[len(PREFIX) :]: v for k, v in parameters.items() if k.startswith(PREFIX)}
        unknown = sorted(set(params) - _KEYS)
        if unknown:
            raise CollectConfigError(
                f"model '{model}': unknown parameter {PREFIX}{unknown[0]}; known: "
                + ", ".join(PREFIX + k for k in sorted(_KEYS))
            )
        rate = _rate(model, params.get("sample_rate"), default_sample_rate)
        by_id = _flag(model, "by_request_id", params.get("by_request_id", "false"))
        cap = _int(model, "max_record_bytes", params.get("max_record_bytes", "0"))
        in_names = [n for n, _, _ in inputs]
        out_names = [n for n, _, _ in outputs]
        allow_in = _names(model, "inputs", params.get("inputs"), in_names)
        allow_out = _names(model, "outputs", params.get("outputs"), out_names)
        deny = set(_names(model, "deny", params.get("deny", ""), in_names + out_names) or ())
        hashed = set(_names(model, "hash", params.get("hash", ""), in_names + out_names) or ())
        columns: list[ColumnSpec] = []
        taken = set()
        for kind, specs, allow in (("input", inputs, allow_in), ("output", outputs, allow_out)):
            for name, dtype, dims in specs:
                if name in deny or (allow is not None and name not in allow):
                    continue
                column = name if name not in taken else f"{name}_{kind}"
                taken.add(column)
                columns.append(
                    ColumnSpec(column, name, kind, np.dtype(dtype), tuple(dims), name in hashed)
                )
        return cls(rate, by_id, tuple(columns), cap, batching)

    @property
    def input_columns(self) -> tuple[ColumnSpec, ...]:
        return tuple(c for c in self.columns if c.kind == "input")

    @property
    def output_columns(self) -> tuple[ColumnSpec, ...]:
        return tuple(c for c in self.columns if c.kind == "output")


def sampled(config: CollectConfig, request_id: str, draw: float) -> bool:
    """Whether a request is collected, decided once for its inputs and outputs.

    With ``by_request_id`` the decision is a hash of the request id (the first 8 bytes
    of its sha256 as a fraction of 2**64), so a client can predict it; otherwise
    ``draw`` (uniform in [0, 1)) decides.
    """
    if config.sample_rate >= 1.0:
        return True
    if config.sample_rate <= 0.0:
        return False
    if config.by_request_id and request_id:
        digest = hashlib.sha256(request_id.encode()).digest()
        draw = int.from_bytes(digest[:8], "big") / 2.0**64
    return draw < config.sample_rate


def _rate(model: str, text: str | None, default: float) -> float:
    if text is None:
        return default
    try:
        rate = float(text)
    except ValueError:
        rate = -1.0
    if not 0.0 <= rate <= 1.0:
        raise CollectConfigError(
            f"model '{model}': {PREFIX}sample_rate {text!r} is not a number in 0..1"
        )
    return rate


def _flag(model: str, key: str, text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no", ""):
        return False
    raise CollectConfigError(f"model '{model}': {PREFIX}{key} {text!r} is not true or false")


def _int(model: str, key: str, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise CollectConfigError(
            f"model '{model}': {PREFIX}{key} {text!r} is not a non-negative integer"
        )
    return value


def _names(model: str, key: str, text: str | None, known: Sequence[str]) -> list[str] | None:
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    for name in names:
        if name not in known:
            raise CollectConfigError(
                f"model '{model}': {PREFIX}{key} names '{name}', which the model does not "
                f"have; tensors: {', '.join(known)}"
            )
    return names
