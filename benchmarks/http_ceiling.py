"""The fixed-answer HTTP ceiling: a bare uvloop protocol that answers every request with one
fixed response.

It parses HTTP/1.1 with httptools (as Sluice's HTTP front end does), keeps connections alive,
answers pipelined requests in order, and runs no model, decodes no body and builds no
answer: whatever a Python HTTP server can do per request on this machine, this does no
less, so Sluice's HTTP front end is held to it (as ``benchmarks.ceiling`` holds its gRPC one).

``python -m benchmarks.http_ceiling --response FILE [--port 0]`` logs
``HTTP service listening on HOST:PORT`` once it serves. Any path answers the file's bytes
as ``application/json`` with status 200.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

__all__ = ["FixedAnswer", "main", "serve"]


class FixedAnswer(asyncio.Protocol):
    """One connection: each complete request is answered with the same bytes."""

    def __init__(self, answer: bytes) -> None:
        import httptools

        self._answer = answer
        self._parser = httptools.HttpRequestParser(self)
        self._transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        import httptools

        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self._transport.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            self._transport.close()

    def on_message_complete(self) -> None:
        self._transport.write(self._answer)
        if not self._parser.should_keep_alive():
            self._transport.close()


def http_answer(body: bytes) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


async def serve(body: bytes, host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    answer = http_answer(body)
    server = await loop.create_server(lambda: FixedAnswer(answer), host, port, backlog=2048)
    bound = server.sockets[0].getsockname()[1]
    print(f"HTTP service listening on {host}:{bound}", flush=True)
    await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.http_ceiling")
    parser.add_argument("--response", type=Path, required=True, help="the JSON body to answer")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    from serving.process import run_loop  # uvloop, as the server runs

    try:
        run_loop(serve(args.response.read_bytes(), args.host, args.port))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
