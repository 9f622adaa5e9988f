"""The model repository on disk: ``<repository>/<model>/[config.pbtxt]`` and ``<model>/<version>/``.

Scanning is cheap and side-effect free so a poller can run it often; loading is
the manager's business.
"""

from __future__ import annotations

import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from serving.backends import model_filename
from serving.config import model_config_pb2 as pb
from serving.errors import NotFound

__all__ = [
    "DEFAULT_MODEL_FILENAME",
    "ModelDirectory",
    "fingerprint",
    "model_file",
    "scan_model_dir",
    "scan_repository",
    "select_versions",
]

DEFAULT_MODEL_FILENAME = "model.onnx"
_CONFIG_FILENAME = "config.pbtxt"


@dataclass(frozen=True, slots=True)
class ModelDirectory:
    name: str
    path: Path
    versions: tuple[int, ...]  # ascending


def _version_of(entry: Path) -> int | None:
    """A version directory is named by a non-negative integer in canonical form ("7", not "07")."""
    name = entry.name
    if not (name.isascii() and name.isdigit()) or str(int(name)) != name:
        return None
    return int(name) if entry.is_dir() else None


def _visible(entry: Path) -> bool:
    return not entry.name.startswith(".")


def scan_model_dir(model_dir: Path) -> ModelDirectory:
    """List the numeric version directories of one model."""
    versions = sorted(
        v
        for entry in model_dir.iterdir()
        if _visible(entry) and (v := _version_of(entry)) is not None
    )
    return ModelDirectory(model_dir.name, model_dir, tuple(versions))


def scan_repository(path: Path) -> dict[str, ModelDirectory]:
    """Map each model name to its directory; hidden entries and plain files are skipped.

    A model directory without version directories is still listed (with no
    versions) so the repository index can report it as unavailable.
    """
    path = Path(path)
    if not path.is_dir():
        raise NotFound(f"model repository {path} is not a directory")
    models = {}
    for entry in sorted(path.iterdir()):
        if _visible(entry) and entry.is_dir():
            models[entry.name] = scan_model_dir(entry)
    return models


def select_versions(policy: pb.ModelVersionPolicy, available: Sequence[int]) -> list[int]:
    """Apply a version policy to the versions on disk; ascending.

    No policy set means Triton's default, the latest version. Specific versions
    missing from disk are simply absent from the result.
    """
    on_disk = sorted(set(available))
    choice = policy.WhichOneof("policy_choice")
    if choice == "all":
        return on_disk
    if choice == "specific":
        wanted = set(policy.specific.versions)
        return [v for v in on_disk if v in wanted]
    count = policy.latest.num_versions if choice == "latest" else 1
    return on_disk[-count:] if count > 0 else []


def model_file(model_dir: Path, version: int, cfg: pb.ModelConfig) -> Path:
    """The model file of one version: ``default_model_filename``, else the backend's
    (``model.py`` for a Python model, serving.backends), else ``model.onnx``."""
    return Path(model_dir) / str(version) / model_filename(cfg, DEFAULT_MODEL_FILENAME)


def fingerprint(version_dir: Path) -> tuple[tuple[str, int, int], ...]:
    """A cheap change token for one version directory ``<model>/<version>``.

    It covers the model's ``config.pbtxt`` and every file below the version
    directory (external weights included), as (relative name, mtime_ns, size);
    files that vanish mid-scan are left out. Compare two tokens with ``==``.
    """
    version_dir = Path(version_dir)
    candidates = [(_CONFIG_FILENAME, version_dir.parent / _CONFIG_FILENAME)]
    if version_dir.is_dir():
        candidates += [
            (entry.relative_to(version_dir).as_posix(), entry)
            for entry in sorted(version_dir.rglob("*"))
        ]
    token = []
    for name, entry in candidates:
        try:
            info = entry.stat()
        except OSError:
            continue
        if stat.S_ISREG(info.st_mode):
            token.append((name, info.st_mtime_ns, info.st_size))
    return tuple(token)
