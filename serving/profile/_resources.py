"""CPU and memory of a server process tree, read from /proc while a load point runs.

CPU is the tree's user + system time over the wall time of the window, in cores (1.0 is
one core busy). Peak RSS is the largest sum of the tree's resident sets sampled during
the window; ``--workers`` children are included.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ResourceSample", "ResourceWindow", "process_tree"]

_PROC = Path("/proc")
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True, slots=True)
class ResourceSample:
    cpu_seconds: float  # the tree's user + system time during the window
    wall_seconds: float
    peak_rss_bytes: int

    @property
    def cpu_cores(self) -> float:
        return self.cpu_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (from each /proc/<n>/stat's parent pid)."""
    parents: dict[int, list[int]] = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    tree, queue = [], [pid]
    while queue:
        current = queue.pop()
        tree.append(current)
        queue.extend(parents.get(current, []))
    return tree


def _cpu_seconds(pid: int) -> float:
    stat = (_PROC / str(pid) / "stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime


def _rss_bytes(pid: int) -> int:
    for line in (_PROC / str(pid) / "status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _tree_usage(pid: int) -> tuple[float, int]:
    cpu, rss = 0.0, 0
    for member in process_tree(pid):
        try:
            cpu += _cpu_seconds(member)
            rss += _rss_bytes(member)
        except (OSError, ValueError, IndexError):
            pass  # exited between the listing and the read
    return cpu, rss


class ResourceWindow:
    """``with ResourceWindow(pid) as window: ...``; then ``window.sample``."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self._pid = pid
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True, name="sluice-profile-rss")
        self._peak = 0
        self._cpu0 = 0.0
        self._wall0 = 0.0
        self.sample = ResourceSample(0.0, 0.0, 0)

    def __enter__(self) -> ResourceWindow:
        self._cpu0, self._peak = _tree_usage(self._pid)
        self._wall0 = time.monotonic()
        self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.wait(self._interval):
            self._peak = max(self._peak, _tree_usage(self._pid)[1])

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        cpu, rss = _tree_usage(self._pid)
        wall = time.monotonic() - self._wall0
        self.sample = ResourceSample(cpu - self._cpu0, wall, max(self._peak, rss))
