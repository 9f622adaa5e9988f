"""Reading a process tree's CPU time and RSS from /proc."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from serving.profile import ResourceWindow, process_tree

MIB = 2**20
# The child starts a grandchild, then on each line it reads: "mem" holds 300 MiB of
# touched pages; "cpu" burns 0.5 s of its own CPU time. It answers "ok" after each.
CHILD = textwrap.dedent(
    """
    import subprocess, sys, time
    grandchild = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                                  stdin=subprocess.PIPE)
    held = None
    print("ok", flush=True)
    for line in sys.stdin:
        if line.strip() == "mem":
            held = bytearray(300 * 2**20)
            held[:: 4096] = b"x" * len(held[:: 4096])
        elif line.strip() == "cpu":
            start = time.process_time()
            while time.process_time() - start < 0.5:
                pass
        print("ok", flush=True)
    """
)


def test_window_sees_the_tree_cpu_time_and_peak_rss() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        assert child.stdout.readline().strip() == "ok"
        assert len(process_tree(child.pid)) == 2
        with ResourceWindow(child.pid) as window:
            for command in ("mem", "cpu"):
                child.stdin.write(command + "\n")
                child.stdin.flush()
                assert child.stdout.readline().strip() == "ok"
        sample = window.sample
        assert sample.peak_rss_bytes >= 300 * MIB
        # 0.5 s burned on purpose, less a clock tick; touching 300 MiB costs the rest
        assert 0.49 <= sample.cpu_seconds < 0.5 + 2.0
        assert sample.cpu_cores == sample.cpu_seconds / sample.wall_seconds
    finally:
        child.stdin.close()
        child.wait(timeout=10)
