"""``sluice registry push``: copy a version to MLflow with the digests MLflow lacks.

The files are uploaded through the artifact proxy into a new run
(``<run artifacts>/model/...``) together with ``sluice-manifest.json``; the version is
created with source ``runs:/RUN/model`` and tagged with its lineage, so a later pull
from MLflow verifies every byte against the digests of the local registry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path

from registry_client._errors import UnsupportedSource
from registry_client._local import LocalRegistry
from registry_client._manifest import MANIFEST_NAME, build_manifest
from registry_client._mlflow import MlflowRegistry
from registry_client._reference import ModelReference

__all__ = ["push_to_mlflow"]


async def push_to_mlflow(
    source: LocalRegistry | MlflowRegistry,
    ref: ModelReference,
    target: MlflowRegistry,
    *,
    name: str | None = None,
    aliases: Iterable[str] = (),
    experiment_id: str = "0",
) -> int:
    """Push the version ``ref`` names in ``source``; returns the new MLflow version number."""
    if not isinstance(source, LocalRegistry) or not isinstance(target, MlflowRegistry):
        raise UnsupportedSource("push copies from a local registry to an MLflow server")
    version = await source.resolve(ref)
    lineage = version.lineage
    tags = {
        "sluice.source": f"{version.registry}#{version.name}/{version.version}",
        **({"sluice.git_commit": lineage.git_commit} if lineage.git_commit else {}),
        **({"sluice.dataset": lineage.dataset} if lineage.dataset else {}),
    }
    run_tags = dict(tags)
    if lineage.git_commit:
        run_tags["mlflow.source.git.commit"] = lineage.git_commit
    run = await target.create_run(experiment_id, run_tags)
    artifact_uri = str(run["artifact_uri"])
    if not artifact_uri.startswith("mlflow-artifacts:"):
        raise UnsupportedSource(
            f"run artifacts go to {artifact_uri!r}, not through the artifact proxy; "
            "start MLflow with --serve-artifacts"
        )
    root = artifact_uri.partition(":")[2].lstrip("/").rstrip("/") + "/model"
    for f in version.files:
        content = await asyncio.to_thread(Path(f.source).read_bytes)
        await target.upload_artifact(f"{root}/{f.path}", content)
    await target.upload_artifact(f"{root}/{MANIFEST_NAME}", build_manifest(version.files))
    await target.finish_run(str(run["run_id"]))
    number = await target.create_version(
        name or version.name,
        f"runs:/{run['run_id']}/model",
        str(run["run_id"]),
        {**lineage.tags, **tags},
        lineage.description,
    )
    for alias in aliases:
        await target.set_alias(name or version.name, alias, number)
    return number
