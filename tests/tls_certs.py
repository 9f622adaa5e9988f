"""A throwaway certificate authority for TLS tests, made with ``cryptography``.

``make_pki(dir)`` writes a CA, a server certificate for 127.0.0.1 and localhost
(IP and DNS subject alternative names), a second CA for clients and a client
certificate it signs, plus a certificate from an unrelated CA; all PEM.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["Pki", "make_pki"]


@dataclass(frozen=True)
class Pki:
    ca: Path  # signs the server certificate; clients trust it
    server_cert: Path
    server_key: Path
    client_ca: Path  # signs client certificates; the server trusts it (--tls-client-ca)
    client_cert: Path
    client_key: Path
    stranger_cert: Path  # a client certificate from a CA nobody trusts
    stranger_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def _write_cert(cert: x509.Certificate, path: Path) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _builder(subject: str, issuer: x509.Name, public_key: object) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(public_key)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )


def _ca(common_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _builder(common_name, _name(common_name), key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _leaf(
    common_name: str,
    ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate],
    *,
    server: bool,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    ca_key, ca_cert = ca
    key = ec.generate_private_key(ec.SECP256R1())
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        _builder(common_name, ca_cert.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return key, builder.sign(ca_key, hashes.SHA256())


def make_pki(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    server_ca = _ca("sluice test server CA")
    client_ca = _ca("sluice test client CA")
    stranger_ca = _ca("sluice test stranger CA")
    server_key, server_cert = _leaf("127.0.0.1", server_ca, server=True)
    client_key, client_cert = _leaf("test client", client_ca, server=False)
    stranger_key, stranger_cert = _leaf("stranger", stranger_ca, server=False)
    d = directory
    return Pki(
        ca=_write_cert(server_ca[1], d / "ca.pem"),
        server_cert=_write_cert(server_cert, d / "server.pem"),
        server_key=_write_key(server_key, d / "server.key"),
        client_ca=_write_cert(client_ca[1], d / "client-ca.pem"),
        client_cert=_write_cert(client_cert, d / "client.pem"),
        client_key=_write_key(client_key, d / "client.key"),
        stranger_cert=_write_cert(stranger_cert, d / "stranger.pem"),
        stranger_key=_write_key(stranger_key, d / "stranger.key"),
    )
