"""Codec micro-benchmarks: the native (Cython) twin beside the pure-Python twin.

The suite imports both twins directly (the selector in ``serving.codecs`` picks only
one), so a single process prints both. Batch assembly joins once ``serving.batching``
ships its twins.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["MicroResult", "run_micro_benchmarks"]

# Batch assembly twins: ``assemble(parts, out, pad_value=0)`` copies the parts' rows into out.
_ASSEMBLY_TWINS = ("serving.batching._native", "serving.batching._python")
_ASSEMBLY_FUNCTIONS = ("assemble",)
_ASSEMBLY_ROW = 512  # one wide-MLP input row per request


@dataclass(frozen=True, slots=True)
class MicroResult:
    name: str
    description: str
    native_us: float | None  # per call, best of the repeats
    python_us: float | None
    note: str = ""

    @property
    def speedup(self) -> float | None:
        if self.native_us and self.python_us:
            return self.python_us / self.native_us
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "native_us": self.native_us,
            "python_us": self.python_us,
            "speedup": self.speedup,
            "note": self.note,
        }


def _best_us(fn: Callable[[], object], budget: float) -> float:
    """Best per-call time in microseconds over repeats within ``budget`` seconds."""
    fn()
    best = float("inf")
    deadline = time.perf_counter() + budget
    repeats = 0
    while repeats < 3 or time.perf_counter() < deadline:
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
        repeats += 1
        if repeats >= 10_000:
            break
    return best * 1e6


def _twins() -> tuple[Any, Any, str]:
    from serving.codecs import _python

    try:
        from serving.codecs import _native  # type: ignore[attr-defined]
    except ImportError as exc:
        return None, _python, f"native codecs not built: {exc}"
    return _native, _python, ""


def _pair(
    name: str,
    description: str,
    native: Callable[[], object] | None,
    python: Callable[[], object],
    budget: float,
    note: str,
) -> MicroResult:
    return MicroResult(
        name,
        description,
        _best_us(native, budget) if native else None,
        _best_us(python, budget),
        note,
    )


def run_micro_benchmarks(budget: float = 2.0) -> list[MicroResult]:
    from serving.datatypes import by_name

    native, python, note = _twins()
    results = []

    rng = np.random.default_rng(5)
    strings = np.array(
        [
            bytes(rng.integers(97, 123, size=int(n)).astype(np.uint8))
            for n in rng.integers(4, 33, 10_000)
        ],
        dtype=object,
    )
    wire = python.encode_bytes(strings)
    results.append(
        _pair(
            "codec_bytes_decode_10k",
            "BYTES decode of 10k length-prefixed strings",
            (lambda: native.decode_bytes(wire, 10_000)) if native else None,
            lambda: python.decode_bytes(wire, 10_000),
            budget,
            note,
        )
    )

    fp32 = by_name("FP32")
    data = rng.standard_normal(150_000).astype(np.float32).tolist()
    shape = (1, 150_000)
    results.append(
        _pair(
            "codec_json_to_array_fp32_150k",
            "JSON data -> ndarray, 150k FP32 elements",
            (lambda: native.json_to_array(data, fp32, shape)) if native else None,
            lambda: python.json_to_array(data, fp32, shape),
            budget,
            note,
        )
    )
    results.extend(_json_text(native, python, budget, note, rng))
    results.append(_batch_assembly(budget))
    return results


def _json_text(
    native: Any, python: Any, budget: float, note: str, rng: np.random.Generator
) -> list[MicroResult]:
    """The JSON request and answer path: a "data" array's bytes -> ndarray (the native
    twin scans them; the pure-Python one runs json and json_to_array), and an output
    array -> its "data" text. Values as clients write them: float32 through repr (17
    digits) and short decimals."""
    import json

    from serving.datatypes import by_name

    fp32 = by_name("FP32")
    shape = (1, 150_000)
    results = []
    for label, values in (
        ("repr", rng.standard_normal(150_000).astype(np.float32).tolist()),
        ("short", np.round(rng.standard_normal(150_000), 4).tolist()),
    ):
        text = json.dumps(values).encode()
        results.append(
            _pair(
                f"codec_json_text_to_array_fp32_150k_{label}",
                f"JSON data bytes -> ndarray, 150k FP32 elements ({label} decimals)",
                (lambda t=text: native.json_text_to_array(t, 0, len(t), fp32, shape))
                if native
                else None,
                lambda t=text: python.json_text_to_array(t, 0, len(t), fp32, shape),
                budget,
                note,
            )
        )
    arr = rng.standard_normal(shape).astype(np.float32)
    results.append(
        _pair(
            "codec_array_to_json_text_fp32_150k",
            "ndarray -> JSON data text, 150k FP32 elements",
            (lambda: native.array_to_json_text(arr, fp32)) if native else None,
            lambda: python.array_to_json_text(arr, fp32),
            budget,
            note,
        )
    )
    return results


def _batch_assembly(budget: float) -> MicroResult:
    name = "batch_assembly_32"
    description = f"batch assembly from 32 requests ({_ASSEMBLY_ROW} FP32 each)"
    modules = []
    for module_name in _ASSEMBLY_TWINS:
        try:
            modules.append(importlib.import_module(module_name))
        except ImportError as exc:
            return MicroResult(name, description, None, None, f"skipped: {exc}")
    fns = []
    for module in modules:
        fn = next((getattr(module, f) for f in _ASSEMBLY_FUNCTIONS if hasattr(module, f)), None)
        if fn is None:
            return MicroResult(
                name,
                description,
                None,
                None,
                f"skipped: {module.__name__} has none of {list(_ASSEMBLY_FUNCTIONS)}",
            )
        fns.append(fn)
    rng = np.random.default_rng(9)
    parts = [rng.standard_normal((1, _ASSEMBLY_ROW)).astype(np.float32) for _ in range(32)]
    out = np.empty((32, _ASSEMBLY_ROW), dtype=np.float32)
    try:
        for fn in fns:
            out.fill(0)
            fn(parts, out)
            if not np.array_equal(out, np.concatenate(parts)):
                raise ValueError("assembled batch differs from the parts")
    except Exception as exc:
        return MicroResult(
            name, description, None, None, f"skipped: calling assemble(parts, out): {exc}"
        )
    native_fn, python_fn = fns
    return MicroResult(
        name,
        description,
        _best_us(lambda: native_fn(parts, out), budget),
        _best_us(lambda: python_fn(parts, out), budget),
    )
