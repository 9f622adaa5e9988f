"""JWTs against a key set: what verifies, what is refused and why, and key rotation
through a JWKS URL served by a real local HTTP server."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from serving.auth import Authenticator, Scope
from serving.auth._jwt import JwtVerifier, parse_jwks
from serving.errors import PermissionDenied, Unauthenticated, Unavailable

ISSUER = "https://idp.example"
AUDIENCE = "sluice"

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def _jwk(private_key: Any, kid: str) -> dict[str, Any]:
    algorithm = RSAAlgorithm if isinstance(private_key, rsa.RSAPrivateKey) else ECAlgorithm
    jwk = algorithm.to_jwk(private_key.public_key(), as_dict=True)
    return {**jwk, "kid": kid, "use": "sig"}


def _token(
    private_key: Any = RSA_KEY,
    kid: str | None = "rsa1",
    alg: str = "RS256",
    **overrides: Any,
) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "exp": now + 300,
              "scope": "infer read"}  # fmt: skip
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    headers = {"kid": kid} if kid is not None else {}
    return jwt.encode(claims, private_key, algorithm=alg, headers=headers)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: dict[str, Any], claims: dict[str, Any], key: bytes = b"") -> str:
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest() if key else b""
    return f"{signing_input}.{_b64(signature)}"


@pytest.fixture
def jwks_file(tmp_path: Path) -> Path:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [_jwk(RSA_KEY, "rsa1"), _jwk(EC_KEY, "ec1")]}))
    return path


@pytest.fixture
def verifier(jwks_file: Path) -> JwtVerifier:
    return JwtVerifier(str(jwks_file), issuer=ISSUER, audience=AUDIENCE)


def _verify(verifier: JwtVerifier, token: str) -> Any:
    return asyncio.run(verifier.verify(token))


def test_valid_tokens_verify_with_subject_and_scopes(verifier: JwtVerifier) -> None:
    claims = _verify(verifier, _token())
    assert claims.subject == "alice"
    assert claims.scopes == {Scope.INFER, Scope.READ}
    ec_claims = _verify(verifier, _token(EC_KEY, "ec1", "ES256", scope=None, scp=["admin", "x"]))
    assert ec_claims.scopes == {Scope.ADMIN}
    ps = _verify(verifier, _token(alg="PS256"))  # an RSA key without 'alg' allows RS and PS
    assert ps.subject == "alice"


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda: _token(exp=int(time.time()) - 60), "JWT has expired"),
        (lambda: _token(nbf=int(time.time()) + 600), "JWT is not valid yet"),
        (lambda: _token(iss="https://evil.example"), f"JWT issuer is not {ISSUER!r}"),
        (lambda: _token(aud="someone-else"), f"JWT audience is not {AUDIENCE!r}"),
        (lambda: _token(exp=None), "JWT has no 'exp' claim"),
        (lambda: _token(aud=None), "JWT has no 'aud' claim"),
        (lambda: _token(iss=None), "JWT has no 'iss' claim"),
        (lambda: _token(OTHER_RSA_KEY), "JWT signature does not verify"),  # wrong key, same kid
        (lambda: _token(EC_KEY, "rsa1", "ES256"), "algorithm 'ES256' does not fit its key"),
        (lambda: "not.a-jwt", "not a well-formed JWT"),
        (
            lambda: _unsigned(
                {"alg": "none", "kid": "rsa1"}, {"iss": ISSUER, "aud": AUDIENCE, "exp": 2**40}
            ),
            "algorithm 'none' is not accepted",
        ),
        (
            # the classic confusion: HMAC keyed with the public key the server publishes
            lambda: _unsigned(
                {"alg": "HS256", "kid": "rsa1"},
                {"iss": ISSUER, "aud": AUDIENCE, "exp": 2**40, "scope": "admin"},
                RSA_KEY.public_key().public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                ),
            ),
            "algorithm 'HS256' is not accepted",
        ),
        (lambda: _token(kid=None), "names no key id and the key set holds several keys"),
    ],
)
def test_bad_tokens_are_refused_with_the_reason(
    verifier: JwtVerifier, make: Any, fragment: str
) -> None:
    with pytest.raises(Unauthenticated) as info:
        _verify(verifier, make())
    assert fragment in info.value.message


def test_a_single_key_serves_tokens_without_kid(tmp_path: Path) -> None:
    path = tmp_path / "one.json"
    path.write_text(json.dumps({"keys": [_jwk(EC_KEY, "only")]}))
    verifier = JwtVerifier(str(path), issuer=ISSUER, audience=AUDIENCE)
    assert _verify(verifier, _token(EC_KEY, None, "ES256")).subject == "alice"


@pytest.mark.parametrize(
    ("keys", "fragment"),
    [
        ([{"kty": "oct", "k": "c2VjcmV0", "kid": "s"}], "is symmetric (kty 'oct')"),
        ([{**_jwk(RSA_KEY, "r"), "alg": "HS256"}], "names algorithm 'HS256'"),
        ([{**_jwk(RSA_KEY, "r"), "use": "enc"}], "holds no signing keys"),
        ([], "holds no signing keys"),
        ([RSAAlgorithm.to_jwk(RSA_KEY, as_dict=True)], "is a private key"),
    ],
)
def test_key_sets_with_unusable_keys_are_refused(keys: list[Any], fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_jwks(json.dumps({"keys": keys}), "'test'")
    assert fragment in str(info.value)


def test_authenticator_takes_jwt_scopes(verifier: JwtVerifier) -> None:
    auth = Authenticator(jwt=verifier)
    principal = asyncio.run(auth.authorize(f"Bearer {_token()}", Scope.INFER))
    assert principal.name == "alice"
    with pytest.raises(PermissionDenied, match="token 'alice' lacks the 'admin' scope"):
        asyncio.run(auth.authorize(f"Bearer {_token()}", Scope.ADMIN))


class _JwksServer:
    """A real HTTP server answering GET with the current key set; counts the requests."""

    def __init__(self, keys: list[dict[str, Any]]) -> None:
        self.keys = keys
        self.requests = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests += 1
                body = json.dumps({"keys": owner.keys}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/jwks.json"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def jwks_server() -> Iterator[_JwksServer]:
    server = _JwksServer([_jwk(RSA_KEY, "rsa1")])
    yield server
    server.close()


def test_unknown_kid_refetches_the_url_at_most_once_per_interval(
    jwks_server: _JwksServer,
) -> None:
    now = [1000.0]
    verifier = JwtVerifier(
        jwks_server.url, issuer=ISSUER, audience=AUDIENCE, refresh_interval=60,
        clock=lambda: now[0],
    )  # fmt: skip

    async def scenario() -> None:
        assert jwks_server.requests == 0  # a URL is fetched on first use
        assert (await verifier.verify(_token())).subject == "alice"
        assert jwks_server.requests == 1
        # the provider rotates in a new key; a token naming it makes the set be fetched again
        jwks_server.keys = [_jwk(RSA_KEY, "rsa1"), _jwk(EC_KEY, "ec2")]
        now[0] += 61
        assert (await verifier.verify(_token(EC_KEY, "ec2", "ES256"))).subject == "alice"
        assert jwks_server.requests == 2
        # made-up key ids within the interval do not reach the provider
        for kid in ("made-up-1", "made-up-2"):
            with pytest.raises(Unauthenticated, match=f"key id '{kid}' is not in the key set"):
                await verifier.verify(_token(kid=kid))
        assert jwks_server.requests == 2
        # a key rotated in right after a fetch is found once the interval has passed
        jwks_server.keys = [_jwk(OTHER_RSA_KEY, "rsa2")]
        with pytest.raises(Unauthenticated):
            await verifier.verify(_token(OTHER_RSA_KEY, "rsa2"))
        assert jwks_server.requests == 2
        now[0] += 61
        assert (await verifier.verify(_token(OTHER_RSA_KEY, "rsa2"))).subject == "alice"
        assert jwks_server.requests == 3

    asyncio.run(scenario())


def test_an_unreachable_key_set_is_unavailable_not_unauthenticated(
    jwks_server: _JwksServer,
) -> None:
    url = jwks_server.url
    jwks_server.close()
    verifier = JwtVerifier(url, issuer=ISSUER, audience=AUDIENCE)
    with pytest.raises(Unavailable, match="the key set is unavailable"):
        _verify(verifier, _token())
