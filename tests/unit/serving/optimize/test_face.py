"""``serving.optimize``'s face: the parser's choices load nothing heavy; the rest on use."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("serving.config", "google.protobuf", "onnx", "onnxruntime", "numpy")


def _loaded_after(code: str) -> list[str]:
    probe = f"import sys\n{code}\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_building_the_sluice_parser_loads_no_generated_protobuf_code() -> None:
    # A protobuf runtime older than the generated code must fail in the command, as one
    # line, not while `sluice --help` is being assembled (tests/integration/test_cli.py).
    loaded = _loaded_after("from serving.cli._main import parser\nparser()")
    assert "serving.config" not in loaded


def test_the_choices_are_light_and_the_rest_loads_on_use() -> None:
    assert _loaded_after("from serving.optimize import LEVELS, QUANTIZE_MODES") == []
    loaded = _loaded_after("from serving.optimize import optimize_model")
    assert "serving.config" in loaded and "numpy" in loaded
