"""Each atheris target runs briefly, in its own process, and finds no crash.

A bounded smoke run for CI (about a second of fuzzing per target); longer runs
are ``python -m tests.fuzz.runner --seconds 600``. In the native leg the native
codec twin must be the one fuzzed; the target refuses to start otherwise.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("atheris")

from tests.fuzz.fuzz_codecs import TARGETS, expected_implementation
from tests.fuzz.runner import run_target

pytestmark = pytest.mark.fuzz


@pytest.mark.parametrize("target", list(TARGETS))
def test_target_runs_without_crashing(target: str, tmp_path: Path) -> None:
    result = run_target(target, tmp_path, seconds=1, seed=1)
    twin = f"fuzzing {target} with the {expected_implementation()} codec twin"
    assert twin in result.output, result.output[-3000:]
    crashes = "\n".join(f"{p.name}: {p.read_bytes()[:200]!r}" for p in result.crashes)
    assert result.ok, f"exit {result.returncode}\n{crashes}\n{result.output[-4000:]}"
    assert "Done " in result.output  # libFuzzer finished its bounded run
