"""One check for both front ends: header parsing, 401 versus 403, and what each says."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from serving.auth import Authenticator, MissingToken, Principal, Scope, load_token_file
from serving.errors import PermissionDenied, Unauthenticated

READER = "reader-token-0123456789"
INFERRER = "inferrer-token-0123456789"
ADMIN = "admin-token-0123456789ab"


@pytest.fixture
def authenticator(tmp_path: Path) -> Authenticator:
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps({"tokens": [
        {"name": "reader", "token": READER, "scopes": ["read"]},
        {"name": "inferrer", "token": INFERRER, "scopes": ["infer"]},
        {"name": "admin", "token": ADMIN, "scopes": ["admin"]},
    ]}))  # fmt: skip
    return Authenticator(load_token_file(path))


def _authorize(auth: Authenticator, header: str | None, scope: Scope | None) -> Principal:
    return asyncio.run(auth.authorize(header, scope, "ModelInfer"))


def test_missing_header_is_unauthenticated_and_says_how(authenticator: Authenticator) -> None:
    for header in (None, ""):
        with pytest.raises(MissingToken, match="send the header 'authorization: Bearer <token>'"):
            _authorize(authenticator, header, Scope.INFER)


@pytest.mark.parametrize("header", [f"Basic {READER}", "Bearer", "Bearer   ", READER])
def test_other_schemes_are_unauthenticated(authenticator: Authenticator, header: str) -> None:
    with pytest.raises(Unauthenticated, match="must read 'Bearer <token>'") as info:
        _authorize(authenticator, header, Scope.READ)
    assert not isinstance(info.value, MissingToken)
    assert READER not in info.value.message


def test_unknown_token_is_unauthenticated_without_echoing_it(
    authenticator: Authenticator,
) -> None:
    with pytest.raises(Unauthenticated) as info:
        _authorize(authenticator, "Bearer not-a-known-token-at-all", Scope.READ)
    assert info.value.message == "invalid bearer token"


def test_missing_scope_is_permission_denied_naming_token_and_scope(
    authenticator: Authenticator,
) -> None:
    with pytest.raises(PermissionDenied) as info:
        _authorize(authenticator, f"Bearer {READER}", Scope.INFER)
    assert info.value.message == "token 'reader' lacks the 'infer' scope needed for ModelInfer"
    with pytest.raises(PermissionDenied):
        _authorize(authenticator, f"Bearer {INFERRER}", Scope.READ)
    with pytest.raises(PermissionDenied):
        _authorize(authenticator, f"Bearer {INFERRER}", Scope.METRICS)


def test_scopes_granted(authenticator: Authenticator) -> None:
    assert _authorize(authenticator, f"bearer {INFERRER}", Scope.INFER).name == "inferrer"
    assert _authorize(authenticator, f"Bearer {READER}", Scope.METRICS).name == "reader"
    for scope in Scope:  # admin grants every scope
        assert _authorize(authenticator, f"Bearer {ADMIN}", scope).name == "admin"
    # None: any valid token (a path no route serves)
    assert _authorize(authenticator, f"Bearer {INFERRER}", None).name == "inferrer"
