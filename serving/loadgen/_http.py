"""A lean HTTP/1.1 keep-alive client for load generation.

httpx spends more CPU per request than the servers it would measure, and on a two-core
machine the client shares the cores with the server. This one writes pre-encoded request
bytes on a raw asyncio protocol (uvloop when installed) and parses responses only as far
as framing needs: the status code and ``Content-Length``.
"""

from __future__ import annotations

import asyncio

__all__ = ["HttpConnection", "HttpSender", "ProtocolError", "ResponseParser"]


class ProtocolError(Exception):
    """The peer sent something this client does not frame."""


class ResponseParser:
    """Incremental framing of HTTP/1.1 responses on one connection.

    ``feed`` takes bytes as they arrive and returns the status codes of the responses
    they completed, in order.
    """

    __slots__ = ("_buffer", "_end", "_status")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._end = -1  # end of the current response in the buffer, once its head is read
        self._status = 0

    def feed(self, data: bytes) -> list[int]:
        buffer = self._buffer
        buffer += data
        done: list[int] = []
        while True:
            if self._end < 0:
                head_end = buffer.find(b"\r\n\r\n")
                if head_end < 0:
                    if len(buffer) > 65536:
                        raise ProtocolError("response head longer than 64 KiB")
                    return done
                self._status, length = _parse_head(bytes(buffer[:head_end]))
                self._end = head_end + 4 + length
            if len(buffer) < self._end:
                return done
            del buffer[: self._end]
            self._end = -1
            done.append(self._status)

    @property
    def idle(self) -> bool:
        """True between responses (nothing partial buffered)."""
        return self._end < 0 and not self._buffer


def _parse_head(head: bytes) -> tuple[int, int]:
    if not head.startswith(b"HTTP/1.") or len(head) < 12:
        raise ProtocolError(f"not an HTTP/1.x status line: {head[:40]!r}")
    try:
        status = int(head[9:12])
    except ValueError:
        raise ProtocolError(f"bad status line: {head[:40]!r}") from None
    lower = head.lower()
    at = lower.find(b"\r\ncontent-length:")
    if at < 0:
        if b"\r\ntransfer-encoding:" in lower:
            raise ProtocolError("chunked responses are not supported (no Content-Length)")
        if status in (204, 304) or 100 <= status < 200:
            return status, 0
        raise ProtocolError("response without Content-Length")
    start = at + len(b"\r\ncontent-length:")
    stop = lower.find(b"\r\n", start)
    try:
        length = int(lower[start : stop if stop >= 0 else None].strip())
    except ValueError:
        raise ProtocolError("bad Content-Length") from None
    return status, length


class HttpConnection(asyncio.Protocol):
    """One keep-alive connection; one request in flight at a time."""

    def __init__(self) -> None:
        self._parser = ResponseParser()
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[int] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            statuses = self._parser.feed(data)
        except ProtocolError as exc:
            self._fail(exc)
            return
        for status in statuses:
            waiter = self._waiter
            self._waiter = None
            if waiter is not None and not waiter.done():
                waiter.set_result(status)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(exc or ConnectionResetError("server closed the connection"))

    def _fail(self, exc: Exception) -> None:
        self.closed = True
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        if self._transport is not None:
            self._transport.close()

    async def request(self, raw: bytes) -> int:
        """Write one pre-encoded request and return the response's status code."""
        if self.closed or self._transport is None:
            raise ConnectionResetError("connection is closed")
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport.write(raw)
        return await self._waiter

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()


class HttpSender:
    """A connection that reconnects after a failure; sends ``requests[index]``."""

    def __init__(self, host: str, port: int, requests: list[bytes]) -> None:
        self._host, self._port = host, port
        self._requests = requests
        self._conn: HttpConnection | None = None

    async def connect(self) -> HttpSender:
        loop = asyncio.get_running_loop()
        _transport, self._conn = await loop.create_connection(
            HttpConnection, self._host, self._port
        )
        return self

    async def send(self, index: int) -> bool:
        if self._conn is None or self._conn.closed:
            await self.connect()
        assert self._conn is not None
        return await self._conn.request(self._requests[index]) == 200

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
