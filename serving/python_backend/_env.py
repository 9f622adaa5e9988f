"""A Python model's own environment: a virtual environment built from its requirements.txt.

Environments are cached by the hash of the requirements file (and the Python
version) under ``<cache dir>/python-envs/<key>``; the lock (``pip freeze`` of what
was installed) is written beside it as ``<key>.lock``. A build happens once: later
loads, and other models with the same file, reuse it. A model's worker runs with the
environment's interpreter; the server's own packages (numpy, Sluice's worker) come
after the environment's on its path.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import venv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from serving.errors import InvalidArgument

__all__ = [
    "REQUIREMENTS",
    "BuildFailed",
    "Environment",
    "build_environment",
    "built_environment",
    "environment_root",
    "requirements_of",
]

REQUIREMENTS = "requirements.txt"
_PIP_TIMEOUT_SECS = 1800


class BuildFailed(InvalidArgument):
    """pip could not install a model's requirements; the message is pip's reason."""


@dataclass(frozen=True, slots=True)
class Environment:
    path: Path  # the virtual environment
    python: Path  # its interpreter
    lock: Path  # the exact versions installed, one requirement a line

    def locked(self) -> list[str]:
        return [line for line in self.lock.read_text().splitlines() if line.strip()]


def environment_root(cache_dir: Path | None) -> Path:
    """``<cache dir>/python-envs``; the cache dir is --cache-dir, else ~/.cache/sluice."""
    if cache_dir is None:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        cache_dir = Path(base) / "sluice"
    return Path(cache_dir) / "python-envs"


def requirements_of(model_dir: Path, version: int | None = None) -> Path | None:
    """The requirements.txt of a version (``<model>/<version>/``), else of the model."""
    candidates = [model_dir / str(version) / REQUIREMENTS] if version is not None else []
    candidates.append(model_dir / REQUIREMENTS)
    return next((c for c in candidates if c.is_file()), None)


def _key(requirements: Path) -> str:
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()[:20]
    return f"py{sys.version_info.major}{sys.version_info.minor}-{digest}"


def _environment(root: Path, key: str) -> Environment:
    path = root / key
    return Environment(path, path / "bin" / "python", root / f"{key}.lock")


def built_environment(requirements: Path, cache_dir: Path | None) -> Environment | None:
    """The environment of ``requirements`` when it has been built, else None."""
    env = _environment(environment_root(cache_dir), _key(requirements))
    return env if env.python.exists() and env.lock.is_file() else None


def _pip_reason(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR:")]
    return " ".join(errors or lines[-3:]) or "pip failed without a message"


def _pip(python: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [str(python), "-m", "pip", "--disable-pip-version-check", "--no-input", *args]
    return subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=_PIP_TIMEOUT_SECS, check=False
    )


def build_environment(
    requirements: Path,
    cache_dir: Path | None,
    progress: Callable[[str], None] = lambda line: None,
) -> Environment:
    """Build (once) the environment of ``requirements``; raise ``BuildFailed`` with pip's
    reason when its packages cannot be installed. Processes building the same file wait
    for each other instead of building it twice."""
    requirements = Path(requirements).resolve()
    root = environment_root(cache_dir)
    root.mkdir(parents=True, exist_ok=True)
    key = _key(requirements)
    env = _environment(root, key)
    with open(root / f".{key}.building", "w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        if env.python.exists() and env.lock.is_file():
            progress(f"environment {env.path} is already built")
            return env
        staging = root / f".{key}.{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        progress(f"building environment {env.path} from {requirements}")
        try:
            venv.EnvBuilder(with_pip=True, symlinks=True).create(staging)
            python = staging / "bin" / "python"
            done = _pip(python, "install", "-r", str(requirements), cwd=requirements.parent)
            if done.returncode != 0:
                raise BuildFailed(
                    f"pip could not install {requirements}: {_pip_reason(done.stderr + done.stdout)}"
                )
            frozen = _pip(python, "freeze", "--all", cwd=requirements.parent)
            if frozen.returncode != 0:
                raise BuildFailed(f"pip freeze failed: {_pip_reason(frozen.stderr)}")
            shutil.rmtree(env.path, ignore_errors=True)
            staging.rename(env.path)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        env.lock.write_text(frozen.stdout)
        progress(f"environment {env.path} built; lock written to {env.lock}")
        return env
