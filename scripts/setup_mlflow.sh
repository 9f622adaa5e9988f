#!/usr/bin/env bash
# Creates .venv-mlflow: a virtualenv holding the real MLflow server and client that
# the registry integration tests start (tests/integration/registry). MLflow lives
# apart from Sluice's own environment so its large dependency tree (pandas, pyarrow,
# scikit-learn, Flask, ...) can never move a Sluice dependency. Idempotent: a venv
# whose mlflow already imports is left as it is.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${SLUICE_MLFLOW_VENV:-.venv-mlflow}
SPEC=${SLUICE_MLFLOW_SPEC:-mlflow>=3.1,<4}

if [ -x "$VENV/bin/mlflow" ] && "$VENV/bin/python" -c 'import mlflow, onnx' 2>/dev/null; then
    echo "mlflow: $("$VENV/bin/python" -c 'import mlflow; print(mlflow.__version__)') in $VENV"
    exit 0
fi
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q "$SPEC" onnx
echo "mlflow: $("$VENV/bin/python" -c 'import mlflow; print(mlflow.__version__)') in $VENV"
