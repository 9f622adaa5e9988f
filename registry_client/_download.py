"""Streaming one file into a staging ``.part`` file, hashing as it goes.

Over HTTP a dropped connection resumes with ``Range`` + ``If-Range`` (the validator
of the first response is kept beside the part file, so a new process can resume
too); a server that ignores the range (answers 200) or whose file changed restarts
the file from byte 0. A local file resumes the same way, its path, size and
modification time standing in for the validator. Transient failures (connection errors, stalls, 5xx, 429) are
retried with exponential backoff and jitter; 401/403/404 fail at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from registry_client._errors import (
    AuthenticationError,
    NetworkError,
    NotFound,
    RegistryError,
)
from registry_client._options import HttpOptions
from registry_client._throttle import Throttle

__all__ = ["Progress", "fetch_http", "fetch_local", "hash_file"]

Progress = Callable[[str, int], None]  # (event, bytes): "bytes", "restart", "retry"
Sleep = Callable[[float], Awaitable[None]]

_TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


def hash_file(path: Path, chunk_size: int = 1 << 20) -> tuple[Any, int]:
    """The running sha256 of an existing (partial) file and its length."""
    hasher = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(chunk_size):
            hasher.update(chunk)
            size += len(chunk)
    return hasher, size


class _Transient(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _validator_path(part: Path) -> Path:
    return part.with_name(part.name + ".validator")


def _load_validator(part: Path, url: str) -> str | None:
    try:
        data = json.loads(_validator_path(part).read_text())
    except (OSError, ValueError):
        return None
    return data.get("validator") if data.get("url") == url else None


def _save_validator(part: Path, url: str, validator: str | None) -> None:
    path = _validator_path(part)
    if validator is None:
        path.unlink(missing_ok=True)
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"url": url, "validator": validator}))
    os.replace(tmp, path)


def _retry_after(headers: Any) -> float | None:
    value = headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _content_range_start(value: str | None) -> int | None:
    # "bytes START-END/TOTAL"
    if not value or not value.startswith("bytes "):
        return None
    try:
        return int(value[6:].split("-", 1)[0])
    except ValueError:
        return None


class _PartFile:
    """The part file, its running hash and its length, kept in step."""

    def __init__(self, path: Path, resume: bool) -> None:
        self.path = path
        if resume and path.exists():
            self.hasher, self.size = hash_file(path)
        else:
            self.hasher, self.size = hashlib.sha256(), 0
            path.write_bytes(b"")
        self._file = path.open("r+b")
        self._file.seek(self.size)

    def restart(self) -> None:
        self._file.seek(0)
        self._file.truncate()
        self.hasher, self.size = hashlib.sha256(), 0

    def write(self, chunk: bytes) -> None:
        self._file.write(chunk)
        self.hasher.update(chunk)
        self.size += len(chunk)

    def finish(self) -> str:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        return "sha256:" + self.hasher.hexdigest()

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            self._file.close()


async def fetch_http(
    client: Any,
    url: str,
    part: Path,
    *,
    expected_size: int | None,
    options: HttpOptions,
    throttle: Throttle,
    progress: Progress | None = None,
    sleep: Sleep = asyncio.sleep,
    rng: random.Random | None = None,
) -> str:
    """Download ``url`` into ``part`` (resuming what is there); return ``sha256:<hex>``."""
    import httpx

    validator = _load_validator(part, url)
    pf = _PartFile(part, resume=validator is not None)
    if expected_size is not None and pf.size > expected_size:
        pf.restart()
    failures = 0
    try:
        while True:
            if expected_size is not None and pf.size == expected_size and pf.size > 0:
                return pf.finish()
            before = pf.size
            try:
                done = await _attempt(client, url, pf, validator, part, options, throttle, progress)
                if done is not None:
                    validator = done
                    if expected_size is None or pf.size == expected_size:
                        return pf.finish()
                    if pf.size > expected_size:
                        raise _Transient(f"server sent {pf.size} bytes, {expected_size} expected")
                    raise _Transient(f"body ended at {pf.size} of {expected_size} bytes")
            except _Restart:
                validator = None
                continue
            except (_Transient, httpx.TransportError) as exc:
                failures = 0 if pf.size > before else failures + 1
                if failures >= options.retry.max_attempts:
                    raise NetworkError(
                        f"{url}: giving up after {failures} failed attempts in a row: "
                        f"{_describe(exc)}"
                    ) from None
                delay = options.retry.delay(max(failures, 1), rng)
                if isinstance(exc, _Transient) and exc.retry_after is not None:
                    delay = min(max(delay, exc.retry_after), options.retry.max_delay)
                if progress:
                    progress("retry", pf.size)
                await sleep(delay)
                validator = _load_validator(part, url)
                if validator is None and pf.size:
                    pf.restart()
    finally:
        pf.close()


class _Restart(Exception):
    pass


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if not isinstance(exc, _Transient) else text


async def _attempt(
    client: Any,
    url: str,
    pf: _PartFile,
    validator: str | None,
    part: Path,
    options: HttpOptions,
    throttle: Throttle,
    progress: Progress | None,
) -> str | None:
    """One request; returns the validator when the body was read to its end."""
    headers = {"Accept-Encoding": "identity"}
    if pf.size > 0 and validator is not None:
        headers["Range"] = f"bytes={pf.size}-"
        headers["If-Range"] = validator
    elif pf.size > 0:
        pf.restart()
    async with client.stream("GET", url, headers=headers) as response:
        status = response.status_code
        if status in (401, 403):
            raise AuthenticationError(f"{url}: the registry answered {status} (check credentials)")
        if status == 404:
            raise NotFound(f"{url}: the registry answered 404")
        if status in _TRANSIENT_STATUS or status >= 500:
            raise _Transient(f"HTTP {status}", _retry_after(response.headers))
        if status == 416:
            pf.restart()
            _save_validator(part, url, None)
            raise _Restart()
        if status not in (200, 206):
            raise RegistryError(f"{url}: unexpected HTTP {status}")
        if status == 200 and pf.size > 0:
            pf.restart()  # the server ignored the range (or the file changed): start over
            if progress:
                progress("restart", 0)
        if status == 206 and _content_range_start(response.headers.get("content-range")) != pf.size:
            pf.restart()
            _save_validator(part, url, None)
            raise _Restart()
        new_validator = response.headers.get("etag") or response.headers.get("last-modified")
        if new_validator and new_validator.startswith("W/"):
            new_validator = None  # weak validators may not be used with If-Range
        if status == 200:
            _save_validator(part, url, new_validator)
        async for chunk in response.aiter_bytes():
            pf.write(chunk)
            if progress:
                progress("bytes", pf.size)
            await throttle.consume(len(chunk))
        return new_validator or validator or ""


async def fetch_local(
    source: Path,
    part: Path,
    *,
    options: HttpOptions,
    throttle: Throttle,
    progress: Progress | None = None,
) -> str:
    """Copy a local file (a registry blob) into ``part``, hashing it; return ``sha256:<hex>``.

    A part left by an interrupted copy of the same file resumes where it ends: the
    source's path, size and modification time are kept beside the part (as an HTTP
    validator is), so a part of anything else starts over.
    """
    try:
        stat = source.stat()
    except FileNotFoundError:
        raise NotFound(f"registry file {source} is missing") from None
    url = source.resolve().as_uri()
    validator = f"{stat.st_size}:{stat.st_mtime_ns}"
    resume = _load_validator(part, url) == validator
    pf = _PartFile(part, resume=resume)
    try:
        if pf.size > stat.st_size:
            pf.restart()
        if not resume:
            _save_validator(part, url, validator)
        with source.open("rb") as f:
            f.seek(pf.size)
            while chunk := await asyncio.to_thread(f.read, options.chunk_size):
                pf.write(chunk)
                if progress:
                    progress("bytes", pf.size)
                await throttle.consume(len(chunk))
        return pf.finish()
    except FileNotFoundError:
        raise NotFound(f"registry file {source} is missing") from None
    finally:
        pf.close()
