"""The streaming downloader against a scripted HTTP peer (httpx.MockTransport)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from registry_client import AuthenticationError, HttpOptions, NetworkError, NotFound, RetryPolicy
from registry_client._download import fetch_http
from registry_client._throttle import Throttle

DATA = bytes(range(256)) * 64  # 16 KiB
URL = "http://registry.test/file"


class _Drop(httpx.ByteStream):
    """A body that ends with a transport error after ``cut`` bytes."""

    def __init__(self, data: bytes, cut: int) -> None:
        self._data, self._cut = data, cut

    async def __aiter__(self):  # type: ignore[override]
        yield self._data[: self._cut]
        raise httpx.ReadError("connection dropped")


def _server(
    script: list[Callable[[httpx.Request], httpx.Response]],
) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return script[min(len(seen), len(script)) - 1](request)

    return httpx.MockTransport(handle), seen


def _full(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=DATA, headers={"ETag": '"v1"'})


def _ranged(request: httpx.Request) -> httpx.Response:
    start = int(request.headers["range"].removeprefix("bytes=").rstrip("-"))
    return httpx.Response(206, content=DATA[start:], headers={
        "ETag": '"v1"', "Content-Range": f"bytes {start}-{len(DATA) - 1}/{len(DATA)}"})  # fmt: skip


def _dropped(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, stream=_Drop(DATA, 5000), headers={"ETag": '"v1"'})


def _fetch(transport: httpx.MockTransport, part: Path, **kw: object) -> str:
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async def run() -> str:
        async with httpx.AsyncClient(transport=transport) as client:
            return await fetch_http(
                client, URL, part, expected_size=len(DATA),
                options=HttpOptions(retry=RetryPolicy(max_attempts=3, base_delay=0.01)),
                throttle=Throttle(None), sleep=sleep, **kw,  # type: ignore[arg-type]
            )  # fmt: skip

    return asyncio.run(run())


def test_resumes_with_range_and_if_range(tmp_path: Path) -> None:
    transport, seen = _server([_dropped, _ranged])
    digest = _fetch(transport, tmp_path / "f.part")
    assert digest == "sha256:" + hashlib.sha256(DATA).hexdigest()
    assert seen[1].headers["range"] == "bytes=5000-"
    assert seen[1].headers["if-range"] == '"v1"'
    assert (tmp_path / "f.part").read_bytes() == DATA


def test_restarts_when_the_server_ignores_the_range(tmp_path: Path) -> None:
    transport, _seen = _server([_dropped, _full])
    events: list[str] = []
    digest = _fetch(transport, tmp_path / "f.part", progress=lambda kind, n: events.append(kind))
    assert digest == "sha256:" + hashlib.sha256(DATA).hexdigest()
    assert "restart" in events
    assert (tmp_path / "f.part").read_bytes() == DATA


def test_retries_5xx_and_429_then_succeeds(tmp_path: Path) -> None:
    transport, seen = _server([lambda r: httpx.Response(503), lambda r: httpx.Response(429), _full])
    _fetch(transport, tmp_path / "f.part")
    assert len(seen) == 3


def test_gives_up_after_the_retry_budget(tmp_path: Path) -> None:
    transport, seen = _server([lambda r: httpx.Response(502)])
    with pytest.raises(NetworkError, match="3 failed attempts"):
        _fetch(transport, tmp_path / "f.part")
    assert len(seen) == 3


@pytest.mark.parametrize(("status", "error"), [(401, AuthenticationError), (403, AuthenticationError), (404, NotFound)])  # fmt: skip
def test_fails_fast_on_client_errors(tmp_path: Path, status: int, error: type[Exception]) -> None:
    transport, seen = _server([lambda r: httpx.Response(status)])
    with pytest.raises(error):
        _fetch(transport, tmp_path / "f.part")
    assert len(seen) == 1


def test_a_new_process_resumes_from_the_part_file(tmp_path: Path) -> None:
    part = tmp_path / "f.part"
    transport, _ = _server(
        [lambda r: httpx.Response(200, stream=_Drop(DATA, 7000), headers={"ETag": '"v1"'})]
    )
    with pytest.raises(NetworkError):
        _fetch(transport, part)
    assert part.stat().st_size == 7000
    transport, seen = _server([_ranged])
    _fetch(transport, part)
    assert seen[0].headers["range"] == "bytes=7000-"
    assert part.read_bytes() == DATA


def test_throttle_paces_to_the_cap() -> None:
    now = [0.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    async def run() -> None:
        throttle = Throttle(1000.0, clock=lambda: now[0], sleep=sleep)
        for _ in range(4):
            await throttle.consume(500)

    asyncio.run(run())
    assert sum(slept) == pytest.approx(2.0)
