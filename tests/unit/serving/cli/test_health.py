"""``sluice health``: the HEALTHCHECK command reads the server's port and TLS variables."""

from __future__ import annotations

import http.server
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from serving.cli import main
from tests.tls_certs import Pki, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


class _Health(http.server.BaseHTTPRequestHandler):
    ready = True

    def do_GET(self) -> None:
        ok = self.path == "/v2/health/live" or (self.path == "/v2/health/ready" and self.ready)
        self.send_response(200 if ok else 503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def _server(context: ssl.SSLContext | None = None, ready: bool = True) -> Iterator[int]:
    handler = type("Handler", (_Health,), {"ready": ready})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _tls(pki: Pki, client_ca: Path | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(client_ca)
    return context


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(argv)
        raise SystemExit(0)
    out = capsys.readouterr()
    return int(exited.value.code or 0), out.out, out.err


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SLUICE_HTTP_PORT", "SLUICE_TLS_CERT", "SLUICE_HEALTH_CA",
                 "SLUICE_HEALTH_CLIENT_CERT", "SLUICE_HEALTH_CLIENT_KEY"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)


def test_plain_http_on_the_port_of_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with _server() as port:
        monkeypatch.setenv("SLUICE_HTTP_PORT", str(port))
        code, out, _ = _run(["health"], capsys)
    assert (code, out) == (0, f"http://127.0.0.1:{port}/v2/health/ready: 200\n")


def test_not_ready_fails_with_the_status(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with _server(ready=False) as port:
        monkeypatch.setenv("SLUICE_HTTP_PORT", str(port))
        code, out, err = _run(["health"], capsys)
        assert _run(["health", "--live"], capsys)[0] == 0
    assert (code, out) == (1, "")
    assert err == f"sluice: error: http://127.0.0.1:{port}/v2/health/ready: 503 (not ready)\n"


def test_tls_is_verified_against_the_servers_own_certificate(
    pki: Pki, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With $SLUICE_TLS_CERT set, as in the image: https, trusting that certificate, whose
    name is not 127.0.0.1."""
    with _server(_tls(pki)) as port:
        monkeypatch.setenv("SLUICE_HTTP_PORT", str(port))
        monkeypatch.setenv("SLUICE_TLS_CERT", str(pki.server_cert))
        code, out, err = _run(["health"], capsys)
    assert (code, out, err) == (0, f"https://127.0.0.1:{port}/v2/health/ready: 200\n", "")


def test_tls_with_a_certificate_it_does_not_trust_fails(
    pki: Pki, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with _server(_tls(pki)) as port:
        monkeypatch.setenv("SLUICE_HTTP_PORT", str(port))
        monkeypatch.setenv("SLUICE_TLS_CERT", str(pki.client_cert))  # not the server's
        code, _, err = _run(["health"], capsys)
    assert code == 1 and "CERTIFICATE_VERIFY_FAILED" in err


def test_plain_http_against_a_tls_port_fails(
    pki: Pki, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """What the old HEALTHCHECK did with TLS on: plain http never gets a 200."""
    with _server(_tls(pki)) as port:
        monkeypatch.setenv("SLUICE_HTTP_PORT", str(port))
        code, _, err = _run(["health"], capsys)
    assert code == 1 and err.startswith(f"sluice: error: http://127.0.0.1:{port}/v2/health/ready")


def test_mutual_tls_presents_the_client_certificate(
    pki: Pki, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with _server(_tls(pki, client_ca=pki.client_ca)) as port:
        url = f"https://127.0.0.1:{port}"
        monkeypatch.setenv("SLUICE_TLS_CERT", str(pki.server_cert))
        assert _run(["health", "--url", url], capsys)[0] == 1  # no client certificate
        monkeypatch.setenv("SLUICE_HEALTH_CLIENT_CERT", str(pki.client_cert))
        monkeypatch.setenv("SLUICE_HEALTH_CLIENT_KEY", str(pki.client_key))
        code, out, _ = _run(["health", "--url", url, "--ca", str(pki.ca)], capsys)
    assert (code, out) == (0, f"{url}/v2/health/ready: 200\n")
