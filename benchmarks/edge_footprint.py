"""Edge agent footprint on the tiny MLP: RSS beyond ONNX Runtime's own, offline start to
serving, and publish to the new version serving (docs/edge.md, benchmarks/RESULTS.md).

    python -m benchmarks.edge_footprint [--repeats 3]

Runs from a checkout: it starts a real mosquitto (the edge tests' helper) and real
``python -m edge_agent run`` processes on a local registry in a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from edge_agent._fleet import publish_desired
from registry_client import LocalRegistry
from serving.examples import build_mlp
from tests.integration.edge.agent_process import AgentProcess, write_config
from tests.integration.edge.broker import Mosquitto

_ORT_ALONE = """
import sys, numpy as np, onnxruntime as ort
so = ort.SessionOptions(); so.intra_op_num_threads = 1
s = ort.InferenceSession(sys.argv[1], so, providers=["CPUExecutionProvider"])
s.run(None, {s.get_inputs()[0].name: np.zeros((1, 64), np.float32)})
print(int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) * 1024)
"""


def rss(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(text.split("VmRSS:")[1].split()[0]) * 1024


def infer(port: int) -> str | None:
    body = {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 64], "data": [0.1] * 64}]}  # fmt: skip
    try:
        r = httpx.post(f"http://127.0.0.1:{port}/v2/models/mlp/infer", json=body, timeout=5)
    except httpx.HTTPError:
        return None
    return r.json()["model_version"] if r.status_code == 200 else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = root / "model.onnx"
        model.write_bytes(build_mlp())
        registry = LocalRegistry(root / "registry")
        registry.register("mlp", [model])
        registry.register("mlp", [model])
        broker = Mosquitto(root / "broker")
        broker.start()
        config = write_config(root / "edge.toml", {
            "device_id": "bench", "state_dir": root / "state",
            "registry": f"file://{registry.root}", "mqtt.url": broker.url,
            "serve.http_port": 0, "serve.grpc_port": 0, "serve.metrics_port": 0,
            "serve.cores": 1, "health.window_secs": 0.2,
        })  # fmt: skip
        doc = root / "desired.json"
        publish_times, start_times, rss_agent = [], [], []
        agent = AgentProcess(config, root)
        try:
            for i in range(args.repeats):
                version = 1 + i % 2
                doc.write_text(json.dumps({"version": i + 1, "models": {"mlp": {"ref": f"models:/mlp/{version}"}}}))  # fmt: skip
                t0 = time.perf_counter()
                publish_desired(broker.url, ["bench"], doc.read_bytes())
                while infer(agent.http_port) != str(version):
                    time.sleep(0.005)
                publish_times.append(time.perf_counter() - t0)
            time.sleep(1.0)  # let the canary window close and the commit land
            rss_agent.append(rss(agent.proc.pid))
            agent.stop()
            broker.stop()  # offline from here on
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                agent = AgentProcess(config, root)
                while infer(agent.http_port) is None:
                    time.sleep(0.005)
                start_times.append(time.perf_counter() - t0)
                rss_agent.append(rss(agent.proc.pid))
                agent.stop()
        finally:
            agent.stop()
            broker.stop()
        ort_alone = int(subprocess.run([sys.executable, "-c", _ORT_ALONE, str(model)], capture_output=True, text=True, check=True).stdout)  # fmt: skip
    mb = 1024 * 1024
    agent_rss = statistics.median(rss_agent)
    print("| measure | median | runs |")
    print("|---|---|---|")
    print(f"| agent RSS, tiny MLP loaded | {agent_rss / mb:.1f} MB | {len(rss_agent)} |")
    print(f"| ONNX Runtime alone, same model loaded | {ort_alone / mb:.1f} MB | 1 |")
    print(f"| agent RSS beyond ONNX Runtime's own | {(agent_rss - ort_alone) / mb:.1f} MB | - |")
    print(f"| offline start to serving (process start to first answer, broker down) | {statistics.median(start_times):.2f} s | {len(start_times)} |")  # fmt: skip
    print(f"| publish to the new version serving | {statistics.median(publish_times):.2f} s | {len(publish_times)} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
