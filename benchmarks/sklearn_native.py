"""A scikit-learn pipeline served natively (``predict_proba`` in a Python server) against the
same pipeline converted by ``sluice convert`` and served by Sluice, in one run.

``python -m benchmarks.sklearn_native [--duration 10] [--concurrency 1,16]``: fits a
StandardScaler + GradientBoostingClassifier (100 trees, 20 features) on fixed-seed data,
converts it, starts both servers, and drives each with the same one-row JSON requests
(closed loop, the suite's load generator), alternating per load point. Prints a table
and writes the JSON next to the run (``--out``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.closed_loop import run_closed_loop
from benchmarks.processes import ServerProcess, free_port, wait_http_ready
from serving.loadgen import (
    LoadSpec,
    http_request,
    json_infer_body,
    summarize_values,
)

FEATURES = 20
SEED = 20261201


def build(workdir: Path) -> tuple[Path, Path, np.ndarray]:
    import joblib
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from serving.convert import convert_sklearn, write_version

    rng = np.random.default_rng(SEED)
    x = rng.standard_normal((2000, FEATURES))
    y = (x[:, 0] + x[:, 1] * x[:, 2] - x[:, 3] > 0).astype(int) + (x[:, 4] > 1)
    model = make_pipeline(StandardScaler(), GradientBoostingClassifier(n_estimators=100))
    model.fit(x, y)
    joblib.dump(model, workdir / "gbc.joblib")
    repo = workdir / "repo"
    repo.mkdir()
    write_version(repo / "gbc", convert_sklearn(model, x[:500]).onnx_bytes, max_batch_size=64)
    return workdir / "gbc.joblib", repo, x[:256].astype(np.float32)


def measure(port: int, rows: np.ndarray, connections: int, duration: float) -> dict[str, Any]:
    requests = []
    for row in rows:
        body, headers = json_infer_body({"X": row[np.newaxis]})
        requests.append(http_request("127.0.0.1", port, "/v2/models/gbc/infer", body, headers))
    spec = LoadSpec(connections=connections, duration=duration, warmup=1.0)
    result = run_closed_loop(port, requests, spec)
    summary, _ = summarize_values(result.latencies_us)
    return {"req_s": result.throughput, "p50_ms": summary.p50_ms, "p99_ms": summary.p99_ms,
            "errors": result.errors}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--concurrency", default="1,16")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",")]
    with tempfile.TemporaryDirectory(prefix="sluice-sklearn-") as tmp:
        work = Path(tmp)
        model_path, repo, rows = build(work)
        peer_port = free_port()
        peer = ServerProcess("sklearn", [sys.executable, "-m", "benchmarks.sklearn_peer",
                             str(model_path), str(peer_port)], work / "peer.log")  # fmt: skip
        sluice = ServerProcess("sluice", [sys.executable, "-m", "serving", "serve",
                               "--model-repository", str(repo), "--http-port", "0",
                               "--grpc-port", "0", "--metrics-port", "0"], work / "sluice.log")  # fmt: skip
        try:
            sluice_port = sluice.wait_listening(["HTTP"], 60)["HTTP"][1]
            wait_http_ready(f"http://127.0.0.1:{sluice_port}/v2/health/ready", 60, sluice.proc)
            wait_http_ready(f"http://127.0.0.1:{peer_port}/v2/health/ready", 60, peer.proc)
            results = []
            for connections in levels:
                for name, port in (("sklearn predict (starlette)", peer_port),
                                   ("sluice convert + sluice serve", sluice_port)):  # fmt: skip
                    figures = measure(port, rows, connections, args.duration)
                    results.append({"server": name, "connections": connections, **figures})
                    print(f"{name:32s} c{connections:<3d} {figures['req_s']:9.0f} req/s  "
                          f"p50 {figures['p50_ms']:7.2f} ms  p99 {figures['p99_ms']:7.2f} ms  "
                          f"errors {figures['errors']}", flush=True)  # fmt: skip
        finally:
            peer.stop()
            sluice.stop()
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
