"""Startup checks of the authentication and TLS settings: one clear line per fault."""

from __future__ import annotations

import json
import ssl
from pathlib import Path
from typing import Any

import pytest

from serving import tls
from serving.settings import Settings
from tests.tls_certs import Pki, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _settings(tmp_path: Path, **kwargs: Any) -> Settings:
    return Settings(model_repository=tmp_path, cores=1, **kwargs)


def test_tls_settings_give_uvicorn_and_grpc_what_they_need(tmp_path: Path, pki: Pki) -> None:
    plain = _settings(tmp_path)
    assert tls.uvicorn_options(plain) == {} and tls.grpc_credentials(plain) is None
    settings = _settings(
        tmp_path, tls_cert=pki.server_cert, tls_key=pki.server_key, tls_client_ca=pki.client_ca
    )
    assert tls.uvicorn_options(settings) == {
        "ssl_certfile": str(pki.server_cert),
        "ssl_keyfile": str(pki.server_key),
        "ssl_ca_certs": str(pki.client_ca),
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
    }
    assert tls.grpc_credentials(settings) is not None
    assert tls.describe(settings) == " with mutual TLS"


def test_tls_faults_stop_startup_with_one_line(tmp_path: Path, pki: Pki) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"tls_cert": pki.server_cert}, "--tls-cert and --tls-key go together"),
        ({"tls_key": pki.server_key}, "--tls-cert and --tls-key go together"),
        ({"tls_client_ca": pki.client_ca}, "--tls-client-ca needs --tls-cert and --tls-key"),
        (
            {"tls_cert": tmp_path / "absent.pem", "tls_key": pki.server_key},
            f"--tls-cert {str(tmp_path / 'absent.pem')!r} cannot be read: No such file",
        ),
        (
            {"tls_cert": pki.server_cert, "tls_key": pki.client_key},
            f"--tls-key {str(pki.client_key)!r} does not match --tls-cert {str(pki.server_cert)!r}",
        ),
        (
            {"tls_cert": pki.server_key, "tls_key": pki.server_key},
            f"--tls-cert {str(pki.server_key)!r} holds no PEM certificate",
        ),
        (
            {"tls_cert": pki.server_cert, "tls_key": pki.server_cert},
            f"--tls-key {str(pki.server_cert)!r} holds no PEM private key",
        ),
        (
            {
                "tls_cert": pki.server_cert,
                "tls_key": pki.server_key,
                "tls_client_ca": pki.client_key,
            },
            f"--tls-client-ca {str(pki.client_key)!r} holds no PEM CA certificate",
        ),
    ]
    for kwargs, fragment in cases:
        with pytest.raises(ValueError) as info:
            _settings(tmp_path, **kwargs)
        assert fragment in str(info.value)
        assert "\n" not in str(info.value)


def test_auth_faults_stop_startup_with_one_line(tmp_path: Path) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "s"}]}))
    tokens = tmp_path / "tokens.json"
    tokens.write_text('{"tokens": [{"name": "x", "token": "0123456789abcdefX", "scopes": []}]}')
    cases: list[tuple[dict[str, Any], str]] = [
        ({"metrics_auth": True}, "--metrics-auth needs --auth-token-file or --jwt-jwks"),
        ({"jwt_issuer": "i"}, "--jwt-issuer and --jwt-audience need --jwt-jwks"),
        ({"jwt_jwks": str(jwks), "jwt_issuer": "i"}, "--jwt-jwks needs --jwt-issuer and"),
        (
            {"jwt_jwks": str(jwks), "jwt_issuer": "i", "jwt_audience": "a"},
            "is symmetric (kty 'oct')",
        ),
        (
            {"jwt_jwks": str(tmp_path / "no.json"), "jwt_issuer": "i", "jwt_audience": "a"},
            "cannot be read: No such file or directory",
        ),
        ({"auth_token_file": tokens}, "token 'x' needs 'scopes'"),
    ]
    for kwargs, fragment in cases:
        with pytest.raises(ValueError) as info:
            _settings(tmp_path, **kwargs)
        assert fragment in str(info.value)
    # a URL is fetched when first needed, not at startup
    url = _settings(tmp_path, jwt_jwks="https://idp.invalid/jwks", jwt_issuer="i", jwt_audience="a")
    assert url.auth_enabled
