"""Registers models through MLflow's own client; run with .venv-mlflow's Python.

usage: mlflow_helper.py URI run NAME FILE [--alias A] [--git-commit C]
       mlflow_helper.py URI logged NAME FILE [--alias A]
       mlflow_helper.py URI alias NAME ALIAS VERSION
Prints {"version": N}.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile

import mlflow
from mlflow import MlflowClient


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("uri")
    p.add_argument("how", choices=["run", "logged", "alias"])
    p.add_argument("name")
    p.add_argument("args", nargs="+")
    p.add_argument("--alias")
    p.add_argument("--git-commit")
    a = p.parse_args()
    mlflow.set_tracking_uri(a.uri)
    client = MlflowClient()
    if a.how == "alias":
        client.set_registered_model_alias(a.name, a.args[0], a.args[1])
        print(json.dumps({"version": int(a.args[1])}))
        return
    path = a.args[0]
    if a.how == "run":
        with mlflow.start_run() as run:
            mlflow.log_artifact(path, artifact_path="model")
            if a.git_commit:
                mlflow.set_tag("mlflow.source.git.commit", a.git_commit)
        try:
            client.create_registered_model(a.name)
        except mlflow.exceptions.MlflowException:
            pass
        mv = client.create_model_version(
            a.name, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id
        )
    else:
        from mlflow.entities import LoggedModelStatus

        with mlflow.start_run() as run, tempfile.TemporaryDirectory() as tmp:
            shutil.copy(path, f"{tmp}/model.onnx")
            model = mlflow.initialize_logged_model(name="model", source_run_id=run.info.run_id)
            client.log_model_artifacts(model.model_id, tmp)
            mlflow.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
        mv = mlflow.register_model(f"models:/{model.model_id}", a.name)
    if a.alias:
        client.set_registered_model_alias(a.name, a.alias, mv.version)
    print(json.dumps({"version": int(mv.version)}))


if __name__ == "__main__":
    main()
