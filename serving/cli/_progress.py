"""What ``sluice pull`` shows while it downloads."""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["PullDisplay"]


class PullDisplay:
    """A rich progress bar on a terminal; otherwise one line per file."""

    def __init__(self, mode: str) -> None:
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "lines"
        self.mode = mode
        self._progress: Any = None
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> PullDisplay:
        if self.mode == "bar":
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )  # fmt: skip

            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                TransferSpeedColumn(), TimeRemainingColumn(), transient=False,
            )  # fmt: skip
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def __call__(self, event: Any) -> None:
        if self._progress is not None:
            task = self._tasks.get(event.path)
            if event.kind in ("start", "cached") and task is None:
                task = self._tasks[event.path] = self._progress.add_task(
                    event.path, total=event.total
                )
            if task is not None and event.kind in (
                "progress",
                "start",
                "cached",
                "verified",
                "restart",
            ):
                self._progress.update(task, completed=event.done, total=event.total)
            if event.kind == "retry":
                self._progress.console.print(f"[yellow]retrying {event.path} at byte {event.done}")
            return
        if self.mode == "none":
            return
        if event.kind == "cached":
            print(f"{event.path}  {event.done} bytes  from cache", flush=True)
        elif event.kind == "verified":
            print(f"{event.path}  {event.done} bytes  {event.message}", flush=True)
        elif event.kind in ("retry", "restart"):
            detail = f": {event.message}" if event.message else ""
            print(f"{event.path}  {event.kind} at byte {event.done}{detail}", file=sys.stderr, flush=True)  # fmt: skip
