"""``sluice profile REF`` and ``--registry URI``: a model from a registry, the result as tags.

A reference (``models:/NAME/3``, ``NAME@champion``, ``NAME``) is pulled with
``registry_client`` into a temporary repository, profiled there, and the repository is
removed. With ``--registry`` the recommendation is recorded as ``sluice.profile.*`` tags on
the version profiled: the reference's, or for a model directory the version its
``lineage.json`` (written by ``sluice pull``) names. A directory that was not pulled from
that registry is refused before anything runs, so no tag lands on another model's version.
Tags are recorded only when a configuration met the SLO; a refusal records nothing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import tempfile
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from serving.convert import ToolError
from serving.profile._grid import Configuration, LoadPoint
from serving.profile._profiler import ProfileRequest, run_profile
from serving.profile._report import write_json

__all__ = ["TAG_PREFIX", "RegistryVersion", "profile_source", "profile_tags"]

TAG_PREFIX = "sluice.profile."
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RegistryVersion:
    registry: str  # the registry's URI, as registry_client names it
    name: str
    version: int

    def to_json(self) -> dict[str, Any]:
        return {"registry": self.registry, "name": self.name, "version": self.version}


def profile_source(
    request: ProfileRequest,
    source: str,
    registry: str | None,
    step: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Profile ``source`` (a model directory or a registry reference); with ``registry``,
    record the result as tags on the version profiled. Returns the report."""
    path = Path(source)
    if path.is_dir():
        target = _run(_lineage_version(path, registry)) if registry else None
        report = run_profile(replace(request, model_dir=path), step)
    else:
        reference = _reference(source)
        with tempfile.TemporaryDirectory(prefix="sluice-profile-pull-") as tmp:
            model_dir, pulled = _run(_pull(reference, registry, Path(tmp)))
            try:
                report = run_profile(replace(request, model_dir=model_dir), step)
            except ToolError as exc:
                raise ToolError(f"{source} ({pulled.name} version {pulled.version}): "
                                f"{exc.message}") from None  # fmt: skip
        report["model_dir"] = None  # the temporary repository is gone
        report["reference"] = source
        report["pulled"] = pulled.to_json()
        target = pulled if registry else None
    if target is not None:
        tags = profile_tags(report)
        _run(_record(registry, target, tags))
        report["registry_tags"] = {**target.to_json(), "tags": tags}
    if target is not None or not path.is_dir():
        write_json(report, Path(report["outputs"]["json"]))
    return report


def profile_tags(report: dict[str, Any]) -> dict[str, str]:
    """The recommendation as string tags, each under ``TAG_PREFIX``."""
    rec = report["recommendation"]
    best = report["points"][rec["point"]]
    load = best["load"]
    point = LoadPoint(load["mode"], load.get("concurrency", load.get("rate", 0)))
    slo, held = report.get("slo_p99_ms"), report.get("rerun_slo_held")
    cfg = best["configuration"]
    tags = {
        "configuration": "as running" if cfg is None else Configuration(**cfg).label(),
        "load": point.label(),
        "throughput": f"{best['throughput']:.1f}",
        "p99_ms": f"{best['latency_ms']['p99']:.3f}",
        "slo_p99_ms": "" if slo is None else f"{slo:g}",
        "rerun_slo_held": "" if held is None else str(held).lower(),
        "cpu_request": "" if rec["cpu_request_cores"] is None else f"{rec['cpu_request_cores']:g}",
        "memory_request": rec["memory_request"] or "",
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    return {TAG_PREFIX + key: value for key, value in tags.items()}


def _reference(source: str) -> Any:
    from registry_client import RegistryError, parse_reference

    try:
        return parse_reference(source)
    except RegistryError as exc:
        raise ToolError(f"{source} is neither a model directory nor a registry reference "
                        f"({exc.message})") from None  # fmt: skip


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    from registry_client import RegistryError

    try:
        return asyncio.run(coroutine)
    except RegistryError as exc:
        raise ToolError(exc.message) from None


async def _pull(reference: Any, registry: str | None, into: Path) -> tuple[Path, RegistryVersion]:
    from registry_client import Puller, open_registry

    async with open_registry(registry) as opened:
        result = await Puller(opened, into).pull(reference)
    version_dir = result.path
    model_dir = version_dir.parent
    if (version_dir / "config.pbtxt").is_file() and not (model_dir / "config.pbtxt").exists():
        shutil.copyfile(version_dir / "config.pbtxt", model_dir / "config.pbtxt")
    found = result.version
    return model_dir, RegistryVersion(found.registry, found.name, found.version)


async def _lineage_version(model_dir: Path, registry: str) -> RegistryVersion:
    """The registry version the newest version directory was pulled as, from that registry."""
    from registry_client import open_registry, read_lineage

    versions = sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())
    lineage = read_lineage(model_dir / str(versions[-1])) if versions else None
    if lineage is None:
        raise ToolError(f"{model_dir} was not pulled from a registry (no lineage.json in its "
                        "newest version): profile its registry reference instead")  # fmt: skip
    async with open_registry(registry) as opened:
        uri = opened.uri
    if lineage.get("registry") != uri:
        raise ToolError(f"{model_dir}/{versions[-1]} was pulled from {lineage.get('registry')}, "
                        f"not {uri}: its tags belong there")  # fmt: skip
    return RegistryVersion(uri, str(lineage["name"]), int(lineage["version"]))


async def _record(registry: str | None, target: RegistryVersion, tags: dict[str, str]) -> None:
    from registry_client import LocalRegistry, open_registry

    async with open_registry(registry) as opened:
        if isinstance(opened, LocalRegistry):
            opened.set_tags(target.name, target.version, tags)
        else:
            await opened.set_tags(target.name, target.version, tags)
