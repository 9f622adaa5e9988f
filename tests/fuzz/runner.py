"""Run the atheris targets of ``tests.fuzz.fuzz_codecs`` for a bounded time, each in a subprocess.

``python -m tests.fuzz.runner [--seconds S] [--runs N] [TARGET ...]`` runs the
targets (all by default) one after the other and exits non-zero if any crashed;
crash inputs are kept in ``--workdir``. The address space of each run is capped,
so an array allocated before its size check fails at once (and is reported as a
crash) instead of filling the machine's memory.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["FuzzResult", "main", "run_target"]

ROOT = Path(__file__).resolve().parents[2]
ADDRESS_SPACE_LIMIT = 6 << 30  # bytes; far above what a run needs, far below the machine


@dataclass(frozen=True)
class FuzzResult:
    target: str
    returncode: int
    crashes: tuple[Path, ...]  # crash-*, leak-*, oom-* and timeout-* inputs libFuzzer saved
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.crashes


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_LIMIT, ADDRESS_SPACE_LIMIT))


def run_target(
    target: str,
    workdir: Path,
    *,
    seconds: float | None = None,
    runs: int | None = None,
    seed: int = 1,
) -> FuzzResult:
    """Fuzz ``target`` until ``seconds`` pass or ``runs`` inputs ran (whichever is given)."""
    workdir.mkdir(parents=True, exist_ok=True)
    corpus = workdir / f"corpus-{target}"
    corpus.mkdir(exist_ok=True)
    flags = [f"-seed={seed}", f"-artifact_prefix={workdir}/", "-rss_limit_mb=2048", "-timeout=20"]
    if seconds is not None:
        flags.append(f"-max_total_time={max(1, round(seconds))}")
    if runs is not None:
        flags.append(f"-runs={runs}")
    cmd = [sys.executable, "-m", "tests.fuzz.fuzz_codecs", target, *flags, str(corpus)]
    proc = subprocess.run(
        cmd,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        errors="replace",
        preexec_fn=_limit_memory,
        timeout=(seconds or 60) + 120,
    )
    crashes = tuple(
        sorted(
            p
            for p in workdir.iterdir()
            if p.name.startswith(("crash-", "leak-", "oom-", "timeout-"))
        )
    )
    return FuzzResult(target, proc.returncode, crashes, proc.stdout + proc.stderr)


def main(argv: list[str] | None = None) -> int:
    from tests.fuzz.fuzz_codecs import TARGETS

    parser = argparse.ArgumentParser(prog="python -m tests.fuzz.runner", description=__doc__)
    parser.add_argument("targets", nargs="*", help=f"default: all of {list(TARGETS)}")
    parser.add_argument("--seconds", type=float, default=10.0, help="per target (default 10)")
    parser.add_argument("--runs", type=int, default=None, help="stop after this many inputs")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary dir")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="sluice-fuzz-"))
    failed = 0
    for target in args.targets or list(TARGETS):
        result = run_target(
            target, workdir / target, seconds=args.seconds, runs=args.runs, seed=args.seed
        )
        done = [line for line in result.output.splitlines() if line.startswith("Done ")]
        summary = done[-1] if done else f"exit {result.returncode}"
        print(f"{target}: {'ok' if result.ok else 'FAILED'} ({summary})")
        if not result.ok:
            failed += 1
            print(result.output[-4000:])
            for crash in result.crashes:
                print(f"  crash input: {crash}")
    print(f"workdir: {workdir}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
