"""The token file: what it accepts, what it refuses (with the fault named), lookups."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from serving.auth import Scope, load_token_file

CI_TOKEN = "ci-token-0123456789abcdef"
OPS_TOKEN = "ops-token-fedcba9876543210"


def _write(tmp_path: Path, doc: object) -> Path:
    path = tmp_path / "tokens.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def test_hashed_and_plain_tokens_are_found_by_the_token(tmp_path: Path) -> None:
    path = _write(tmp_path, {"tokens": [
        {"name": "ci", "sha256": hashlib.sha256(CI_TOKEN.encode()).hexdigest(),
         "scopes": ["infer", "read"]},
        {"name": "ops", "token": OPS_TOKEN, "scopes": ["admin"]},
    ]})  # fmt: skip
    tokens = load_token_file(path)
    ci = tokens.lookup(CI_TOKEN)
    ops = tokens.lookup(OPS_TOKEN)
    assert ci is not None and ci.name == "ci"
    assert ci.scopes == {Scope.INFER, Scope.READ}
    assert ops is not None and ops.name == "ops" and ops.scopes == {Scope.ADMIN}
    assert tokens.lookup(CI_TOKEN + "x") is None
    assert tokens.lookup(hashlib.sha256(CI_TOKEN.encode()).hexdigest()) is None  # not the hash


@pytest.mark.parametrize(
    ("doc", "fragment"),
    [
        ("{not json", "not valid JSON"),
        ([], 'expected an object {"tokens": [...]}'),
        ({"tokens": []}, "lists no tokens"),
        ({"tokens": ["x"]}, "tokens[0] must be an object"),
        ({"tokens": [{"token": OPS_TOKEN, "scopes": ["read"]}]}, "needs a non-empty 'name'"),
        ({"tokens": [{"name": "a", "scopes": ["read"]}]}, "exactly one of 'sha256' and 'token'"),
        (
            {"tokens": [{"name": "a", "token": OPS_TOKEN, "sha256": "0" * 64, "scopes": ["read"]}]},
            "exactly one of 'sha256' and 'token'",
        ),
        ({"tokens": [{"name": "a", "sha256": "abc", "scopes": ["read"]}]}, "64 hex digits"),
        ({"tokens": [{"name": "a", "token": "short", "scopes": ["read"]}]}, "16+ characters"),
        (
            {"tokens": [{"name": "a", "token": "has a space in it!!", "scopes": ["read"]}]},
            "must not contain whitespace",
        ),
        ({"tokens": [{"name": "a", "token": OPS_TOKEN}]}, "needs 'scopes'"),
        ({"tokens": [{"name": "a", "token": OPS_TOKEN, "scopes": []}]}, "needs 'scopes'"),
        (
            {"tokens": [{"name": "a", "token": OPS_TOKEN, "scopes": ["write"]}]},
            "unknown scope 'write' (known: infer, read, admin, metrics)",
        ),
        (
            {"tokens": [{"name": "a", "token": OPS_TOKEN, "scope": ["read"]}]},
            "unknown key(s) 'scope'",
        ),
        (
            {
                "tokens": [
                    {"name": "a", "token": OPS_TOKEN, "scopes": ["read"]},
                    {"name": "a", "token": CI_TOKEN, "scopes": ["read"]},
                ]
            },
            "token name 'a' appears twice",
        ),
        (
            {
                "tokens": [
                    {"name": "a", "token": OPS_TOKEN, "scopes": ["read"]},
                    {
                        "name": "b",
                        "sha256": hashlib.sha256(OPS_TOKEN.encode()).hexdigest(),
                        "scopes": ["admin"],
                    },
                ]
            },
            "token 'b' is the same token as an earlier entry",
        ),
    ],
)
def test_faults_are_refused_with_the_file_and_the_fault(
    tmp_path: Path, doc: object, fragment: str
) -> None:
    path = _write(tmp_path, doc)
    with pytest.raises(ValueError) as info:
        load_token_file(path)
    message = str(info.value)
    assert message.startswith(f"token file {str(path)!r}: ")
    assert fragment in message
    assert OPS_TOKEN not in message and CI_TOKEN not in message


def test_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot be read: No such file or directory"):
        load_token_file(tmp_path / "absent.json")
