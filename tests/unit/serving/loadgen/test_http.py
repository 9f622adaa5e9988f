from __future__ import annotations

import asyncio

import pytest

from serving.loadgen import HttpSender, LoadSpec, ProtocolError, ResponseParser, drive, http_request

OK = b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{"ok":true}'
BAD = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 2\r\n\r\n{}"


def test_parser_frames_responses_split_anywhere() -> None:
    parser = ResponseParser()
    stream = OK + BAD + OK
    statuses = []
    for i in range(len(stream)):
        statuses += parser.feed(stream[i : i + 1])
    assert statuses == [200, 400, 200]
    assert parser.idle


def test_parser_frames_several_responses_in_one_read() -> None:
    parser = ResponseParser()
    assert parser.feed(OK + BAD + OK[:20]) == [200, 400]
    assert not parser.idle
    assert parser.feed(OK[20:]) == [200]


def test_parser_handles_an_empty_body_and_header_case() -> None:
    parser = ResponseParser()
    assert parser.feed(b"HTTP/1.1 503 Busy\r\nCONTENT-LENGTH:0\r\nRetry-After: 1\r\n\r\n") == [503]


@pytest.mark.parametrize(
    "response",
    [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\n",
        b"SSH-2.0-OpenSSH\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: many\r\n\r\n",
    ],
)
def test_parser_refuses_what_it_cannot_frame(response: bytes) -> None:
    with pytest.raises(ProtocolError):
        ResponseParser().feed(response)


class TinyServer:
    """A real keep-alive HTTP/1.1 server: 200 for /ok, 400 otherwise; writes in pieces."""

    def __init__(self) -> None:
        self.requests = 0
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
                self.requests += 1
                response = OK if head.startswith(b"POST /ok ") else BAD
                writer.write(response[:7])  # split writes exercise the framing
                await writer.drain()
                writer.write(response[7:])
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


def _run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_sender_reports_status_over_one_kept_alive_connection() -> None:
    async def go() -> tuple[list[bool], int]:
        server = TinyServer()
        srv = await asyncio.start_server(server.handle, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        async with srv:
            requests = [
                http_request("127.0.0.1", port, "/ok", b'{"inputs":[]}'),
                http_request("127.0.0.1", port, "/missing", b"x" * 5000),
            ]
            sender = await HttpSender("127.0.0.1", port, requests).connect()
            results = [await sender.send(i % 2) for i in range(6)]
            await sender.close()
            return results, server.requests

    results, served = _run(go())
    assert results == [True, False] * 3
    assert served == 6


def test_closed_and_open_loop_loads_against_a_real_server() -> None:
    async def go() -> tuple[int, int, int, int]:
        server = TinyServer()
        srv = await asyncio.start_server(server.handle, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        async with srv:
            requests = [http_request("127.0.0.1", port, "/ok", b"{}")]
            senders = [await HttpSender("127.0.0.1", port, requests).connect() for _ in range(3)]
            closed = await drive(senders, LoadSpec(3, duration=0.2), 1)
            spec = LoadSpec(3, duration=0.25, mode="constant", rate=200.0)
            opened = await drive(senders, spec, 1)
            for s in senders:
                await s.close()
            return closed.successes, closed.errors, opened.successes, opened.errors

    closed_ok, closed_errors, open_ok, open_errors = _run(go())
    assert closed_ok > 0 and closed_errors == 0
    assert open_ok == 50 and open_errors == 0  # every scheduled send, no more


def test_failed_requests_count_as_errors_not_latencies() -> None:
    async def go() -> tuple[int, int, list[str]]:
        server = TinyServer()
        srv = await asyncio.start_server(server.handle, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        async with srv:
            requests = [http_request("127.0.0.1", port, "/nope", b"{}")]
            senders = [await HttpSender("127.0.0.1", port, requests).connect()]
            result = await drive(senders, LoadSpec(1, duration=0.25, mode="constant", rate=40), 1)
            await senders[0].close()
            return result.successes, result.errors, result.error_samples

    ok, errors, samples = _run(go())
    assert (ok, errors) == (0, 10)
    assert samples and samples[0] == "unsuccessful status"
