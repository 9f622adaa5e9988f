"""The HTTP protocol's limits, driven byte by byte with an injected clock and transport."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from serving.http.protocol import (
    LINGER_SECS,
    BufferBudget,
    ConnectionLimits,
    HttpProtocol,
    protocol_class,
)
from serving.settings import Settings

LIMITS = ConnectionLimits(
    header_timeout=10.0, body_timeout=60.0, max_connections=2, max_buffered_bytes=1000
)
KEEPALIVE = 75


class FakeTimer:
    def __init__(self, when: float, callback: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.when, self.callback, self.args = when, callback, args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeTask:
    def add_done_callback(self, callback: Callable[..., Any]) -> None:
        pass


class FakeLoop:
    """A clock moved by hand: timers fire in ``advance``; tasks are recorded, not run."""

    def __init__(self) -> None:
        self.now = 0.0
        self.timers: list[FakeTimer] = []
        self.started: list[Any] = []

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> FakeTimer:
        timer = FakeTimer(self.now + delay, callback, args)
        self.timers.append(timer)
        return timer

    def create_task(self, coro: Any, **kwargs: Any) -> FakeTask:
        self.started.append(coro)
        coro.close()  # the application itself is not the point here
        return FakeTask()

    def pending(self) -> list[float]:
        """Delays of the timers still armed, from now."""
        return sorted(t.when - self.now for t in self.timers if not t.cancelled)

    def advance(self, secs: float) -> None:
        self.now += secs
        while due := [t for t in self.timers if not t.cancelled and t.when <= self.now]:
            timer = min(due, key=lambda t: t.when)
            timer.cancelled = True
            timer.callback(*timer.args)


class FakeTransport:
    def __init__(self) -> None:
        self.written = b""
        self.closed = False
        self.eof = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name)

    def write(self, data: bytes) -> None:
        assert not self.closed and not self.eof
        self.written += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _app(scope: Any, receive: Any, send: Any) -> None:  # never run: FakeLoop
    raise AssertionError("not run")


class Server:
    """One server's shared state and protocol class; ``connect`` opens a connection."""

    def __init__(self, limits: ConnectionLimits = LIMITS) -> None:
        self.loop = FakeLoop()
        self.state = ServerState()
        self.cls = protocol_class(limits)
        self.config = Config(_app, http=self.cls, lifespan="off", timeout_keep_alive=KEEPALIVE)
        self.config.load()

    @property
    def budget(self) -> BufferBudget:
        return self.cls.budget

    def connect(self) -> tuple[HttpProtocol, FakeTransport]:
        proto = self.cls(config=self.config, server_state=self.state, app_state={}, _loop=self.loop)  # type: ignore[arg-type]
        transport = FakeTransport()
        proto.connection_made(transport)  # type: ignore[arg-type]
        return proto, transport


def head(length: int | None = None) -> bytes:
    extra = f"Content-Length: {length}\r\n" if length is not None else ""
    return f"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode()


def answer(written: bytes) -> tuple[int, dict[str, str], dict[str, Any]]:
    raw_head, _, body = written.partition(b"\r\n\r\n")
    status_line, *lines = raw_head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    assert int(headers["content-length"]) == len(body)
    return int(status_line.split()[1]), headers, json.loads(body)


def respond(proto: HttpProtocol) -> None:
    """The application's answer to the current request (200, empty body)."""

    async def send() -> None:
        await proto.cycle.send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]}
        )
        await proto.cycle.send({"type": "http.response.body", "body": b""})

    asyncio.run(send())


@pytest.fixture
def server() -> Server:
    return Server()


def test_budget_takes_up_to_its_limit() -> None:
    budget = BufferBudget(10)
    assert budget.take(6) and budget.take(4)
    assert not budget.take(1)
    budget.release(4)
    assert budget.take(3) and budget.held == 9


def test_half_sent_headers_get_408_and_the_connection_closes(server: Server) -> None:
    proto, transport = server.connect()
    proto.data_received(b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nContent-")
    server.loop.advance(LIMITS.header_timeout - 0.5)
    assert transport.written == b""
    server.loop.advance(0.5)
    status, headers, body = answer(transport.written)
    assert status == 408
    assert headers["connection"] == "close"
    assert body == {"error": "request headers not received within 10 s"}
    assert transport.eof and not transport.closed  # lingering: reads, drops, then closes
    proto.data_received(b"Type: application/json\r\n\r\n")
    assert server.loop.started == []
    server.loop.advance(LINGER_SECS)
    assert transport.closed


def test_headers_count_from_the_connection_start(server: Server) -> None:
    proto, transport = server.connect()
    server.loop.advance(LIMITS.header_timeout - 1)
    proto.data_received(b"GET /v2 HTTP/1.1\r\n")  # a late first byte does not restart the clock
    server.loop.advance(1)
    assert answer(transport.written)[0] == 408


def test_a_connection_that_sends_nothing_is_closed_without_an_answer(server: Server) -> None:
    _, transport = server.connect()
    server.loop.advance(LIMITS.header_timeout)
    assert transport.closed and transport.written == b""


def test_a_whole_request_leaves_no_timer_armed(server: Server) -> None:
    proto, _ = server.connect()
    proto.data_received(head(2) + b"{}")
    assert len(server.loop.started) == 1  # handed to the application
    assert server.loop.pending() == []


def test_a_later_request_on_a_kept_alive_connection_has_its_own_header_clock(
    server: Server,
) -> None:
    proto, transport = server.connect()
    proto.data_received(head(0))
    respond(proto)
    assert server.loop.pending() == [KEEPALIVE]  # idle: only the keep-alive timeout runs
    server.loop.advance(30)
    written = len(transport.written)
    proto.data_received(b"GET /v2 HTTP/1.1\r\n")
    assert server.loop.pending() == [LIMITS.header_timeout]
    server.loop.advance(LIMITS.header_timeout - 0.5)
    assert len(transport.written) == written
    server.loop.advance(0.5)
    assert answer(transport.written[written:])[0] == 408


def test_blank_lines_do_not_keep_an_idle_connection_open(server: Server) -> None:
    proto, transport = server.connect()
    proto.data_received(head(0))
    respond(proto)
    proto.data_received(b"\r\n")  # uvicorn's keep-alive timer stops at any byte
    server.loop.advance(LIMITS.header_timeout)
    assert transport.closed


def test_half_sent_body_gets_408_and_the_application_sees_a_disconnect(
    server: Server,
) -> None:
    proto, transport = server.connect()
    proto.data_received(head(100) + b"x" * 40)
    assert server.budget.held == 40
    server.loop.advance(LIMITS.body_timeout - 1)
    proto.data_received(b"x" * 40)  # progress does not extend the deadline
    server.loop.advance(1)
    status, headers, body = answer(transport.written)
    assert status == 408
    assert headers["connection"] == "close"
    assert body == {"error": "request body not received within 60 s"}
    assert proto.cycle.disconnected
    assert server.budget.held == 0


def test_a_body_in_time_disarms_the_deadline(server: Server) -> None:
    proto, transport = server.connect()
    proto.data_received(head(100) + b"x" * 40)
    proto.data_received(b"x" * 60)
    assert server.loop.pending() == []
    respond(proto)
    assert server.budget.held == 0  # released with the answer
    assert transport.written.startswith(b"HTTP/1.1 200 ")


def test_a_body_never_finished_after_an_early_answer_closes_the_connection(
    server: Server,
) -> None:
    proto, transport = server.connect()
    proto.data_received(head(100) + b"x" * 40)
    respond(proto)  # answered without reading the body (a 404, say)
    written = transport.written
    server.loop.advance(LIMITS.body_timeout)
    assert transport.closed and transport.written == written


def test_the_body_that_crosses_the_budget_gets_503(server: Server) -> None:
    first, _ = server.connect()
    first.data_received(head(900) + b"x" * 600)
    second, transport = server.connect()
    second.data_received(head(900) + b"x" * 300)
    assert server.budget.held == 900
    second.data_received(b"x" * 101)
    status, headers, body = answer(transport.written)
    assert status == 503
    assert headers["retry-after"] == "1"
    assert headers["connection"] == "close"
    assert body == {"error": "the server holds its limit of 1000 body bytes"}
    assert second.cycle.disconnected
    assert server.budget.held == 600  # the refused request's bytes are released...
    first.connection_lost(None)
    assert server.budget.held == 0  # ...and a lost connection's too


def test_a_connection_beyond_the_cap_gets_503_at_once(server: Server) -> None:
    server.connect()
    server.connect()
    third, transport = server.connect()
    status, headers, body = answer(transport.written)
    assert status == 503
    assert headers["retry-after"] == "1"
    assert body == {"error": "the server holds its limit of 2 connections"}
    assert third not in server.state.connections
    third.data_received(head(0))  # its request is read and dropped
    assert server.loop.started == []


def test_limits_come_from_settings(tmp_path: Path) -> None:
    settings = Settings(
        model_repository=tmp_path, http_header_timeout_secs=1.5, http_max_connections=7
    )
    limits = ConnectionLimits.from_settings(settings)
    assert (limits.header_timeout, limits.body_timeout) == (1.5, 60.0)
    assert limits.max_connections == 7
    assert limits.max_buffered_bytes == 256 * 2**20  # 4 x 64 MiB requests
    big = Settings(model_repository=tmp_path, max_request_bytes=2**30)
    assert big.http_buffered_bytes_limit == 4 * 2**30


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("http_header_timeout_secs", 0.0, "--http-header-timeout-secs must be positive"),
        ("http_body_timeout_secs", -1.0, "--http-body-timeout-secs must be positive"),
        ("http_keepalive_secs", 0, "--http-keepalive-secs must be positive"),
        ("http_max_connections", 0, "--http-max-connections must be at least 1"),
        ("http_max_buffered_bytes", 1000, "below --max-request-size 4096"),
    ],
)
def test_settings_refuse_limits_that_cannot_work(
    tmp_path: Path, field: str, value: float, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Settings(model_repository=tmp_path, max_request_bytes=4096, **{field: value})
