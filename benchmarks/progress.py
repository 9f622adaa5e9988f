"""One progress line while a load runs: rich on a terminal, a plain line every few seconds
otherwise (CI logs stay short)."""

from __future__ import annotations

import sys
import time
from typing import Any

__all__ = ["Progress"]


class Progress:
    def __init__(self, plain_every: float = 5.0) -> None:
        self._console: Any = None
        self._status: Any = None
        self._plain_every = plain_every
        self._last_plain = 0.0
        if sys.stdout.isatty():
            try:
                from rich.console import Console

                self._console = Console()
            except ImportError:
                pass

    def log(self, text: str) -> None:
        if self._console is not None:
            self._console.print(text, highlight=False, markup=False)
        else:
            print(text, flush=True)

    def begin(self, title: str) -> None:
        if self._console is not None:
            self._status = self._console.status(title)
            self._status.start()
        else:
            print(f"  {title}", flush=True)
        self._title = title
        self._last_plain = time.monotonic()

    def load(self, elapsed: float, duration: float, ok: int, errors: int) -> None:
        phase = "warm-up" if elapsed < 0 else f"{elapsed:4.1f}/{duration:.0f}s"
        rate = ok / elapsed if elapsed > 0 else 0.0
        line = f"{self._title}  {phase}  {ok} ok  {errors} errors  {rate:,.0f} req/s"
        if self._status is not None:
            self._status.update(line)
        elif time.monotonic() - self._last_plain >= self._plain_every:
            self._last_plain = time.monotonic()
            print(f"    {line}", flush=True)

    def end(self, summary: str) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None
        self.log(f"  {summary}")
