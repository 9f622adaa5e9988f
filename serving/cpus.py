"""How many CPUs this process may use: its affinity mask and its container's CPU limit.

In a Kubernetes pod ``os.cpu_count()`` and even the affinity mask name the node's CPUs, while
the pod may use only ``resources.limits.cpu`` worth of CPU time: that limit is the cgroup's CFS
bandwidth (cgroup v2 ``cpu.max``, v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``). Sizing
thread pools by the node oversubscribes the pod, and the kernel throttles it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

__all__ = ["available_cores", "cgroup_cpu_limit"]

_CGROUP_ROOT = Path("/sys/fs/cgroup")
_OWN_CGROUP = Path("/proc/self/cgroup")


def available_cores(
    *,
    cgroup_root: Path = _CGROUP_ROOT,
    own_cgroup: Path = _OWN_CGROUP,
    affinity: int | None = None,
) -> int:
    """The CPUs this process may use: its affinity mask and its container's CPU limit (a
    pod's ``resources.limits.cpu``), whichever is smaller, rounded up, at least 1."""
    if affinity is None:
        try:
            affinity = len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            affinity = os.cpu_count() or 1
    limit = cgroup_cpu_limit(cgroup_root, own_cgroup)
    if limit is not None:
        affinity = min(affinity, math.ceil(limit))
    return max(1, affinity)


def cgroup_cpu_limit(root: Path, own_cgroup: Path) -> float | None:
    """CPUs' worth of time per period the cgroup allows (cgroup v2 ``cpu.max``, v1
    ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``); the tightest along the process's cgroup
    and its parents, since limits nest; None when nothing limits it."""
    limits = [limit for directory in _cgroup_dirs(root, own_cgroup) if (limit := _limit(directory))]
    return min(limits) if limits else None


def _cgroup_dirs(root: Path, own_cgroup: Path) -> list[Path]:
    """The process's cgroup directories (v2 and v1 ``cpu``) and their parents up to ``root``.

    Inside a container with its own cgroup namespace the process's path is ``/``, which is
    ``root`` itself."""
    try:
        lines = own_cgroup.read_text().splitlines()
    except OSError:
        lines = []
    found: list[Path] = []
    for line in lines:
        _, _, rest = line.partition(":")
        controllers, sep, path = rest.partition(":")
        if not sep or (controllers and "cpu" not in controllers.split(",")):
            continue
        base = root / controllers if controllers else root
        if controllers and not base.is_dir():
            base = root / "cpu"
        directory = base / path.strip("/")
        while directory != base and not directory.is_dir():
            directory = directory.parent  # the path of another namespace: start at the top
        found.append(directory)
        while directory != base:
            directory = directory.parent
            found.append(directory)
    return found or [root, root / "cpu"]


def _limit(directory: Path) -> float | None:
    try:
        quota, period = (directory / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        try:
            quota = (directory / "cpu.cfs_quota_us").read_text().strip()
            period = (directory / "cpu.cfs_period_us").read_text().strip()
        except OSError:
            return None
    if quota in ("max", "-1"):
        return None
    try:
        return int(quota) / int(period) if int(quota) > 0 and int(period) > 0 else None
    except ValueError:
        return None
