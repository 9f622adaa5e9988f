"""JWT bearer tokens, verified against a JSON Web Key Set (a file or an http(s) URL).

Only asymmetric algorithms are accepted, and only those a key in the set allows
(its ``alg``, else its key type's family): never ``none``, never an HMAC algorithm
keyed with a public key. ``exp``, ``iss`` and ``aud`` are required, and issuer and
audience must match the configured ones. A token naming a key id the set lacks
makes the set be read again (a key rotation), at most once per ``refresh_interval``
seconds so that made-up key ids cannot hammer the identity provider.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from serving.auth._scopes import Scope
from serving.errors import Unauthenticated, Unavailable

__all__ = ["ASYMMETRIC_ALGORITHMS", "JwtClaims", "JwtVerifier", "parse_jwks"]

log = logging.getLogger("sluice.auth")

_RSA = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
_EC = ("ES256", "ES384", "ES512", "ES256K")
ASYMMETRIC_ALGORITHMS = frozenset((*_RSA, *_EC, "EdDSA"))
_FETCH_TIMEOUT_SECS = 10.0


@dataclass(frozen=True, slots=True)
class _Key:
    kid: str | None
    key: Any  # a cryptography public key
    algorithms: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class JwtClaims:
    subject: str
    scopes: frozenset[Scope]


def _key(raw: Any) -> _Key | None:
    """One JWK; None for keys not meant for signatures."""
    if not isinstance(raw, dict):
        raise ValueError("each key must be a JSON object")
    kid = raw.get("kid")
    label = f"key {kid!r}" if kid else "a key without 'kid'"
    if raw.get("use", "sig") != "sig":
        return None
    kty = raw.get("kty")
    if kty == "oct":
        raise ValueError(f"{label} is symmetric (kty 'oct'); only public keys are accepted")
    alg = raw.get("alg")
    if alg is not None and alg not in ASYMMETRIC_ALGORITHMS:
        raise ValueError(f"{label} names algorithm {alg!r}; accepted: asymmetric ones only")
    try:
        jwk = jwt.PyJWK(raw)
    except jwt.PyJWTError as exc:
        raise ValueError(f"{label} is not usable: {exc}") from None
    if alg is not None:
        algorithms: tuple[str, ...] = (alg,)
    elif kty == "RSA":
        algorithms = _RSA
    else:
        algorithms = (jwk.algorithm_name,)
    if not set(algorithms) <= ASYMMETRIC_ALGORITHMS:
        raise ValueError(f"{label} has no asymmetric algorithm")
    if getattr(jwk.key, "private_numbers", None) is not None:
        raise ValueError(f"{label} is a private key; publish only public keys")
    return _Key(kid if isinstance(kid, str) else None, jwk.key, algorithms)


def parse_jwks(data: bytes | str, origin: str) -> tuple[_Key, ...]:
    """The signing keys of a JWKS document; ValueError naming ``origin`` and the fault."""
    try:
        try:
            doc = json.loads(data)
        except ValueError as exc:
            raise ValueError(f"not valid JSON: {exc}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
            raise ValueError('expected a JSON Web Key Set {"keys": [...]}')
        keys = tuple(k for k in map(_key, doc["keys"]) if k is not None)
        if not keys:
            raise ValueError("holds no signing keys")
    except ValueError as exc:
        raise ValueError(f"JWKS {origin}: {exc}") from None
    return keys


def _scopes(claims: Mapping[str, Any]) -> frozenset[Scope]:
    """From ``scope`` (space-separated, RFC 8693) or ``scp`` (a list); unknown names ignored."""
    raw = claims.get("scope", claims.get("scp", ""))
    names = raw.split() if isinstance(raw, str) else raw if isinstance(raw, list) else []
    known = {s.value: s for s in Scope}
    return frozenset(known[n] for n in names if isinstance(n, str) and n in known)


class JwtVerifier:
    """Verifies tokens against a key set read from ``source`` (a path, or an http(s) URL)."""

    def __init__(
        self,
        source: str,
        *,
        issuer: str,
        audience: str,
        refresh_interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.issuer = issuer
        self.audience = audience
        self.refresh_interval = refresh_interval
        self._clock = clock
        self._is_url = source.startswith(("http://", "https://"))
        self._keys: tuple[_Key, ...] = ()
        self._loaded_at: float | None = None
        self._lock = asyncio.Lock()
        if not self._is_url:  # a file is read now, so a bad one stops the server starting
            self._keys = parse_jwks(self._read_file(), repr(source))
            self._loaded_at = clock()

    def _read_file(self) -> bytes:
        try:
            return Path(self.source).read_bytes()
        except OSError as exc:
            raise ValueError(f"JWKS file {self.source!r} cannot be read: {exc.strerror}") from None

    async def _fetch(self) -> tuple[_Key, ...]:
        if not self._is_url:
            return parse_jwks(await asyncio.to_thread(self._read_file), repr(self.source))
        import httpx

        try:
            async with httpx.AsyncClient(timeout=_FETCH_TIMEOUT_SECS) as client:
                response = await client.get(self.source, headers={"accept": "application/json"})
        except httpx.HTTPError as exc:
            raise ValueError(f"JWKS {self.source}: cannot be fetched: {exc}") from None
        if response.status_code != 200:
            raise ValueError(f"JWKS {self.source}: answered HTTP {response.status_code}")
        return parse_jwks(response.content, self.source)

    async def _refresh(self, seen: float | None) -> None:
        """Read the set again unless another call just did, or did within the interval."""
        async with self._lock:
            if self._loaded_at != seen:
                return  # refreshed while this call waited for the lock
            now = self._clock()
            if seen is not None and now - seen < self.refresh_interval:
                return
            try:
                self._keys = await self._fetch()
            except ValueError as exc:
                log.warning("%s; keeping the %d key(s) held", exc, len(self._keys))
                if not self._keys:
                    raise Unavailable(
                        "bearer tokens cannot be verified now: the key set is unavailable"
                    ) from None
            finally:
                self._loaded_at = now

    def _find(self, kid: Any) -> _Key | None:
        if kid is None:
            return self._keys[0] if len(self._keys) == 1 else None
        return next((k for k in self._keys if k.kid == kid), None)

    async def verify(self, token: str) -> JwtClaims:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated("invalid bearer token: not a well-formed JWT") from None
        alg = header.get("alg")
        if alg not in ASYMMETRIC_ALGORITHMS:
            raise Unauthenticated(
                f"invalid bearer token: JWT algorithm {alg!r} is not accepted "
                "(only asymmetric signatures are)"
            )
        kid = header.get("kid")
        if self._loaded_at is None:
            await self._refresh(None)
        key = self._find(kid)
        if key is None and kid is not None:
            await self._refresh(self._loaded_at)
            key = self._find(kid)
        if key is None and not self._keys:
            raise Unavailable("bearer tokens cannot be verified now: the key set is unavailable")
        if key is None and kid is None:
            raise Unauthenticated(
                "invalid bearer token: JWT names no key id and the key set holds several keys"
            )
        if key is None:
            raise Unauthenticated(f"invalid bearer token: JWT key id {kid!r} is not in the key set")
        if alg not in key.algorithms:
            raise Unauthenticated(
                f"invalid bearer token: JWT algorithm {alg!r} does not fit its key"
            )
        return self._decode(token, key, alg)

    def _decode(self, token: str, key: _Key, alg: str) -> JwtClaims:
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("invalid bearer token: JWT has expired") from None
        except jwt.ImmatureSignatureError:
            raise Unauthenticated("invalid bearer token: JWT is not valid yet") from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated(
                f"invalid bearer token: JWT audience is not {self.audience!r}"
            ) from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated(
                f"invalid bearer token: JWT issuer is not {self.issuer!r}"
            ) from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthenticated(f"invalid bearer token: JWT has no {exc.claim!r} claim") from None
        except jwt.InvalidSignatureError:
            raise Unauthenticated("invalid bearer token: JWT signature does not verify") from None
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"invalid bearer token: {exc}") from None
        subject = claims.get("sub")
        return JwtClaims(subject if isinstance(subject, str) else "", _scopes(claims))
