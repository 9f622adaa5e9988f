"""The desired-state document the fleet side publishes for one device.

```json
{"version": 7, "models": {"mlp": {"ref": "models:/mlp/3", "golden": "golden.json"}}}
```

``ref`` is ``models:/<name>/<v>`` or ``models:/<name>@<alias>`` (an alias is resolved
once per document and pinned). ``traffic`` splits the requests that name no version
between versions (integer weights); the version ``ref`` names must carry weight, and the
agent serves every version the split names (the serving core's traffic router).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = ["DesiredDocument", "DocumentError", "ModelSpec", "parse_document"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_REF = re.compile(r"^models:/([A-Za-z0-9][A-Za-z0-9_.-]{0,127})(?:/([0-9]+)|@([A-Za-z0-9_.-]+))$")
_MAX_BYTES = 256 * 1024
_NO_TRAFFIC: Mapping[int, int] = MappingProxyType({})


class DocumentError(ValueError):
    """A desired document the agent refuses; the message says why."""


@dataclass(frozen=True, slots=True)
class ModelSpec:
    name: str  # the name it serves under on the device
    ref: str
    golden: str | None = None
    traffic: Mapping[int, int] = field(default_factory=lambda: _NO_TRAFFIC)  # empty: ref's alone

    @property
    def pinned_version(self) -> int | None:
        """The version ``ref`` names, or None for an alias."""
        m = _REF.match(self.ref)
        return int(m.group(2)) if m and m.group(2) else None


@dataclass(frozen=True, slots=True)
class DesiredDocument:
    version: int
    models: MappingProxyType[str, ModelSpec]

    def to_json(self) -> dict[str, Any]:
        models: dict[str, Any] = {}
        for name, spec in self.models.items():
            entry: dict[str, Any] = {"ref": spec.ref}
            if spec.golden is not None:
                entry["golden"] = spec.golden
            if spec.traffic:
                entry["traffic"] = {str(v): w for v, w in spec.traffic.items()}
            models[name] = entry
        return {"version": self.version, "models": models}


def _spec(name: str, entry: Any) -> ModelSpec:
    where = f"models.{name}"
    if not _NAME.match(name):
        raise DocumentError(f"{where}: not a valid model name")
    if not isinstance(entry, dict):
        raise DocumentError(f"{where}: must be an object")
    unknown = set(entry) - {"ref", "traffic", "golden"}
    if unknown:
        raise DocumentError(f"{where}: unknown field {sorted(unknown)[0]!r}")
    ref = entry.get("ref")
    if not isinstance(ref, str) or not _REF.match(ref):
        raise DocumentError(f"{where}.ref: must be models:/<name>/<version> or models:/<name>@<alias>, not {ref!r}")  # fmt: skip
    golden = entry.get("golden")
    if golden is not None:
        if not isinstance(golden, str) or not golden or golden.startswith("/") or ".." in golden.split("/"):  # fmt: skip
            raise DocumentError(f"{where}.golden: must be a relative file path inside the model version")  # fmt: skip
    traffic = entry.get("traffic")
    weights: dict[int, int] = {}
    if traffic is not None:
        if not isinstance(traffic, dict) or not traffic:
            raise DocumentError(f"{where}.traffic: must be an object of version -> weight")
        for version, weight in traffic.items():
            if not str(version).isdigit() or isinstance(weight, bool) or not isinstance(weight, int) or weight < 0:  # fmt: skip
                raise DocumentError(f"{where}.traffic: {version!r}: {weight!r} is not a version and a non-negative integer weight")  # fmt: skip
            weights[int(version)] = weight
        pinned = ModelSpec(name, ref).pinned_version
        if not any(weights.values()):
            raise DocumentError(f"{where}.traffic: the weights must not all be 0")
        if pinned is not None and not weights.get(pinned):
            raise DocumentError(f"{where}.traffic: the version ref names ({pinned}) must carry weight")  # fmt: skip
    return ModelSpec(name, ref, golden, MappingProxyType(dict(sorted(weights.items()))))


def parse_document(payload: bytes | str | dict[str, Any]) -> DesiredDocument:
    """Validate a desired document; raises DocumentError with the reason."""
    if isinstance(payload, bytes | str):
        if len(payload) > _MAX_BYTES:
            raise DocumentError(f"larger than {_MAX_BYTES} bytes")
        try:
            doc = json.loads(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            raise DocumentError(f"not JSON: {exc}") from None
    else:
        doc = payload
    if not isinstance(doc, dict):
        raise DocumentError("must be a JSON object")
    unknown = set(doc) - {"version", "models"}
    if unknown:
        raise DocumentError(f"unknown field {sorted(unknown)[0]!r}")
    version = doc.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise DocumentError(f"version: must be a non-negative integer, not {version!r}")
    models = doc.get("models")
    if not isinstance(models, dict):
        raise DocumentError("models: must be an object of model name -> {ref, golden, traffic}")
    specs = {name: _spec(name, entry) for name, entry in models.items()}
    return DesiredDocument(version, MappingProxyType(specs))
