"""What a Python model costs per request: a Python identity beside an ONNX identity of the
same shape (FP32 [16], no batching, one instance each), served by one server, over HTTP.

``python -m benchmarks.python_overhead [--duration 5] [--repeats 3] [--connections 1 16]``
starts one server (``--allow-python-models``), drives each model in turn with the same
one-row JSON requests (closed loop, the suite's load generator) at each connection count,
alternating the models per repeat, and prints each measurement, the medians, and the Python
model's extra latency per request (median mean latency, Python minus ONNX); ``--out`` writes
the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.closed_loop import run_closed_loop
from benchmarks.processes import ServerProcess, wait_http_ready
from serving.loadgen import LoadSpec, http_request, json_infer_body

WIDTH = 16
MODELS = ("onnx_identity", "python_identity")

_PYTHON_IDENTITY = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [
            pb_utils.InferenceResponse(
                [pb_utils.Tensor("OUTPUT0", pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy())]
            )
            for r in requests
        ]
"""

_CONFIG = """
name: "{name}"
{kind}
input [{{ name: "INPUT0" data_type: TYPE_FP32 dims: [ {width} ] }}]
output [{{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ {width} ] }}]
instance_group [{{ kind: KIND_CPU count: 1 }}]
"""


def _onnx_identity() -> bytes:
    from onnx import TensorProto, helper

    from serving.examples import IR_VERSION, OPSET

    graph = helper.make_graph(
        [helper.make_node("Identity", ["INPUT0"], ["OUTPUT0"])],
        "identity",
        [helper.make_tensor_value_info("INPUT0", TensorProto.FLOAT, [WIDTH])],
        [helper.make_tensor_value_info("OUTPUT0", TensorProto.FLOAT, [WIDTH])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    return model.SerializeToString()


def write_models(repo: Path) -> None:
    for name in MODELS:
        (repo / name / "1").mkdir(parents=True)
    (repo / "onnx_identity" / "1" / "model.onnx").write_bytes(_onnx_identity())
    (repo / "python_identity" / "1" / "model.py").write_text(_PYTHON_IDENTITY)
    (repo / "onnx_identity" / "config.pbtxt").write_text(
        _CONFIG.format(name="onnx_identity", kind='platform: "onnxruntime_onnx"', width=WIDTH)
    )
    (repo / "python_identity" / "config.pbtxt").write_text(
        _CONFIG.format(name="python_identity", kind='backend: "python"', width=WIDTH)
    )


def measure(port: int, model: str, connections: int, duration: float) -> dict[str, Any]:
    rows = np.random.default_rng(5).standard_normal((64, WIDTH)).astype(np.float32)
    requests = []
    for row in rows:
        body, headers = json_infer_body({"INPUT0": row})
        requests.append(http_request("127.0.0.1", port, f"/v2/models/{model}/infer", body, headers))
    spec = LoadSpec(connections=connections, duration=duration, warmup=1.0)
    result = run_closed_loop(port, requests, spec)
    latencies = np.asarray(result.latencies_us, dtype=np.float64)
    return {
        "req_s": result.throughput,
        "mean_us": float(latencies.mean()) if latencies.size else 0.0,
        "p50_us": float(np.percentile(latencies, 50)) if latencies.size else 0.0,
        "errors": result.errors,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    results: list[dict[str, Any]] = []
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    with tempfile.TemporaryDirectory(prefix="sluice-python-overhead-") as tmp:
        work = Path(tmp)
        write_models(work / "repo")
        cmd = [sys.executable, "-m", "serving", "serve", "--model-repository", str(work / "repo"),
               "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0",
               "--allow-python-models"]  # fmt: skip
        server = ServerProcess("server", cmd, work / "server.log")
        try:
            port = server.wait_listening(["HTTP"], 60)["HTTP"][1]
            for model in MODELS:
                wait_http_ready(f"http://127.0.0.1:{port}/v2/models/{model}/ready", 60, server.proc)
            for connections in args.connections:
                for repeat in range(args.repeats):
                    for model in MODELS if repeat % 2 == 0 else MODELS[::-1]:
                        figures = measure(port, model, connections, args.duration)
                        results.append({"model": model, "connections": connections,
                                        "repeat": repeat, **figures})  # fmt: skip
                        print(f"{model:16s} c{connections:<3d} {figures['req_s']:8.0f} req/s  "
                              f"mean {figures['mean_us']:8.0f} us  p50 {figures['p50_us']:8.0f} us"
                              f"  errors {figures['errors']}", flush=True)  # fmt: skip
        finally:
            server.stop()
    load = os.getloadavg()
    print(f"load average after: {' '.join(f'{x:.2f}' for x in load)}")
    summary = []
    for connections in args.connections:
        median = {
            m: {k: statistics.median(r[k] for r in results
                                     if r["model"] == m and r["connections"] == connections)
                for k in ("req_s", "mean_us", "p50_us")}
            for m in MODELS
        }  # fmt: skip
        extra = median["python_identity"]["mean_us"] - median["onnx_identity"]["mean_us"]
        # the server's time per request at this load: 1 / throughput
        served = 1e6 / median["python_identity"]["req_s"] - 1e6 / median["onnx_identity"]["req_s"]
        summary.append({"connections": connections, "median": median, "extra_mean_us": extra,
                        "extra_per_request_us": served})  # fmt: skip
        print(f"c{connections}: onnx {median['onnx_identity']['req_s']:.0f} req/s "
              f"(mean {median['onnx_identity']['mean_us']:.0f} us), python "
              f"{median['python_identity']['req_s']:.0f} req/s "
              f"(mean {median['python_identity']['mean_us']:.0f} us): python costs "
              f"{extra:+.0f} us of latency, {served:+.0f} us of server time per request")  # fmt: skip
    if args.out:
        args.out.write_text(
            json.dumps({"runs": results, "summary": summary, "load_average": load}, indent=2) + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
