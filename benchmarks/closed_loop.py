"""A closed-loop HTTP load on one local server: the run the single-question benchmarks share."""

from __future__ import annotations

import asyncio

from serving.loadgen import HttpSender, LoadResult, LoadSpec, drive

__all__ = ["run_closed_loop"]


async def _run(port: int, requests: list[bytes], spec: LoadSpec) -> LoadResult:
    senders = [await HttpSender("127.0.0.1", port, requests).connect()
               for _ in range(spec.connections)]  # fmt: skip
    try:
        return await drive(senders, spec, len(requests))  # type: ignore[arg-type]
    finally:
        for sender in senders:
            await sender.close()


def run_closed_loop(port: int, requests: list[bytes], spec: LoadSpec) -> LoadResult:
    """Drive ``spec`` over ``spec.connections`` keep-alive connections to 127.0.0.1:``port``,
    each sending the pre-encoded ``requests`` in turn."""
    return asyncio.run(_run(port, requests, spec))
