"""The token file: named bearer tokens, each with its scopes.

JSON, so it needs no extra parser::

    {"tokens": [
        {"name": "ci", "sha256": "<hex SHA-256 of the token>", "scopes": ["infer", "read"]},
        {"name": "ops", "token": "<the token itself>", "scopes": ["admin"]}
    ]}

``sha256`` keeps the file free of secrets (``printf %s "$TOKEN" | sha256sum``);
``token`` is accepted for convenience. A presented token is hashed and compared
with every entry in constant time, so the answer's timing tells nothing of which
entry came close.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serving.auth._scopes import Scope, parse_scope

__all__ = ["MIN_TOKEN_LENGTH", "TokenEntry", "TokenFile", "load_token_file"]

MIN_TOKEN_LENGTH = 16
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_KEYS = {"name", "sha256", "token", "scopes"}


@dataclass(frozen=True, slots=True)
class TokenEntry:
    name: str
    digest: bytes  # SHA-256 of the token
    scopes: frozenset[Scope]


@dataclass(frozen=True, slots=True)
class TokenFile:
    path: Path
    entries: tuple[TokenEntry, ...]

    def lookup(self, token: str) -> TokenEntry | None:
        digest = hashlib.sha256(token.encode()).digest()
        found = None
        for entry in self.entries:  # no early exit: every entry costs the same
            if hmac.compare_digest(entry.digest, digest):
                found = entry
        return found


def _entry(index: int, raw: Any) -> TokenEntry:
    where = f"tokens[{index}]"
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must be an object")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise ValueError(f"{where} has unknown key(s) {', '.join(map(repr, unknown))}")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where} needs a non-empty 'name'")
    where = f"token {name!r}"
    if ("sha256" in raw) == ("token" in raw):
        raise ValueError(f"{where} needs exactly one of 'sha256' and 'token'")
    if "sha256" in raw:
        hexdigest = raw["sha256"]
        if not isinstance(hexdigest, str) or not _HEX64.match(hexdigest):
            raise ValueError(f"{where}: 'sha256' must be 64 hex digits")
        digest = bytes.fromhex(hexdigest)
    else:
        token = raw["token"]
        if not isinstance(token, str) or len(token) < MIN_TOKEN_LENGTH:
            raise ValueError(f"{where}: 'token' must be a string of {MIN_TOKEN_LENGTH}+ characters")
        if token != token.strip() or any(c.isspace() for c in token):
            raise ValueError(f"{where}: 'token' must not contain whitespace")
        digest = hashlib.sha256(token.encode()).digest()
    scopes = raw.get("scopes")
    if not isinstance(scopes, list) or not scopes or not all(isinstance(s, str) for s in scopes):
        raise ValueError(f"{where} needs 'scopes', a non-empty list of scope names")
    try:
        parsed = frozenset(parse_scope(s) for s in scopes)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    return TokenEntry(name, digest, parsed)


def load_token_file(path: Path) -> TokenFile:
    """Parse and check the whole file; ValueError with one line naming the file and the fault."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ValueError(f"token file {str(path)!r} cannot be read: {reason}") from None
    try:
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"not valid JSON: {exc}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("tokens"), list):
            raise ValueError('expected an object {"tokens": [...]}')
        if not doc["tokens"]:
            raise ValueError("lists no tokens")
        entries = tuple(_entry(i, raw) for i, raw in enumerate(doc["tokens"]))
        names, digests = set(), set()
        for entry in entries:
            if entry.name in names:
                raise ValueError(f"token name {entry.name!r} appears twice")
            if entry.digest in digests:
                raise ValueError(f"token {entry.name!r} is the same token as an earlier entry")
            names.add(entry.name)
            digests.add(entry.digest)
    except ValueError as exc:
        raise ValueError(f"token file {str(path)!r}: {exc}") from None
    return TokenFile(path, entries)
