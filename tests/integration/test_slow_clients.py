"""Slow and greedy clients are cut off, and the server keeps serving everyone else.

Real server processes with one-second timeouts, driven over raw sockets. Every wait polls
for the outcome (a socket read with a generous timeout), never sleeps and hopes.
"""

from __future__ import annotations

import json
import re
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from serving.examples import write_repository
from tests.integration.server_process import ServerProcess

pytestmark = pytest.mark.integration

PATH = "/v2/models/identity_int32/infer"
WAIT = 15.0  # generous: a one-second timeout that fires at all fires well within this


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("repository")
    write_repository(repo, ["identity_int32"])
    return repo


def _start(
    repository: Path, tmp_path_factory: pytest.TempPathFactory, *flags: str
) -> ServerProcess:
    return ServerProcess(repository, *flags, log_dir=tmp_path_factory.mktemp("logs"))


@pytest.fixture(scope="module")
def slow_server(
    repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    proc = _start(
        repository, tmp_path_factory,
        "--http-header-timeout-secs", "1", "--http-body-timeout-secs", "1",
        "--http-keepalive-secs", "1",
    )  # fmt: skip
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def capped_server(
    repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    proc = _start(repository, tmp_path_factory, "--http-max-connections", "3")
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def budget_server(
    repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    proc = _start(
        repository, tmp_path_factory,
        "--max-request-size", str(10 * 2**20), "--http-max-buffered-bytes", str(20 * 2**20),
    )  # fmt: skip
    yield proc
    proc.stop()


def _infer_body(size: int | None = None) -> bytes:
    """A valid infer request, padded with JSON whitespace to ``size`` bytes."""
    body = json.dumps(
        {"inputs": [{"name": "INPUT0", "datatype": "INT32", "shape": [1, 2], "data": [1, 2]}]}
    ).encode()
    return body if size is None else body + b" " * (size - len(body))


def _request_head(length: int) -> bytes:
    return (
        f"POST {PATH} HTTP/1.1\r\nHost: sluice\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def _connect(server: ServerProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.http_port), timeout=WAIT)
    sock.settimeout(WAIT)
    return sock


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One response: status, headers (lower-case names) and the body (Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response; got {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    length = int(headers["content-length"])
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed inside a response body"
        rest += chunk
    return status, headers, rest[:length]


def _closed(sock: socket.socket) -> bool:
    """True once the server closes the connection (read until EOF, dropping any data)."""
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return True


def _serves(server: ServerProcess) -> None:
    """The server is up and answers a normal request correctly."""
    assert server.alive(), server.log()
    r = httpx.post(server.http_url + PATH, content=_infer_body(), timeout=WAIT)
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"] == [1, 2]


def _rss_kib(server: ServerProcess, field: str) -> int:
    status = Path(f"/proc/{server.proc.pid}/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+) kB$", status, re.MULTILINE)
    assert match, status
    return int(match.group(1))


# -- timeouts -----------------------------------------------------------------------------


def test_half_sent_headers_get_408_and_the_connection_closes(slow_server: ServerProcess) -> None:
    with _connect(slow_server) as sock:
        sock.sendall(f"POST {PATH} HTTP/1.1\r\nHost: sluice\r\nContent-Ty".encode())
        status, headers, body = _read_response(sock)
        assert status == 408
        assert headers["connection"] == "close"
        assert "headers not received within 1 s" in json.loads(body)["error"]
        assert _closed(sock)
    _serves(slow_server)


def test_a_connection_that_sends_nothing_is_closed(slow_server: ServerProcess) -> None:
    with _connect(slow_server) as sock:
        assert sock.recv(65536) == b""  # closed without an answer: no request was made
    _serves(slow_server)


def test_half_sent_body_gets_408_and_the_connection_closes(slow_server: ServerProcess) -> None:
    body = _infer_body(4096)
    with _connect(slow_server) as sock:
        sock.sendall(_request_head(len(body)) + body[:2048])
        status, headers, answer = _read_response(sock)
        assert status == 408
        assert headers["connection"] == "close"
        assert "body not received within 1 s" in json.loads(answer)["error"]
        assert _closed(sock)
    _serves(slow_server)


def test_a_body_sent_a_byte_at_a_time_is_cut_off(slow_server: ServerProcess) -> None:
    """The body timeout is a deadline for the whole body, not for each byte."""
    body = _infer_body(4096)
    with _connect(slow_server) as sock:
        sock.sendall(_request_head(len(body)))
        sock.setblocking(False)
        answer = b""
        deadline = time.monotonic() + WAIT
        sent = 0
        while not answer and time.monotonic() < deadline:
            if sent < len(body):
                sock.send(body[sent : sent + 1])
                sent += 1
            if select.select([sock], [], [], 0.1)[0]:
                answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert sent < len(body)
    _serves(slow_server)


def test_an_idle_keepalive_connection_is_closed(slow_server: ServerProcess) -> None:
    body = _infer_body()
    with _connect(slow_server) as sock:
        sock.sendall(_request_head(len(body)) + body)
        status, headers, _ = _read_response(sock)
        assert status == 200
        assert "connection" not in headers  # kept alive...
        assert sock.recv(65536) == b""  # ...until idle for --http-keepalive-secs
    _serves(slow_server)


def test_a_keepalive_connection_serves_a_later_request_in_time(
    slow_server: ServerProcess,
) -> None:
    """The header timeout of a second request starts at its first byte, not at the
    previous response: a request sent whole on a kept-alive connection is answered."""
    body = _infer_body()
    with _connect(slow_server) as sock:
        for _ in range(2):
            sock.sendall(_request_head(len(body)) + body)
            status, _, answer = _read_response(sock)
            assert status == 200, answer


# -- caps ---------------------------------------------------------------------------------


def test_a_connection_beyond_the_cap_gets_503(capped_server: ServerProcess) -> None:
    body = _infer_body()
    request = _request_head(len(body)) + body
    held = [_connect(capped_server) for _ in range(3)]
    try:
        for sock in held:  # each is accepted and served
            sock.sendall(request)
            assert _read_response(sock)[0] == 200
        with _connect(capped_server) as extra:
            extra.sendall(request)
            status, headers, answer = _read_response(extra)
            assert status == 503
            assert headers["retry-after"] == "1"
            assert headers["connection"] == "close"
            assert "limit of 3 connections" in json.loads(answer)["error"]
            assert _closed(extra)
        for sock in held:  # the first three still work
            sock.sendall(request)
            assert _read_response(sock)[0] == 200
    finally:
        for sock in held:
            sock.close()
    # The closed connections leave the count once the server has seen them go.
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        r = httpx.post(capped_server.http_url + PATH, content=body, timeout=WAIT)
        if r.status_code != 503:
            break
    assert r.status_code == 200, r.text


def test_buffered_bodies_are_capped_and_released(budget_server: ServerProcess) -> None:
    """Ten clients each send 8 MiB of a 10 MiB body and stall. Two fit the 20 MiB cap; each
    other one is answered 503 as its body crosses it, and the server's memory stays near
    the cap instead of growing by 80 MiB."""
    size, sent = 10 * 2**20, 8 * 2**20
    body = _infer_body(size)
    Path(f"/proc/{budget_server.proc.pid}/clear_refs").write_text("5")  # reset VmHWM
    rss_before = _rss_kib(budget_server, "VmRSS")
    socks = [_connect(budget_server) for _ in range(10)]
    try:
        for sock in socks:
            sock.sendall(_request_head(size))
            try:
                sock.sendall(body[:sent])
            except (BrokenPipeError, ConnectionResetError):
                pass  # refused while still sending; the answer is read below
        # Whatever the order the server read them in, exactly two fit (2 x 8 <= 20 < 3 x 8).
        refused: set[socket.socket] = set()
        deadline = time.monotonic() + WAIT
        while len(refused) < 8 and time.monotonic() < deadline:
            waiting = [sock for sock in socks if sock not in refused]
            refused.update(select.select(waiting, [], [], 0.5)[0])
        holding = [sock for sock in socks if sock not in refused]
        assert len(refused) == 8 and len(holding) == 2
        assert not select.select(holding, [], [], 0)[0]  # no answer yet: still receiving
        for sock in refused:
            status, headers, answer = _read_response(sock)
            assert status == 503
            assert headers["retry-after"] == "1"
            assert "body bytes" in json.loads(answer)["error"]
        peak_growth = _rss_kib(budget_server, "VmHWM") - rss_before
        assert peak_growth < 40 * 1024, f"RSS grew by {peak_growth} KiB holding 20 MiB"
        for sock in holding:  # the two within the cap complete normally
            sock.sendall(body[sent:])
            status, _, answer = _read_response(sock)
            assert status == 200, answer
    finally:
        for sock in socks:
            sock.close()
    # The cap is released: a full-size body fits again.
    r = httpx.post(budget_server.http_url + PATH, content=body, timeout=WAIT)
    assert r.status_code == 200, r.text
    _serves(budget_server)
