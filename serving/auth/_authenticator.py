"""One check for both front ends: who presents this ``authorization`` value, and may they?"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from serving.auth._scopes import Scope, grants
from serving.auth._tokens import TokenFile, load_token_file
from serving.errors import PermissionDenied, Unauthenticated

if TYPE_CHECKING:
    from serving.auth._jwt import JwtVerifier
    from serving.settings import Settings

__all__ = ["Authenticator", "MissingToken", "Principal"]


@dataclass(frozen=True, slots=True)
class Principal:
    name: str  # the token file's name for the token, or the JWT's subject
    scopes: frozenset[Scope]


class MissingToken(Unauthenticated):
    """No credentials at all (HTTP answers ``WWW-Authenticate: Bearer`` without an error)."""


class Authenticator:
    """Bearer tokens from a token file, JWTs verified against a key set, or both."""

    def __init__(self, tokens: TokenFile | None = None, jwt: JwtVerifier | None = None) -> None:
        if tokens is None and jwt is None:
            raise ValueError("an authenticator needs a token file, a JWT key set, or both")
        self.tokens = tokens
        self.jwt = jwt

    @classmethod
    def from_settings(cls, settings: Settings) -> Authenticator | None:
        """None when authentication is off (no wrapper is installed at all then)."""
        tokens = load_token_file(settings.auth_token_file) if settings.auth_token_file else None
        verifier = None
        if settings.jwt_jwks:
            from serving.auth._jwt import JwtVerifier

            assert settings.jwt_issuer and settings.jwt_audience  # Settings checks
            verifier = JwtVerifier(
                settings.jwt_jwks, issuer=settings.jwt_issuer, audience=settings.jwt_audience
            )
        if tokens is None and verifier is None:
            return None
        return cls(tokens, verifier)

    @classmethod
    def check_files(cls, token_file: Path | None, jwks: str | None) -> None:
        """Parse what is local now, so a bad file stops the server with one line."""
        if token_file is not None:
            load_token_file(token_file)
        if jwks and not jwks.startswith(("http://", "https://")):
            from serving.auth._jwt import parse_jwks

            try:
                data = Path(jwks).read_bytes()
            except OSError as exc:
                raise ValueError(f"JWKS file {jwks!r} cannot be read: {exc.strerror}") from None
            parse_jwks(data, repr(jwks))

    async def authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            raise MissingToken(
                "missing bearer token: send the header 'authorization: Bearer <token>'"
            )
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("the authorization header must read 'Bearer <token>'")
        if self.tokens is not None:
            entry = self.tokens.lookup(token)
            if entry is not None:
                return Principal(entry.name, entry.scopes)
        if self.jwt is not None and token.count(".") == 2:
            claims = await self.jwt.verify(token)
            return Principal(claims.subject, claims.scopes)
        raise Unauthenticated("invalid bearer token")

    async def authorize(
        self, authorization: str | None, scope: Scope | None, operation: str = ""
    ) -> Principal:
        """The caller, if their token verifies and grants ``scope`` (None: any valid token).

        Raises Unauthenticated (no token, or one that does not verify) or PermissionDenied;
        messages name the token (its name or subject), never echo it.
        """
        principal = await self.authenticate(authorization)
        if scope is not None and not grants(principal.scopes, scope):
            who = f"token {principal.name!r}" if principal.name else "the token"
            what = f" for {operation}" if operation else ""
            raise PermissionDenied(f"{who} lacks the {scope.value!r} scope needed{what}")
        return principal
