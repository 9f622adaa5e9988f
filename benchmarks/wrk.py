"""wrk (closed-loop, C) as a second HTTP load generator, when it is installed.

A generated Lua script sets the POST body from a file and, when wrk finishes, prints the
percentiles the reports use on ``SLUICE_WRK_*`` lines; the standard ``--latency`` output
is parsed as a fallback.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["WrkResult", "available", "parse_wrk_output", "run_wrk", "write_script"]

_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}

_LUA = """\
wrk.method = "POST"
local f = assert(io.open([==[{body}]==], "rb"))
wrk.body = f:read("*a")
f:close()
{headers}
done = function(summary, latency, requests)
  io.write(string.format("SLUICE_WRK_SUMMARY requests=%d duration_us=%d status=%d connect=%d read=%d write=%d timeout=%d\\n",
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.timeout))
  for _, p in ipairs({{50, 90, 99, 99.9}}) do
    io.write(string.format("SLUICE_WRK_PERCENTILE %g %d\\n", p, latency:percentile(p)))
  end
  io.write(string.format("SLUICE_WRK_LATENCY mean=%f max=%d\\n", latency.mean, latency.max))
end
"""


def available() -> str | None:
    return shutil.which("wrk")


def write_script(path: Path, body_file: Path, headers: dict[str, str]) -> Path:
    lines = "\n".join(
        f"wrk.headers[ [==[{k}]==] ] = [==[{v}]==]"
        for k, v in headers.items()
        if k.lower() != "content-length"
    )
    path.write_text(_LUA.format(body=body_file, headers=lines))
    return path


@dataclass(frozen=True, slots=True)
class WrkResult:
    requests: int
    duration_s: float
    errors: int  # non-2xx/3xx answers plus socket errors
    throughput: float  # successful requests per second
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float | None  # only from the Lua summary
    mean_ms: float
    max_ms: float


def _ms(value: str, unit: str) -> float:
    return float(value) * _UNITS_MS[unit]


def parse_wrk_output(text: str) -> WrkResult:
    """Parse wrk's output: the ``SLUICE_WRK_*`` lines when present, else the standard text."""
    summary = re.search(r"SLUICE_WRK_SUMMARY (.*)", text)
    if summary:
        fields = dict(kv.split("=") for kv in summary.group(1).split())
        requests = int(fields["requests"])
        duration = int(fields["duration_us"]) / 1e6
        errors = sum(int(fields[k]) for k in ("status", "connect", "read", "write", "timeout"))
        pct = {
            float(p): int(us) / 1000.0
            for p, us in re.findall(r"SLUICE_WRK_PERCENTILE (\S+) (\d+)", text)
        }
        lat = re.search(r"SLUICE_WRK_LATENCY mean=(\S+) max=(\d+)", text)
        mean = float(lat.group(1)) / 1000.0 if lat else 0.0
        peak = int(lat.group(2)) / 1000.0 if lat else 0.0
        return WrkResult(
            requests=requests,
            duration_s=duration,
            errors=errors,
            throughput=max(0, requests - errors) / duration if duration else 0.0,
            p50_ms=pct[50.0],
            p90_ms=pct[90.0],
            p99_ms=pct[99.0],
            p999_ms=pct.get(99.9),
            mean_ms=mean,
            max_ms=peak,
        )
    return _parse_standard(text)


def _parse_standard(text: str) -> WrkResult:
    done = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m|h)", text)
    if not done:
        raise ValueError("no wrk summary found in output")
    requests = int(done.group(1))
    duration = _ms(done.group(2), done.group(3)) / 1000.0
    pct = {
        float(p): _ms(v, u)
        for p, v, u in re.findall(r"^\s+([\d.]+)%\s+([\d.]+)(us|ms|s|m|h)\s*$", text, re.M)
    }
    stats = re.search(r"Latency\s+([\d.]+)(us|ms|s|m|h)\s+\S+\s+([\d.]+)(us|ms|s|m|h)", text)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    errors = int(non2xx.group(1)) if non2xx else 0
    if sockets:
        errors += sum(int(g) for g in sockets.groups())
    return WrkResult(
        requests=requests,
        duration_s=duration,
        errors=errors,
        throughput=max(0, requests - errors) / duration if duration else 0.0,
        p50_ms=pct.get(50.0, 0.0),
        p90_ms=pct.get(90.0, 0.0),
        p99_ms=pct.get(99.0, 0.0),
        p999_ms=None,
        mean_ms=_ms(stats.group(1), stats.group(2)) if stats else 0.0,
        max_ms=_ms(stats.group(3), stats.group(4)) if stats else 0.0,
    )


def run_wrk(
    url: str, script: Path, connections: int, duration: float, threads: int = 2
) -> tuple[WrkResult, str]:
    """Run wrk for ``duration`` seconds; returns the parsed result and the raw output."""
    exe = available()
    if exe is None:
        raise RuntimeError("wrk is not installed")
    threads = max(1, min(threads, connections))
    cmd = [
        exe, "--latency", "-t", str(threads), "-c", str(connections),
        "-d", f"{max(1, round(duration))}s", "--timeout", "30s", "-s", str(script), url,
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    # wrk goes on without a script it could not load, and still exits 0
    if proc.returncode != 0 or "SLUICE_WRK_SUMMARY" not in proc.stdout:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr.strip()[:500]}")
    return parse_wrk_output(proc.stdout), proc.stdout
