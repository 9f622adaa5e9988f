"""Model references: ``models:/NAME/VERSION``, ``models:/NAME@ALIAS``, ``models:/NAME@latest``.

A tag search is written as a query: ``models:/NAME?stage=prod&team=vision`` means the
newest version of NAME carrying every one of those tags. ``NAME`` alone means
``models:/NAME@latest``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from registry_client._errors import InvalidReference

__all__ = ["LATEST", "ModelReference", "parse_reference", "validate_name"]

LATEST = "latest"
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
_ALIAS = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


def validate_name(name: str) -> str:
    """Names become directory names in the model repository, so they are kept plain."""
    if not _NAME.match(name) or len(name) > 200:
        raise InvalidReference(
            f"model name {name!r} must be letters, digits, '_', '-' or '.', not starting with '.'"
        )
    return name


@dataclass(frozen=True, slots=True)
class ModelReference:
    """What to pull; exactly one of ``version`` / ``alias`` is set (``alias`` may be ``latest``)."""

    name: str
    version: int | None = None
    alias: str | None = None
    tags: tuple[tuple[str, str], ...] = field(default=())

    def __str__(self) -> str:
        text = f"models:/{self.name}"
        if self.version is not None:
            text += f"/{self.version}"
        elif self.alias and (self.alias != LATEST or not self.tags):
            text += f"@{self.alias}"
        if self.tags:
            text += "?" + "&".join(f"{k}={v}" for k, v in self.tags)
        return text

    @property
    def follows(self) -> bool:
        """True when the reference can move (an alias, ``latest`` or a tag search)."""
        return self.version is None

    def pinned(self, version: int) -> ModelReference:
        return ModelReference(self.name, version=version)


def parse_reference(text: str) -> ModelReference:
    body = text.removeprefix("models:/") if text.startswith("models:/") else text
    body, _, query = body.partition("?")
    tags = tuple(parse_qsl(query, keep_blank_values=True, strict_parsing=False)) if query else ()
    if query and not tags:
        raise InvalidReference(f"reference {text!r}: tag search must look like ?key=value")
    if "@" in body:
        name, _, alias = body.partition("@")
        if not _ALIAS.match(alias):
            raise InvalidReference(f"reference {text!r}: invalid alias {alias!r}")
        return ModelReference(validate_name(name), alias=alias, tags=tags)
    if "/" in body:
        name, _, number = body.partition("/")
        if not number.isdigit() or int(number) < 1:
            raise InvalidReference(f"reference {text!r}: version must be a positive integer")
        if tags:
            raise InvalidReference(f"reference {text!r}: a tag search cannot name a version")
        return ModelReference(validate_name(name), version=int(number))
    return ModelReference(validate_name(body), alias=LATEST, tags=tags)
