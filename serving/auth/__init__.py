"""Bearer-token authentication and scopes, shared by both front ends.

Front ends look up the scope an operation needs in ``OPERATION_SCOPES`` and call
``Authenticator.authorize`` with the ``authorization`` header (or gRPC metadata)
value. See README, "Authentication and TLS".
"""

from __future__ import annotations

from serving.auth._authenticator import Authenticator, MissingToken, Principal
from serving.auth._scopes import OPERATION_SCOPES, Scope, grants, parse_scope
from serving.auth._tokens import TokenEntry, TokenFile, load_token_file

__all__ = [
    "OPERATION_SCOPES",
    "Authenticator",
    "MissingToken",
    "Principal",
    "Scope",
    "TokenEntry",
    "TokenFile",
    "grants",
    "load_token_file",
    "parse_scope",
]
