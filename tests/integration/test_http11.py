"""HTTP/1.1 edge cases against the real server, over raw sockets.

Inference, liveness and readiness are answered inside the protocol (serving.http.raw_route),
every other route by the ASGI app: these tests mix both on one connection. Each case is
answered correctly, and nothing leaks: the body-byte budget and the connection cap of the
server under test are small, so a request or connection that was not released would make
a later request fail.
"""

from __future__ import annotations

import gzip
import json
import socket
from collections.abc import Iterator

import pytest

from serving.examples import write_repository
from tests.integration.server_process import ServerProcess

pytestmark = pytest.mark.integration

PATH = "/v2/models/identity_int32/infer"
WAIT = 15.0
BUDGET = 64 * 1024  # --http-max-buffered-bytes: a few leaked requests would exhaust it
CONNECTIONS = 4  # --http-max-connections


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = tmp_path_factory.mktemp("repository")
    write_repository(repo, ["identity_int32"])
    proc = ServerProcess(
        repo,
        "--max-request-size", str(BUDGET), "--http-max-buffered-bytes", str(BUDGET),
        "--http-max-connections", str(CONNECTIONS), "--http-header-timeout-secs", "1",
        "--http-body-timeout-secs", "1",
        log_dir=tmp_path_factory.mktemp("logs"),
    )  # fmt: skip
    yield proc
    proc.stop()


def _body(values: list[int], size: int | None = None) -> bytes:
    body = json.dumps(
        {
            "inputs": [
                {"name": "INPUT0", "datatype": "INT32", "shape": [1, len(values)], "data": values}
            ]
        }
    ).encode()
    return body if size is None else body + b" " * (size - len(body))


def _post(body: bytes, *extra: str) -> bytes:
    head = [f"POST {PATH} HTTP/1.1", "Host: sluice", "Content-Type: application/json", *extra]
    if not any(h.lower().startswith("transfer-encoding") for h in extra):
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def _get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: sluice\r\n\r\n".encode()


def _connect(server: ServerProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.http_port), timeout=WAIT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(WAIT)
    return sock


class Reader:
    """Responses read off one connection in order, framed by Content-Length."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        assert chunk, f"connection closed; unread: {self.buffer!r}"
        self.buffer += chunk

    def response(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in (x.split(":", 1) for x in lines)}
        length = int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            self._fill()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(status_line.split()[1]), headers, body

    def closed(self) -> bool:
        try:
            while self.sock.recv(65536):
                pass
        except ConnectionResetError:
            pass
        return True


def _outputs(body: bytes) -> list[int]:
    return json.loads(body)["outputs"][0]["data"]


def _serves_everyone(server: ServerProcess) -> None:
    """All CONNECTIONS connections at once, each with a request of most of the budget: it
    works only if every earlier connection and body byte was released."""
    socks = [_connect(server) for _ in range(CONNECTIONS)]
    try:
        big = _body([7, 8], BUDGET // CONNECTIONS - 1024)
        for sock in socks:
            sock.sendall(_post(big))
        for sock in socks:
            status, _, body = Reader(sock).response()
            assert status == 200, body
            assert _outputs(body) == [7, 8]
    finally:
        for sock in socks:
            sock.close()


def test_pipelined_requests_are_answered_in_order(server: ServerProcess) -> None:
    requests = [
        _post(_body([1, 2])),
        _get("/v2/health/live"),
        _post(_body([3, 4, 5])),
        _get("/v2"),  # served by the ASGI app, between two raw routes
        _post(b"{not json"),
        _get("/v2/health/ready"),
        _post(_body([6])),
    ]
    with _connect(server) as sock:
        sock.sendall(b"".join(requests))
        reader = Reader(sock)
        answers = [reader.response() for _ in requests]
    statuses = [status for status, _, _ in answers]
    assert statuses == [200, 200, 200, 200, 400, 200, 200]
    assert _outputs(answers[0][2]) == [1, 2]
    assert json.loads(answers[1][2]) == {"live": True}
    assert _outputs(answers[2][2]) == [3, 4, 5]
    assert json.loads(answers[3][2])["name"] == "sluice"
    assert "error" in json.loads(answers[4][2])
    assert json.loads(answers[5][2]) == {"ready": True}
    assert _outputs(answers[6][2]) == [6]
    _serves_everyone(server)


def test_body_split_across_many_segments(server: ServerProcess) -> None:
    body = _body(list(range(50)))
    request = _post(body)
    head_end = request.index(b"\r\n\r\n") + 4
    with _connect(server) as sock:
        for i in range(0, head_end, 7):  # the headers in pieces too
            sock.sendall(request[i : min(i + 7, head_end)])
        for i in range(head_end, len(request)):
            sock.sendall(request[i : i + 1])
        status, _, answer = Reader(sock).response()
    assert status == 200, answer
    assert _outputs(answer) == list(range(50))


def test_chunked_gzip_body_after_100_continue(server: ServerProcess) -> None:
    body = gzip.compress(_body([9, 10, 11]))
    head = _post(
        b"", "Transfer-Encoding: chunked", "Content-Encoding: gzip", "Expect: 100-continue"
    )
    with _connect(server) as sock:
        sock.sendall(head)
        reader = Reader(sock)
        interim, _, _ = reader.response()
        assert interim == 100
        for i in range(0, len(body), 10):
            piece = body[i : i + 10]
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        sock.sendall(b"0\r\n\r\n")
        status, _, answer = reader.response()
    assert status == 200, answer
    assert _outputs(answer) == [9, 10, 11]


def test_body_over_the_limit_after_decompression(server: ServerProcess) -> None:
    body = gzip.compress(_body([1], BUDGET + 1))
    with _connect(server) as sock:
        sock.sendall(_post(body, "Content-Encoding: gzip"))
        status, _, answer = Reader(sock).response()
    assert status == 413, answer
    _serves_everyone(server)


def test_client_closing_mid_body_leaks_nothing(server: ServerProcess) -> None:
    for _ in range(3 * CONNECTIONS):
        sock = _connect(server)
        request = _post(_body([1], BUDGET // 2))
        sock.sendall(request[: len(request) - 100])  # half the budget, then gone
        sock.close()
    _serves_everyone(server)


def test_oversized_header_is_answered_431(server: ServerProcess) -> None:
    for size in (100 * 1024, 4 * 1024 * 1024):
        with _connect(server) as sock:
            head = b"GET /v2/health/live HTTP/1.1\r\nHost: sluice\r\nX-Big: "
            try:
                sock.sendall(head + b"a" * size + b"\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass  # refused before the client finished sending
            reader = Reader(sock)
            status, headers, body = reader.response()
            assert status == 431, body
            assert headers["connection"] == "close"
            assert "exceed the limit" in json.loads(body)["error"]
            assert reader.closed()
    with _connect(server) as sock:  # many ordinary headers within the limit are fine
        extra = "".join(f"X-H{i}: {'v' * 50}\r\n" for i in range(200))
        sock.sendall(f"GET /v2/health/live HTTP/1.1\r\nHost: s\r\n{extra}\r\n".encode())
        status, _, body = Reader(sock).response()
        assert status == 200, body
    _serves_everyone(server)


def test_slow_client_is_cut_off_while_others_are_served(server: ServerProcess) -> None:
    slow = _connect(server)
    request = _post(_body([1, 2]))
    slow.sendall(request[:-5])  # and never the rest: the body deadline (1 s) answers
    with _connect(server) as fast:
        fast.sendall(_post(_body([4])) + _get("/v2/health/live"))
        reader = Reader(fast)
        status, _, body = reader.response()
        assert status == 200 and _outputs(body) == [4]
        assert reader.response()[0] == 200
    reader = Reader(slow)
    status, headers, body = reader.response()
    assert status == 408, body
    assert headers["connection"] == "close"
    assert reader.closed()
    slow.close()
    _serves_everyone(server)
