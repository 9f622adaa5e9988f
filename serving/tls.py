"""TLS for the HTTP, gRPC and metrics ports; mutual TLS when a client CA is given.

The files are checked once at startup (``check_files``), so a missing file, an
unreadable one or a key that does not match its certificate stops the server with
one line instead of failing each handshake later.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import grpc

    from serving.settings import Settings

__all__ = ["check_files", "describe", "grpc_credentials", "uvicorn_options"]


def _read(flag: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{flag} {str(path)!r} cannot be read: {exc.strerror}") from None


def check_files(cert: Path, key: Path, client_ca: Path | None) -> None:
    """ValueError with one line when a file is missing, unreadable or does not fit."""
    if b"-----BEGIN CERTIFICATE-----" not in _read("--tls-cert", cert):
        raise ValueError(f"--tls-cert {str(cert)!r} holds no PEM certificate")
    if b"PRIVATE KEY-----" not in _read("--tls-key", key):
        raise ValueError(f"--tls-key {str(key)!r} holds no PEM private key")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc):
            raise ValueError(
                f"--tls-key {str(key)!r} does not match --tls-cert {str(cert)!r}"
            ) from None
        raise ValueError(
            f"--tls-cert {str(cert)!r} and --tls-key {str(key)!r} cannot be loaded: "
            f"{exc.reason or exc}"
        ) from None
    if client_ca is not None:
        _read("--tls-client-ca", client_ca)
        try:
            context.load_verify_locations(cafile=client_ca)
        except ssl.SSLError as exc:
            raise ValueError(
                f"--tls-client-ca {str(client_ca)!r} holds no PEM CA certificate "
                f"({exc.reason or exc})"
            ) from None


def describe(settings: Settings) -> str:
    """How the ports are served, for the startup log."""
    if settings.tls_cert is None:
        return ""
    return " with mutual TLS" if settings.tls_client_ca is not None else " with TLS"


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """``uvicorn.Config`` keywords; empty without TLS."""
    if settings.tls_cert is None:
        return {}
    options: dict[str, Any] = {
        "ssl_certfile": str(settings.tls_cert),
        "ssl_keyfile": str(settings.tls_key),
    }
    if settings.tls_client_ca is not None:
        options["ssl_ca_certs"] = str(settings.tls_client_ca)
        options["ssl_cert_reqs"] = ssl.CERT_REQUIRED
    return options


def grpc_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """Server credentials for the gRPC port; None without TLS."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    import grpc

    pair = (_read("--tls-key", settings.tls_key), _read("--tls-cert", settings.tls_cert))
    client_ca = settings.tls_client_ca
    return grpc.ssl_server_credentials(
        [pair],
        root_certificates=_read("--tls-client-ca", client_ca) if client_ca else None,
        require_client_auth=client_ca is not None,
    )
