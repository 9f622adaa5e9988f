"""The HTTP/1.1 connection protocol: uvicorn's httptools protocol with limits on slow clients.

uvicorn bounds only the idle time between requests on a keep-alive connection. A client
that opens a connection and sends its headers or its body a byte at a time, or not at all,
would hold the connection, and every body byte it sent, for ever. This protocol adds:

- a header deadline: the request line and headers must arrive within ``header_timeout``
  seconds of the connection opening, or of the first byte of a later request on a
  keep-alive connection (the idle time before that byte is the keep-alive timeout's);
- a body deadline: the whole body must arrive within ``body_timeout`` seconds of the
  headers (a deadline, not an inactivity timeout, so a body sent a byte at a time
  cannot hold a connection for ever);
- a cap on open connections: a connection beyond it is answered 503 at once;
- a cap on request body bytes held across all connections: the request whose body
  crosses it is answered 503 with ``Retry-After``. A request holds its body bytes from
  their arrival until its response is sent (or its connection is gone);
- a cap on one request's line and headers (``max_header_bytes``): past it the request is
  answered 431, so a client cannot make the parser buffer a header without end.

A refused request is answered from here, through the one error table, with
``Connection: close``; the application's task for it, if any, sees a disconnect. The
connection then stops reading for a moment before it closes (as nginx's lingering close
does), so a client still sending is not reset before it reads the answer.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from serving.errors import Overloaded, PayloadTooLarge, RequestTimeout, SluiceError
from serving.http.infer_route import error_parts

if TYPE_CHECKING:
    from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

    from serving.http.raw_route import RawRoutes
    from serving.settings import Settings

__all__ = ["BufferBudget", "ConnectionLimits", "HttpProtocol", "protocol_class"]

# How long a refused connection reads and drops what its client still sends before closing.
LINGER_SECS = 2.0


class BufferBudget:
    """Request body bytes held by all the connections of one server, against a cap."""

    __slots__ = ("held", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def take(self, size: int) -> bool:
        if self.held + size > self.limit:
            return False
        self.held += size
        return True

    def release(self, size: int) -> None:
        self.held -= size


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    header_timeout: float
    body_timeout: float
    max_connections: int
    max_buffered_bytes: int
    max_header_bytes: int = 64 * 1024

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionLimits:
        return cls(
            header_timeout=settings.http_header_timeout_secs,
            body_timeout=settings.http_body_timeout_secs,
            max_connections=settings.http_max_connections,
            max_buffered_bytes=settings.http_buffered_bytes_limit,
        )


def protocol_class(
    limits: ConnectionLimits, raw_routes: RawRoutes | None = None
) -> type[HttpProtocol]:
    """A protocol class for one server: its limits, its own budget of body bytes, and the
    routes it answers itself instead of the ASGI app (``serving.http.raw_route``)."""
    attrs = {
        "limits": limits,
        "budget": BufferBudget(limits.max_buffered_bytes),
        "raw_routes": raw_routes,
    }
    return type("HttpProtocol", (HttpProtocol,), attrs)


class HttpProtocol(HttpToolsProtocol):
    limits: ClassVar[ConnectionLimits]
    budget: ClassVar[BufferBudget]
    raw_routes: ClassVar[RawRoutes | None] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._linger_timer: asyncio.TimerHandle | None = None
        self._in_message = False  # from a request's first byte to its body's last
        self._headers_done = False
        self._held = 0  # body bytes of this connection counted in the budget
        self._refused = False
        self._header_bytes = 0  # this request's line and headers, as parsed
        self._header_chunks = 0  # bytes of reads that fell wholly inside its headers

    # -- the connection ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self.connections.discard(self)  # a refused connection does not count
            limit = self.limits.max_connections
            self._refuse(Overloaded(f"the server holds its limit of {limit} connections"))
            return
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # lingering: read and drop
        mid_headers = self._in_message and not self._headers_done
        super().data_received(data)
        if self._refused or self.transport.is_closing():
            return
        if self._in_message:
            if not self._headers_done:
                if mid_headers:  # httptools buffers a header until it ends: count it here
                    self._header_chunks += len(data)
                    self._check_header_size(self._header_chunks)
                    if self._refused:
                        return
                self._arm_header_timer()
            elif self._body_timer is None:
                self._body_timer = self.loop.call_later(self.limits.body_timeout, self._body_late)
        elif self.cycle is None or self.cycle.response_complete:
            # Only blank lines since the last response: they do not reset the idle timeout.
            self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._header_timer, self._body_timer, self._linger_timer):
            if timer is not None:
                timer.cancel()
        self._header_timer = self._body_timer = self._linger_timer = None
        self._release()
        super().connection_lost(exc)

    # -- parser callbacks ----------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_message = True
        self._headers_done = False
        self._header_bytes = self._header_chunks = 0

    def on_url(self, url: bytes) -> None:
        if self._refused:
            return
        self._header_bytes += len(url)
        self._check_header_size(self._header_bytes)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._refused:
            return
        self._header_bytes += len(name) + len(value) + 4
        self._check_header_size(self._header_bytes)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._headers_done = True
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        if not self._refused:
            super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self._refused:
            return
        if not self.cycle.response_complete:  # once answered, uvicorn drops the rest
            if not self.budget.take(len(body)):
                limit = self.budget.limit
                self._refuse(Overloaded(f"the server holds its limit of {limit} body bytes"))
                return
            self._held += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        self._in_message = False
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        super().on_message_complete()
        if self.cycle.response_complete:
            self._release()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self._in_message:
            self._release()

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        # uvicorn starts each request here, pipelined ones when their turn comes; a raw
        # route answers from the same cycle, so every limit above applies to it unchanged.
        routes = self.raw_routes
        if routes is not None and app is self.app:  # not uvicorn's own 503 app
            answer = routes.handle(cycle)
            if answer is not None:
                task = self.loop.create_task(answer)
                task.add_done_callback(self.tasks.discard)
                self.tasks.add(task)
                return
        super()._start_asgi_task(cycle, app)

    # -- limits --------------------------------------------------------------------------

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            timeout = self.limits.header_timeout
            self._header_timer = self.loop.call_later(timeout, self._headers_late)

    def _check_header_size(self, size: int) -> None:
        limit = self.limits.max_header_bytes
        if size > limit and not self._refused:
            error = PayloadTooLarge(f"request line and headers exceed the limit of {limit} bytes")
            self._refuse(error, status=431)

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.keep_alive = False  # a pipelined request is late: close after this answer
        elif self._in_message:
            timeout = self.limits.header_timeout
            self._refuse(RequestTimeout(f"request headers not received within {timeout:g} s"))
        else:
            self.transport.close()  # nothing of a request was sent: nothing to answer

    def _body_late(self) -> None:
        self._body_timer = None
        cycle = self.cycle
        if self.transport.is_closing():
            return
        if cycle.response_complete:  # answered without the body: drop the connection
            self.transport.close()
        elif cycle.response_started:
            cycle.keep_alive = False
        else:
            timeout = self.limits.body_timeout
            self._refuse(RequestTimeout(f"request body not received within {timeout:g} s"))

    def _refuse(self, exc: SluiceError, status: int | None = None) -> None:
        """Answer ``exc`` in place of the application (with ``status`` in place of the error
        table's, where HTTP has a closer one), then linger and close."""
        self._refused = True
        for timer in (self._header_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._header_timer = self._body_timer = None
        self._release()
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            if cycle.response_started:  # too late to answer
                self.transport.close()
                return
            cycle.disconnected = True  # the application's sends go nowhere from now on
            cycle.message_event.set()
        table_status, body, headers = error_parts(exc)
        head = [STATUS_LINE[status or table_status]]
        headers += [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        head += [b"%s: %s\r\n" % (name, value) for name, value in headers]
        self.transport.write(b"".join([*head, b"\r\n", body]))
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.flow.resume_reading()
            self._linger_timer = self.loop.call_later(LINGER_SECS, self.transport.close)
        else:
            self.transport.close()

    def _release(self) -> None:
        if self._held:
            self.budget.release(self._held)
            self._held = 0
