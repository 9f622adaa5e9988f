#!/usr/bin/env bash
# Installs Sluice with its test dependencies into a virtualenv and runs the whole
# suite twice: once with the native (Cython) codecs and once with the pure-Python
# twins, then the OpenVINO leg in its own virtualenv (onnxruntime-openvino and
# onnxruntime cannot share one). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${SLUICE_TEST_VENV:-.venv-test}

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -e '.[cpu,test]'

echo "== mosquitto, the MQTT broker of the edge agent tests (Debian's package)"
if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "mosquitto is not installed and there is no apt-get here: install the broker" \
            "(Debian/Ubuntu package 'mosquitto') and rerun; the edge tests need it" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto
fi

echo "== generated protobuf code is current"
"$VENV/bin/python" scripts/gen_protos.py --check

echo "== lint and types"
"$VENV/bin/ruff" check serving registry_client edge_agent benchmarks tests scripts setup.py
"$VENV/bin/mypy"

echo "== MLflow server for the registry tests (its own virtualenv)"
bash scripts/setup_mlflow.sh

echo "== test suite, native codecs"
"$VENV/bin/python" -c 'import serving.codecs as c; assert c.IMPLEMENTATION == "native", c.IMPLEMENTATION; print("codecs:", c.IMPLEMENTATION)'
"$VENV/bin/python" -m pytest -p no:cacheprovider "$@"

echo "== test suite, pure-Python codecs (SLUICE_NO_EXTENSIONS=1)"
SLUICE_NO_EXTENSIONS=1 "$VENV/bin/python" -m pytest -p no:cacheprovider "$@"

echo "== the newest protobuf runtime (the suite ran on 6: tritonclient[grpc] pins protobuf<7)"
PB7_VENV=${SLUICE_PROTOBUF7_VENV:-.venv-protobuf7}
if [ ! -x "$PB7_VENV/bin/python" ]; then
    "$PYTHON" -m venv "$PB7_VENV"
fi
"$PB7_VENV/bin/python" -m pip install -q -e '.[cpu]' pytest 'protobuf>=7,<8'
"$PB7_VENV/bin/python" -m pytest -p no:cacheprovider -q tests/unit/serving/config/test_load.py \
    tests/unit/serving/grpc/test_codec.py tests/unit/serving/test_manager.py

if [ "${SLUICE_SKIP_OPENVINO:-0}" != "1" ]; then
    echo "== OpenVINO execution provider leg"
    bash scripts/ci_openvino.sh
fi
