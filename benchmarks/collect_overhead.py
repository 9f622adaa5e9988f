"""What data collection costs: the tiny MLP over HTTP at 32 connections, one server with
``--collect`` at sample rate 1.0 beside one without, in the same run (issue 11's target:
collection on >= 0.9x of off).

``python -m benchmarks.collect_overhead [--duration 10] [--repeats 3] [--connections 32]``
starts both servers (one process each), alternates them per repeat with the same one-row
JSON requests (closed loop, the suite's load generator), and prints each measurement, the
medians and their ratio; ``--out`` writes the JSON. The collecting server's Parquet rows
are counted after and set beside the requests it answered (its statistics) and the records
it dropped (its metrics), to show every request was collected.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.closed_loop import run_closed_loop
from benchmarks.processes import ServerProcess, wait_http_ready
from serving.examples import write_repository
from serving.loadgen import LoadSpec, http_request, json_infer_body


def measure(port: int, connections: int, duration: float, pid: int) -> dict[str, Any]:
    """Throughput, and the server's CPU time per answered request (user + system, all
    its threads: less sensitive than throughput to what else the machine runs)."""
    import psutil

    rows = np.random.default_rng(11).standard_normal((256, 64)).astype(np.float32)
    requests = []
    for row in rows:
        body, headers = json_infer_body({"INPUT0": row[np.newaxis]})
        requests.append(http_request("127.0.0.1", port, "/v2/models/mlp/infer", body, headers))
    spec = LoadSpec(connections=connections, duration=duration, warmup=1.0)
    tree = [psutil.Process(pid)]
    tree += tree[0].children(recursive=True)

    def cpu_seconds() -> float:
        return sum(sum(p.cpu_times()[:2]) for p in tree)

    answered, cpu = _answered(port), cpu_seconds()
    result = run_closed_loop(port, requests, spec)
    answered, cpu = _answered(port) - answered, cpu_seconds() - cpu
    return {"req_s": result.throughput, "errors": result.errors,
            "cpu_us_per_req": 1e6 * cpu / max(answered, 1)}  # fmt: skip


def _server(name: str, repo: Path, work: Path, *extra: str) -> tuple[ServerProcess, int, int]:
    cmd = [sys.executable, "-m", "serving", "serve", "--model-repository", str(repo),
           "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0", *extra]  # fmt: skip
    server = ServerProcess(name, cmd, work / f"{name}.log")
    found = server.wait_listening(["HTTP", "metrics"], 60)
    port = found["HTTP"][1]
    wait_http_ready(f"http://127.0.0.1:{port}/v2/health/ready", 60, server.proc)
    return server, port, found["metrics"][1]


def _answered(port: int) -> int:
    """Successful inferences of the example MLP, as the server's statistics count them."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/models/mlp/stats", timeout=10) as r:
        stats = json.load(r)
    return sum(int(m["inference_stats"]["success"]["count"]) for m in stats["model_stats"])


def _dropped(metrics_port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    found = re.findall(r'sluice_collect_dropped_total\{reason="(\w+)"\} (\S+)', text)
    return {reason: float(value) for reason, value in found if float(value)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="sluice-collect-") as tmp:
        work = Path(tmp)
        write_repository(work / "repo", ["mlp"])
        dest = work / "collected"
        off, off_port, _ = _server("off", work / "repo", work)
        on, on_port, on_metrics = _server("on", work / "repo", work, "--collect", str(dest),
                                          "--collect-sample-rate", "1.0", "--collect-roll-secs", "5")  # fmt: skip
        answered, dropped = 0, {}
        try:
            for repeat in range(args.repeats):
                for name, port, server in (("off", off_port, off), ("on", on_port, on)):
                    figures = measure(port, args.connections, args.duration, server.pid)
                    results.append({"collection": name, "repeat": repeat, **figures})
                    print(f"collection {name:3s} c{args.connections} {figures['req_s']:9.0f} req/s"
                          f"  server CPU {figures['cpu_us_per_req']:6.1f} us/request"
                          f"  errors {figures['errors']}", flush=True)  # fmt: skip
            answered, dropped = _answered(on_port), _dropped(on_metrics)
        finally:
            off.stop()
            on.stop()  # a clean stop rolls what is spooled into Parquet
        import pyarrow.dataset as ds

        rows = ds.dataset(dest, format="parquet", partitioning="hive").count_rows()

    def median(collection: str, key: str) -> float:
        return statistics.median(r[key] for r in results if r["collection"] == collection)

    off_rate, on_rate = median("off", "req_s"), median("on", "req_s")
    off_cpu, on_cpu = median("off", "cpu_us_per_req"), median("on", "cpu_us_per_req")
    print(f"median off {off_rate:.0f} req/s, on {on_rate:.0f} req/s: {on_rate / off_rate:.2f}x; "
          f"server CPU off {off_cpu:.1f}, on {on_cpu:.1f} us/request: {on_cpu / off_cpu:.2f}x; "
          f"{rows} rows collected of {answered} requests answered, dropped {dropped or 0}")  # fmt: skip
    if args.out:
        summary = {"runs": results, "rows_collected": rows, "answered": answered,
                   "dropped": dropped}  # fmt: skip
        args.out.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
