"""Bearer tokens, JWTs, TLS and mutual TLS through the real server, with tritonclient
over HTTP and gRPC (and their asyncio variants), as a user would run them."""

from __future__ import annotations

import asyncio
import http.client
import json
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import jwt
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcaio
import tritonclient.http as httpclient
import tritonclient.http.aio as httpaio
from cryptography.hazmat.primitives.asymmetric import rsa
from grpc_health.v1 import health_pb2, health_pb2_grpc
from jwt.algorithms import RSAAlgorithm
from tritonclient.utils import InferenceServerException

from serving.examples import write_repository
from serving.grpc import grpc_service_pb2 as pb
from serving.grpc import grpc_service_pb2_grpc as pb_grpc
from tests.integration.server_process import ServerProcess
from tests.tls_certs import Pki, make_pki

pytestmark = pytest.mark.integration

READER = "reader-token-0123456789"
INFERRER = "inferrer-token-0123456789"
ADMIN = "admin-token-0123456789ab"
ISSUER = "https://idp.example"
AUDIENCE = "sluice-test"
JWT_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)

PROTOCOLS = ["http", "grpc"]
_DENIED = {"http": "401", "grpc": "StatusCode.UNAUTHENTICATED"}
_FORBIDDEN = {"http": "403", "grpc": "StatusCode.PERMISSION_DENIED"}


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def _jwt(**overrides: Any) -> str:
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "svc-a", "exp": int(time.time()) + 300,
              "scope": "infer"}  # fmt: skip
    claims.update(overrides)
    return jwt.encode(claims, JWT_KEY, algorithm="RS256", headers={"kid": "k1"})


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("auth-repo")
    write_repository(repo, ["simple", "identity_fp32"])
    return repo


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def token_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tokens") / "tokens.json"
    path.write_text(json.dumps({"tokens": [
        {"name": "reader", "token": READER, "scopes": ["read"]},
        {"name": "inferrer", "token": INFERRER, "scopes": ["infer"]},
        {"name": "admin", "token": ADMIN, "scopes": ["admin"]},
    ]}))  # fmt: skip
    return path


@pytest.fixture(scope="module")
def auth_server(
    repository: Path, token_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    jwks = tmp_path_factory.mktemp("jwks") / "jwks.json"
    public = RSAAlgorithm.to_jwk(JWT_KEY.public_key(), as_dict=True)
    jwks.write_text(json.dumps({"keys": [{**public, "kid": "k1", "use": "sig"}]}))
    proc = ServerProcess(
        repository,
        "--model-control-mode", "explicit", "--load-model", "simple",
        "--auth-token-file", str(token_file),
        "--jwt-jwks", str(jwks), "--jwt-issuer", ISSUER, "--jwt-audience", AUDIENCE,
        "--metrics-auth",
        log_dir=tmp_path_factory.mktemp("logs"),
    )  # fmt: skip
    yield proc
    proc.stop()


def _client_context(pki: Pki, *, client_cert: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca))
    if client_cert:
        context.load_cert_chain(pki.client_cert, pki.client_key)
    return context


@pytest.fixture(scope="module")
def tls_server(
    repository: Path, pki: Pki, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        repository,
        "--load-model", "simple", "--model-control-mode", "explicit",
        "--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key),
        log_dir=tmp_path_factory.mktemp("logs"),
        ssl_context=_client_context(pki, client_cert=False),
    )  # fmt: skip
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def mtls_server(
    repository: Path, pki: Pki, token_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """Mutual TLS and bearer tokens together."""
    proc = ServerProcess(
        repository,
        "--load-model", "simple", "--model-control-mode", "explicit",
        "--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key),
        "--tls-client-ca", str(pki.client_ca), "--auth-token-file", str(token_file),
        log_dir=tmp_path_factory.mktemp("logs"),
        ssl_context=_client_context(pki, client_cert=True),
    )  # fmt: skip
    yield proc
    proc.stop()


# -- tritonclient helpers ------------------------------------------------------


def _client(protocol: str, server: ServerProcess, **tls: Any) -> Any:
    if protocol == "http":
        return httpclient.InferenceServerClient(server.url, **tls)
    return grpcclient.InferenceServerClient(server.grpc_url, **tls)


def _infer(protocol: str, client: Any, headers: dict[str, str] | None = None) -> np.ndarray:
    module = httpclient if protocol == "http" else grpcclient
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    inputs = []
    for name in ("INPUT0", "INPUT1"):
        inp = module.InferInput(name, [1, 16], "INT32")
        inp.set_data_from_numpy(a)
        inputs.append(inp)
    result = client.infer("simple", inputs, headers=headers)
    return result.as_numpy("OUTPUT0")


def _fails(status: str, call: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(InferenceServerException) as info:
        call(*args, **kwargs)
    assert info.value.status() == status, info.value
    return str(info.value.message())


# -- bearer tokens ---------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_no_token_and_bad_token_are_unauthenticated(
    protocol: str, auth_server: ServerProcess
) -> None:
    client = _client(protocol, auth_server)
    try:
        message = _fails(_DENIED[protocol], _infer, protocol, client)
        assert "missing bearer token" in message
        message = _fails(_DENIED[protocol], _infer, protocol, client, _bearer("wrong-token-xyz"))
        assert message == "invalid bearer token"
        _fails(_DENIED[protocol], client.get_model_metadata, "simple")
        _fails(_DENIED[protocol], client.get_model_repository_index)
    finally:
        client.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_scopes_decide_what_a_token_may_do(protocol: str, auth_server: ServerProcess) -> None:
    client = _client(protocol, auth_server)
    try:
        message = _fails(_FORBIDDEN[protocol], _infer, protocol, client, _bearer(READER))
        assert message == "token 'reader' lacks the 'infer' scope needed for ModelInfer"
        meta = client.get_model_metadata("simple", headers=_bearer(READER))
        assert (meta["name"] if protocol == "http" else meta.name) == "simple"
        out = _infer(protocol, client, _bearer(INFERRER))
        np.testing.assert_array_equal(out, 2 * np.arange(16, dtype=np.int32).reshape(1, 16))
        _fails(_FORBIDDEN[protocol], client.get_model_metadata, "simple", headers=_bearer(INFERRER))
        _fails(_FORBIDDEN[protocol], client.load_model, "identity_fp32", headers=_bearer(READER))
        assert not client.is_model_ready("identity_fp32")
        client.load_model("identity_fp32", headers=_bearer(ADMIN))
        assert client.is_model_ready("identity_fp32")  # readiness needs no token
        client.unload_model("identity_fp32", headers=_bearer(ADMIN))
        # health and readiness stay open for probes
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("simple")
    finally:
        client.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_jwt_through_the_server(protocol: str, auth_server: ServerProcess) -> None:
    client = _client(protocol, auth_server)
    try:
        out = _infer(protocol, client, _bearer(_jwt()))
        assert out.shape == (1, 16)
        message = _fails(_DENIED[protocol], _infer, protocol, client, _bearer(_jwt(aud="other")))
        assert message == f"invalid bearer token: JWT audience is not {AUDIENCE!r}"
        expired = _jwt(exp=int(time.time()) - 10)
        _fails(_DENIED[protocol], _infer, protocol, client, _bearer(expired))
        message = _fails(_FORBIDDEN[protocol], client.get_server_metadata, headers=_bearer(_jwt()))
        assert message == "token 'svc-a' lacks the 'read' scope needed for ServerMetadata"
        assert client.get_server_metadata(headers=_bearer(_jwt(scope="read")))
    finally:
        client.close()


def test_http_challenges_follow_rfc_6750(auth_server: ServerProcess) -> None:
    base = auth_server.http_url
    missing = httpx.post(f"{base}/v2/repository/index", json={})
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == 'Bearer realm="sluice"'
    bad = httpx.get(f"{base}/v2", headers=_bearer("wrong-token-xyz"))
    assert bad.status_code == 401
    assert bad.headers["www-authenticate"] == 'Bearer realm="sluice", error="invalid_token"'
    assert bad.json() == {"error": "invalid bearer token"}
    forbidden = httpx.get(f"{base}/v2", headers=_bearer(INFERRER))
    assert forbidden.status_code == 403
    assert 'error="insufficient_scope"' in forbidden.headers["www-authenticate"]
    # an unknown path still needs a token, so a 404 tells an anonymous client nothing
    assert httpx.get(f"{base}/v2/nothing/here").status_code == 401
    assert httpx.get(f"{base}/v2/nothing/here", headers=_bearer(INFERRER)).status_code == 404
    assert httpx.get(f"{base}/v2/health/ready").status_code == 200


def test_metrics_port_requires_a_metrics_scope(auth_server: ServerProcess) -> None:
    url = auth_server.metrics_url
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers=_bearer(INFERRER)).status_code == 403
    response = httpx.get(url, headers=_bearer(READER))  # read grants metrics
    assert response.status_code == 200
    assert "sluice_" in response.text


def test_grpc_health_and_stream_infer(auth_server: ServerProcess) -> None:
    with grpc.insecure_channel(auth_server.grpc_url) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        answer = health.Check(health_pb2.HealthCheckRequest(service=""))
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        request = pb.ModelInferRequest(model_name="simple")
        for name in ("INPUT0", "INPUT1"):
            request.inputs.add(name=name, datatype="INT32", shape=[1, 16])
            request.raw_input_contents.append(np.ones(16, np.int32).tobytes())
        # the stream is authorized once, at its start
        with pytest.raises(grpc.RpcError) as info:
            list(stub.ModelStreamInfer(iter([request]), metadata=tuple(_bearer(READER).items())))
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        answers = list(
            stub.ModelStreamInfer(
                iter([request, request]), metadata=tuple(_bearer(INFERRER).items())
            )
        )
        assert [a.error_message for a in answers] == ["", ""]


def test_asyncio_clients_pass_headers(auth_server: ServerProcess) -> None:
    async def scenario() -> None:
        a = np.arange(16, dtype=np.int32).reshape(1, 16)
        async with httpaio.InferenceServerClient(auth_server.url) as http:
            inputs = [httpaio.InferInput(n, [1, 16], "INT32") for n in ("INPUT0", "INPUT1")]
            for inp in inputs:
                inp.set_data_from_numpy(a)
            with pytest.raises(InferenceServerException) as info:
                await http.infer("simple", inputs)
            assert info.value.status() == "401"
            result = await http.infer("simple", inputs, headers=_bearer(INFERRER))
            np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), 2 * a)
        async with grpcaio.InferenceServerClient(auth_server.grpc_url) as rpc:
            inputs = [grpcaio.InferInput(n, [1, 16], "INT32") for n in ("INPUT0", "INPUT1")]
            for inp in inputs:
                inp.set_data_from_numpy(a)
            with pytest.raises(InferenceServerException) as info:
                await rpc.infer("simple", inputs, headers=_bearer(READER))
            assert info.value.status() == "StatusCode.PERMISSION_DENIED"
            result = await rpc.infer("simple", inputs, headers=_bearer(INFERRER))
            np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), 2 * a)

    asyncio.run(scenario())


# -- TLS --------------------------------------------------------------------------


def _tls(protocol: str, pki: Pki, *, client_cert: bool) -> dict[str, Any]:
    """tritonclient's TLS arguments, as the README shows them."""
    if protocol == "http":
        options = {"ca_certs": str(pki.ca)}
        if client_cert:
            options |= {"certfile": str(pki.client_cert), "keyfile": str(pki.client_key)}
        return {"ssl": True, "ssl_options": options}
    tls: dict[str, Any] = {"ssl": True, "root_certificates": str(pki.ca)}
    if client_cert:
        tls |= {"certificate_chain": str(pki.client_cert), "private_key": str(pki.client_key)}
    return tls


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_tritonclient_over_tls(protocol: str, tls_server: ServerProcess, pki: Pki) -> None:
    client = _client(protocol, tls_server, **_tls(protocol, pki, client_cert=False))
    try:
        assert client.is_server_ready()
        assert _infer(protocol, client).shape == (1, 16)
    finally:
        client.close()


def test_plain_clients_cannot_talk_to_a_tls_port(tls_server: ServerProcess, pki: Pki) -> None:
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://{tls_server.url}/v2/health/ready", timeout=5)
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"https://{tls_server.url}/v2/health/ready", timeout=5)  # CA not trusted
    context = _client_context(pki, client_cert=False)
    metrics = httpx.get(tls_server.metrics_url, verify=context, timeout=5)
    assert metrics.status_code == 200  # no --metrics-auth: open, but over TLS
    client = grpcclient.InferenceServerClient(tls_server.grpc_url)
    try:
        _fails("StatusCode.UNAVAILABLE", client.is_server_live, client_timeout=5)
    finally:
        client.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_mutual_tls_needs_a_client_certificate_from_the_client_ca(
    protocol: str, mtls_server: ServerProcess, pki: Pki
) -> None:
    client = _client(protocol, mtls_server, **_tls(protocol, pki, client_cert=True))
    try:
        assert client.is_server_live()
        _fails(_DENIED[protocol], _infer, protocol, client)  # tokens still apply
        assert _infer(protocol, client, _bearer(INFERRER)).shape == (1, 16)
    finally:
        client.close()
    client = _client(protocol, mtls_server, **_tls(protocol, pki, client_cert=False))
    try:
        if protocol == "grpc":
            _fails("StatusCode.UNAVAILABLE", client.is_server_live, client_timeout=5)
        else:  # TLS 1.3: the server refuses after the client's side of the handshake
            with pytest.raises((http.client.HTTPException, OSError)):
                client.is_server_live()
    finally:
        client.close()


def test_mutual_tls_handshake_refuses_missing_and_foreign_certificates(
    mtls_server: ServerProcess, pki: Pki
) -> None:
    url = f"{mtls_server.http_url}/v2/health/live"
    without = _client_context(pki, client_cert=False)
    with pytest.raises(httpx.HTTPError):
        httpx.get(url, verify=without, timeout=5)
    foreign = ssl.create_default_context(cafile=str(pki.ca))
    foreign.load_cert_chain(pki.stranger_cert, pki.stranger_key)
    with pytest.raises(httpx.HTTPError):
        httpx.get(url, verify=foreign, timeout=5)
    with_cert = _client_context(pki, client_cert=True)
    assert httpx.get(url, verify=with_cert, timeout=5).status_code == 200


def test_workers_serve_tls_and_tokens_on_every_port(
    repository: Path, pki: Pki, token_file: Path, tmp_path: Path
) -> None:
    """Under --workers the supervisor's metrics port and each worker's pre-bound ports
    serve TLS and check tokens."""
    context = _client_context(pki, client_cert=False)
    proc = ServerProcess(
        repository,
        "--workers", "2",
        "--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key),
        "--auth-token-file", str(token_file), "--metrics-auth",
        log_dir=tmp_path,
        ssl_context=context,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60  # health answers for one worker, the log for both
        while "server ready: 2 workers serving" not in proc.log():
            assert time.monotonic() < deadline, proc.log()
            time.sleep(0.05)
        for protocol in PROTOCOLS:
            client = _client(protocol, proc, **_tls(protocol, pki, client_cert=False))
            try:
                _fails(_DENIED[protocol], _infer, protocol, client)
                assert _infer(protocol, client, _bearer(INFERRER)).shape == (1, 16)
            finally:
                client.close()
        assert httpx.get(proc.metrics_url, verify=context).status_code == 401
        metrics = httpx.get(proc.metrics_url, verify=context, headers=_bearer(READER))
        assert metrics.status_code == 200 and "sluice_" in metrics.text
    finally:
        assert proc.stop() == 0, proc.log()
