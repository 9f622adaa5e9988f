"""The fixed-answer HTTP ceiling answers every request, pipelined or not, with its bytes."""

from __future__ import annotations

import asyncio

from benchmarks.http_ceiling import FixedAnswer, http_answer


def test_pipelined_and_split_requests_each_get_the_fixed_answer() -> None:
    body = b'{"outputs":[]}'
    answer = http_answer(body)

    async def exchange() -> bytes:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: FixedAnswer(answer), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        request = b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
        writer.write(request * 2 + request[:10])  # two pipelined, a third split
        await writer.drain()
        writer.write(request[10:])
        got = await reader.readexactly(3 * len(answer))
        writer.close()
        server.close()
        return got

    assert asyncio.run(exchange()) == answer * 3
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"\r\n\r\n" + body)
    assert f"content-length: {len(body)}".encode() in answer
