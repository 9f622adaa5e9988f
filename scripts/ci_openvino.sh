#!/usr/bin/env bash
# Build a fresh virtualenv with the onnxruntime-openvino flavour and run the tests marked
# `openvino` (they need OpenVINOExecutionProvider, which the plain onnxruntime wheel lacks).
#
#   scripts/ci_openvino.sh [VENV_DIR]      default VENV_DIR: .venv-openvino
#
# Notes on onnxruntime-openvino (checked with 1.24.1 on Linux x86_64, Python 3.11):
# - the wheel bundles the OpenVINO runtime (libopenvino*.so); no separate `openvino` package.
# - it installs the same `onnxruntime` module as the other flavours: never install it beside
#   `onnxruntime` or `onnxruntime-gpu` in one environment.
# - `import onnxruntime.tools.add_openvino_win_libs` is needed on Windows only.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$ROOT/.venv-openvino}"
PYTHON="${PYTHON:-python3}"

rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
SLUICE_NO_EXTENSIONS=1 "$VENV/bin/python" -m pip install --quiet -e "$ROOT[openvino,test]"

"$VENV/bin/python" - <<'PY'
import importlib.metadata as md
import onnxruntime as ort
print("onnxruntime-openvino", md.version("onnxruntime-openvino"), ort.get_available_providers())
assert "OpenVINOExecutionProvider" in ort.get_available_providers()
PY

cd "$ROOT"
SLUICE_NO_EXTENSIONS=1 "$VENV/bin/python" -m pytest -p no:cacheprovider -m openvino -q tests/unit tests/integration
