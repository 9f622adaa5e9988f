"""The default core count honours the container's CPU limit and the affinity mask."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving.cpus import available_cores, cgroup_cpu_limit


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _cores(root: Path, own: str | None, affinity: int = 8) -> int:
    membership = root / "proc-self-cgroup"
    if own is not None:
        membership.write_text(own)
    return available_cores(cgroup_root=root / "fs", own_cgroup=membership, affinity=affinity)


@pytest.mark.parametrize(
    ("cpu_max", "cores"),
    [
        ("200000 100000\n", 2),  # limits.cpu: 2
        ("150000 100000\n", 2),  # 1.5 CPUs: rounded up
        ("50000 100000\n", 1),  # half a CPU: at least 1
        ("1600000 100000\n", 8),  # more than the affinity mask allows
        ("max 100000\n", 8),  # no limit
    ],
)
def test_cgroup_v2_cpu_max(tmp_path: Path, cpu_max: str, cores: int) -> None:
    _write(tmp_path / "fs" / "cpu.max", cpu_max)
    assert _cores(tmp_path, "0::/\n") == cores


def test_cgroup_v2_limits_nest(tmp_path: Path) -> None:
    """A pod's limit sits on the pod's cgroup; the container's own may be unlimited."""
    fs = tmp_path / "fs"
    _write(fs / "kubepods" / "pod1" / "cpu.max", "300000 100000\n")
    _write(fs / "kubepods" / "pod1" / "c1" / "cpu.max", "max 100000\n")
    assert _cores(tmp_path, "0::/kubepods/pod1/c1\n") == 3
    _write(fs / "kubepods" / "pod1" / "c1" / "cpu.max", "100000 100000\n")
    assert _cores(tmp_path, "0::/kubepods/pod1/c1\n") == 1


def test_a_cgroup_path_from_another_namespace_reads_the_mounted_root(tmp_path: Path) -> None:
    """Without a cgroup namespace the process names its host path, while the container's
    cgroup is mounted at the root of /sys/fs/cgroup."""
    _write(tmp_path / "fs" / "cpu.max", "400000 100000\n")
    assert _cores(tmp_path, "0::/system.slice/docker-abc.scope\n") == 4


@pytest.mark.parametrize(("quota", "cores"), [("250000", 3), ("-1", 8)])
def test_cgroup_v1_cfs_quota(tmp_path: Path, quota: str, cores: int) -> None:
    cpu = tmp_path / "fs" / "cpu,cpuacct"
    _write(cpu / "cpu.cfs_quota_us", f"{quota}\n")
    _write(cpu / "cpu.cfs_period_us", "100000\n")
    own = "12:memory:/docker/abc\n5:cpu,cpuacct:/docker/abc\n0::/docker/abc\n"
    assert _cores(tmp_path, own) == cores


def test_cgroup_v1_without_the_membership_file(tmp_path: Path) -> None:
    _write(tmp_path / "fs" / "cpu" / "cpu.cfs_quota_us", "200000\n")
    _write(tmp_path / "fs" / "cpu" / "cpu.cfs_period_us", "100000\n")
    assert _cores(tmp_path, None) == 2


@pytest.mark.parametrize("affinity", [1, 3])
def test_the_affinity_mask_when_it_is_smaller(tmp_path: Path, affinity: int) -> None:
    _write(tmp_path / "fs" / "cpu.max", "400000 100000\n")
    assert _cores(tmp_path, "0::/\n", affinity=affinity) == affinity


def test_no_cgroup_files_leave_the_affinity_mask(tmp_path: Path) -> None:
    assert _cores(tmp_path, "0::/\n", affinity=5) == 5
    assert cgroup_cpu_limit(tmp_path / "absent", tmp_path / "absent") is None


def test_unreadable_limits_are_ignored(tmp_path: Path) -> None:
    _write(tmp_path / "fs" / "cpu.max", "garbage\n")
    assert _cores(tmp_path, "0::/\nnot a cgroup line\n", affinity=6) == 6
