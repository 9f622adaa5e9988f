"""``sluice profile`` without its extra: one line naming it, before any server starts."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from serving.examples import write_repository

ROOT = Path(__file__).resolve().parents[4]

# The real command with the HDR histogram package absent, as after `pip install sluice[cpu]`.
_WITHOUT_HDRH = """
import sys
sys.modules["hdrh"] = None
from serving.cli import main
main(sys.argv[1:])
"""


def test_profile_without_hdrhistogram_is_one_line_naming_the_extra(tmp_path: Path) -> None:
    write_repository(tmp_path / "repo", ["mlp"])
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_HDRH, "profile", str(tmp_path / "repo" / "mlp"),
         "--concurrency", "1", "--duration", "1s", "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1
    found = re.fullmatch(
        r"sluice: error: sluice profile needs hdrhistogram [^\n]*pip install 'sluice\[(\w+)\]'\n",
        done.stderr,
    )
    assert found, done.stderr
    assert not out.exists()
    with (ROOT / "pyproject.toml").open("rb") as handle:
        extras = tomllib.load(handle)["project"]["optional-dependencies"]
    named = extras[found.group(1)]
    assert any(r.startswith("hdrhistogram") for r in named), named
    assert any(r.startswith("matplotlib") for r in named), named
