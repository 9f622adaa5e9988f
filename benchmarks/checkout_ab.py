"""Before/after a change: the tiny MLP served from two checkouts, in interleaved rounds.

    git worktree add /tmp/before REV && (cd /tmp/before && python setup.py build_ext --inplace)
    python -m benchmarks.checkout_ab /tmp/before . --rounds 6 --duration 8

Each round starts the server of each checkout in turn (the order alternates), drives it with the
same client (this checkout's serving.loadgen: HTTP JSON at 32 connections, then gRPC at 16 calls),
and stops it, so both trees see the same machine over the same minutes; the medians of the rounds
and their ratio are printed. Run it on a quiet machine: the client shares the cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from benchmarks.models import write_onnx_models, write_sluice_repository
from serving.loadgen import (
    GrpcSender,
    HttpSender,
    LoadSpec,
    drive,
    grpc_infer_request,
    http_request,
    json_infer_body,
    open_channel,
    summarize_values,
)

LISTEN = re.compile(r"(HTTP|gRPC|metrics) service listening on [^\s:]+:(\d+)")


def start(tree: str, repo: Path, log: Path) -> tuple[subprocess.Popen, int, int]:
    env = dict(os.environ, PYTHONPATH=tree)
    cmd = [
        sys.executable,
        "-m",
        "serving",
        "serve",
        "--model-repository",
        str(repo),
        "--http-port",
        "0",
        "--grpc-port",
        "0",
        "--metrics-port",
        "0",
        "--log-level",
        "info",
    ]
    out = log.open("wb")
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tree)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ports = dict(LISTEN.findall(log.read_text(errors="replace")))
        if "HTTP" in ports and "gRPC" in ports:
            http, grpc_port = int(ports["HTTP"]), int(ports["gRPC"])
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"http://127.0.0.1:{http}/v2/health/ready").status_code == 200:
                        return proc, http, grpc_port
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
        if proc.poll() is not None:
            raise RuntimeError(log.read_text())
        time.sleep(0.1)
    raise RuntimeError("not ready")


async def http_load(port: int, inputs: np.ndarray, duration: float) -> tuple[float, float]:
    body, headers = json_infer_body({"INPUT0": inputs})
    reqs = [http_request("127.0.0.1", port, "/v2/models/tiny_mlp/infer", body, headers)]
    senders = [await HttpSender("127.0.0.1", port, reqs).connect() for _ in range(32)]
    result = await drive(senders, LoadSpec(connections=32, duration=duration, warmup=1.0), 1)
    for s in senders:
        await s.close()
    p99 = summarize_values(result.latencies_us)[0].p99_ms if result.latencies_us else float("nan")
    return result.throughput, p99


async def grpc_load(port: int, inputs: np.ndarray, duration: float) -> tuple[float, float]:
    channel = open_channel(f"127.0.0.1:{port}")
    reqs = [grpc_infer_request("tiny_mlp", {"INPUT0": inputs}, ["OUTPUT0"])]
    senders = [GrpcSender(channel, reqs) for _ in range(16)]
    result = await drive(senders, LoadSpec(connections=16, duration=duration, warmup=1.0), 1)
    await channel.close()
    p99 = summarize_values(result.latencies_us)[0].p99_ms if result.latencies_us else float("nan")
    return result.throughput, p99


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.checkout_ab")
    parser.add_argument("before", help="checkout of the code before the change")
    parser.add_argument("after", help="checkout of the code after it")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per load")
    args = parser.parse_args()
    old, new = str(Path(args.before).resolve()), str(Path(args.after).resolve())
    rounds, duration = args.rounds, args.duration
    work = Path(tempfile.mkdtemp(prefix="ab-"))
    paths = write_onnx_models(work / "onnx", ["tiny"])
    repo = write_sluice_repository(work / "repo", paths, ["tiny_mlp"])
    inputs = np.random.default_rng(0).standard_normal((1, 64), dtype=np.float32)
    rows = []
    for r in range(rounds):
        for label, tree in (
            (("before", old), ("after", new)) if r % 2 == 0 else (("after", new), ("before", old))
        ):
            proc, http, grpc_port = start(tree, repo, work / f"{label}-{r}.log")
            try:
                h = asyncio.run(http_load(http, inputs, duration))
                g = asyncio.run(grpc_load(grpc_port, inputs, duration))
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)
            row = {
                "round": r,
                "tree": label,
                "http_rps": round(h[0]),
                "http_p99_ms": round(h[1], 2),
                "grpc_rps": round(g[0]),
                "grpc_p99_ms": round(g[1], 2),
                "load": os.getloadavg()[0],
            }
            print(json.dumps(row), flush=True)
            rows.append(row)
    for metric in ("http_rps", "grpc_rps"):
        b = [x[metric] for x in rows if x["tree"] == "before"]
        a = [x[metric] for x in rows if x["tree"] == "after"]
        print(
            f"{metric}: before median {np.median(b):.0f} {b}; after median {np.median(a):.0f} {a}; "
            f"ratio {np.median(a) / np.median(b):.3f}"
        )


if __name__ == "__main__":
    main()
