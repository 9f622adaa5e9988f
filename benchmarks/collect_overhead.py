"""What data collection costs: the tiny MLP over HTTP at 32 connections, one server with
``--collect`` at sample rate 1.0 beside one without, in the same run (issue 11's target:
collection on >= 0.9x of off).

``python -m benchmarks.collect_overhead [--duration 10] [--repeats 3] [--connections 32]``
starts both servers (one process each), alternates them per repeat with the same one-row
JSON requests (closed loop, the suite's load generator), and prints each measurement, the
medians and their ratio; ``--out`` writes the JSON. The collecting server's Parquet rows
are counted after, to show every request was collected.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.closed_loop import run_closed_loop
from benchmarks.processes import ServerProcess, wait_http_ready
from serving.examples import write_repository
from serving.loadgen import LoadSpec, http_request, json_infer_body


def measure(port: int, connections: int, duration: float) -> dict[str, Any]:
    rows = np.random.default_rng(11).standard_normal((256, 64)).astype(np.float32)
    requests = []
    for row in rows:
        body, headers = json_infer_body({"INPUT0": row[np.newaxis]})
        requests.append(http_request("127.0.0.1", port, "/v2/models/mlp/infer", body, headers))
    spec = LoadSpec(connections=connections, duration=duration, warmup=1.0)
    result = run_closed_loop(port, requests, spec)
    return {"req_s": result.throughput, "errors": result.errors}


def _server(name: str, repo: Path, work: Path, *extra: str) -> tuple[ServerProcess, int]:
    cmd = [sys.executable, "-m", "serving", "serve", "--model-repository", str(repo),
           "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0", *extra]  # fmt: skip
    server = ServerProcess(name, cmd, work / f"{name}.log")
    port = server.wait_listening(["HTTP"], 60)["HTTP"][1]
    wait_http_ready(f"http://127.0.0.1:{port}/v2/health/ready", 60, server.proc)
    return server, port


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
        off, off_port = _server("off", work / "repo", work)
        on, on_port = _server("on", work / "repo", work, "--collect", str(dest),
                              "--collect-sample-rate", "1.0", "--collect-roll-secs", "5")  # fmt: skip
        try:
            for repeat in range(args.repeats):
                for name, port in (("off", off_port), ("on", on_port)):
                    figures = measure(port, args.connections, args.duration)
                    results.append({"collection": name, "repeat": repeat, **figures})
                    print(f"collection {name:3s} c{args.connections} {figures['req_s']:9.0f} req/s"
                          f"  errors {figures['errors']}", flush=True)  # fmt: skip
        finally:
            off.stop()
            on.stop()  # a clean stop rolls what is spooled into Parquet
        import pyarrow.dataset as ds

        rows = ds.dataset(dest, format="parquet", partitioning="hive").count_rows()
    median = {c: statistics.median(r["req_s"] for r in results if r["collection"] == c)
              for c in ("off", "on")}  # fmt: skip
    print(f"median off {median['off']:.0f} req/s, on {median['on']:.0f} req/s: "
          f"{median['on'] / median['off']:.2f}x; {rows} rows collected")  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps({"runs": results, "rows_collected": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
