from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

GOOD = 'device_id = "d"\nstate_dir = "s"\nregistry = "file:///r"\n[mqtt]\nurl = "mqtt://b:1883"\n'


@pytest.mark.parametrize("command", [["edge_agent"], ["serving", "edge"]])
def test_check_config_prints_defaults_or_refuses_with_the_key(tmp_path: Path, command: list[str]) -> None:  # fmt: skip
    good = tmp_path / "good.toml"
    good.write_text(GOOD)
    out = subprocess.run([sys.executable, "-m", *command, "check-config", "--config", str(good)],
                         capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert f"state_dir = PosixPath('{tmp_path / 's'}')" in out.stdout  # relative to the file
    assert "outbox.policy = 'drop_oldest'" in out.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text(GOOD + "[outbox]\nttl_secs = 0\n")
    out = subprocess.run([sys.executable, "-m", *command, "check-config", "--config", str(bad)],
                         capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 2
    assert "bad config: outbox.ttl_secs: must be at least 1" in out.stderr
