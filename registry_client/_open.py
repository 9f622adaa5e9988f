"""Choosing a registry by URI.

- ``mlflow+http://HOST:PORT`` / ``mlflow+https://...``: an MLflow tracking server.
- ``file:///PATH`` or a plain path: a local registry directory.
- nothing: ``SLUICE_REGISTRY``, else ``MLFLOW_TRACKING_URI`` when it is http(s) (as
  MLflow's own client reads it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from registry_client._errors import InvalidReference
from registry_client._local import LocalRegistry
from registry_client._mlflow import MlflowRegistry, parse_mlflow_uri
from registry_client._options import HttpOptions

__all__ = ["default_registry_uri", "open_registry"]


def default_registry_uri(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    if env.get("SLUICE_REGISTRY"):
        return env["SLUICE_REGISTRY"]
    tracking = env.get("MLFLOW_TRACKING_URI", "")
    if tracking.startswith(("http://", "https://")):
        return f"mlflow+{tracking}"
    raise InvalidReference(
        "no registry given: pass --registry URI or set SLUICE_REGISTRY or MLFLOW_TRACKING_URI"
    )


def open_registry(
    uri: str | None = None,
    *,
    options: HttpOptions | None = None,
    transport: Any = None,
    env: Mapping[str, str] | None = None,
    create: bool = False,
) -> LocalRegistry | MlflowRegistry:
    """The registry ``uri`` names; ``create`` makes a missing local registry directory."""
    uri = uri or default_registry_uri(env)
    if uri.startswith(("mlflow+http://", "mlflow+https://", "http://", "https://")):
        return MlflowRegistry(parse_mlflow_uri(uri), options=options, transport=transport, env=env)
    if uri.startswith("mlflow+") or uri == "databricks":
        raise InvalidReference(f"registry URI {uri!r}: only mlflow+http(s)://HOST:PORT is supported")  # fmt: skip
    if uri.startswith("file://"):
        path = uri.removeprefix("file://")
    elif "://" in uri:
        raise InvalidReference(f"registry URI {uri!r}: unknown scheme")
    else:
        path = uri
    return LocalRegistry(Path(path), create=create)
