"""h2load (nghttp2's HTTP/2 load generator, C) as a gRPC load generator, when it is installed.

A gRPC unary call is an HTTP/2 POST of one length-prefixed message with
``content-type: application/grpc``; h2load sends that body on every stream, so it drives
``ModelInfer`` with no Python on the client side (Debian/Ubuntu: ``nghttp2-client``).
Python's grpc.aio client tops out near the server's own speed on a 2-core machine, so its
figures say as much about the client as about the server; h2load's do not.

Latencies come from h2load's per-request log (``--log-file``: start time, HTTP status,
microseconds to the end of the response), recorded into the same HDR histograms as the
other clients. A gRPC error still answers HTTP 200 (the status is in the trailers), which
h2load cannot see; the runner sends one request through a real gRPC client first and the
server's own statistics count failures.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from array import array
from dataclasses import dataclass
from pathlib import Path

from serving.loadgen import GRPC_INFER_METHOD

__all__ = ["H2loadResult", "available", "grpc_body", "parse_log", "run_h2load"]


def available() -> str | None:
    return shutil.which("h2load")


def grpc_body(message: bytes) -> bytes:
    """One uncompressed gRPC message frame: flag byte, big-endian length, message."""
    return b"\x00" + struct.pack(">I", len(message)) + message


@dataclass(slots=True)
class H2loadResult:
    latencies_us: array  # one per measured request with a 2xx status
    errors: int  # non-2xx answers plus requests h2load counts failed or errored
    duration_s: float
    raw: str

    @property
    def throughput(self) -> float:
        return len(self.latencies_us) / self.duration_s if self.duration_s > 0 else 0.0


def parse_log(text: str) -> tuple[array, int]:
    """``(latencies in microseconds of 2xx answers, count of other answers)`` from a
    ``--log-file``."""
    latencies, bad = array("q"), 0
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) < 3:
            continue
        status, micros = int(parts[1]), int(parts[2])
        if 200 <= status < 300:
            latencies.append(micros)
        else:
            bad += 1
    return latencies, bad


def run_h2load(
    target: str,
    body_file: Path,
    log_file: Path,
    *,
    connections: int,
    streams: int,
    duration: float,
    warmup: float,
) -> H2loadResult:
    """Drive ``target`` (host:port) for ``duration`` s after ``warmup`` s with ``connections``
    HTTP/2 connections of ``streams`` concurrent calls each."""
    exe = available()
    if exe is None:
        raise RuntimeError("h2load is not installed")
    cmd = [
        exe, f"--duration={round(duration * 1000)}ms",
        f"--warm-up-time={max(100, round(warmup * 1000))}ms",
        f"--clients={connections}", f"--max-concurrent-streams={streams}", "--threads=1",
        f"--data={body_file}", "--header=content-type: application/grpc",
        "--header=te: trailers", f"--log-file={log_file}",
        f"http://{target}{GRPC_INFER_METHOD}",
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + warmup + 60)
    if done.returncode != 0:
        raise RuntimeError(f"h2load exited {done.returncode}: {done.stderr.strip()[-300:]}")
    latencies, bad = parse_log(log_file.read_text())
    summary = re.search(r"requests: (\d+) total, .*?(\d+) succeeded", done.stdout)
    errors = int(summary.group(1)) - int(summary.group(2)) if summary else bad
    return H2loadResult(latencies, max(errors, bad), duration, done.stdout)
