"""The pieces every Sluice process runs on (serving.process)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from serving.process import bind, metrics_app, run_loop


class _Metrics:
    def render(self) -> bytes:
        return b"sluice_up 1\n"


def test_the_metrics_app_serves_prometheus_text() -> None:
    async def scrape() -> httpx.Response:
        transport = httpx.ASGITransport(app=metrics_app(_Metrics()))
        async with httpx.AsyncClient(transport=transport, base_url="http://sluice") as client:
            return await client.get("/metrics")

    response = run_loop(scrape())
    assert response.status_code == 200
    assert response.content == b"sluice_up 1\n"
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"


def test_a_port_in_use_says_which() -> None:
    taken = bind("127.0.0.1", 0)
    try:
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=rf"^cannot listen on 127\.0\.0\.1:{port}: "):
            bind("127.0.0.1", port)
    finally:
        taken.close()


def test_the_loop_runs_a_coroutine_to_its_result() -> None:
    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    assert run_loop(answer()) == 42
