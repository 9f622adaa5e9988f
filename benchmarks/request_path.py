"""The request path's cost in one process, without sockets: decode a JSON body, ``core.infer``
on the example MLP, encode the answer; prints microseconds per request (best of 5 runs of N).

    taskset -c 1 python -m benchmarks.request_path 5000

Run it from two checkouts (``PYTHONPATH=CHECKOUT``) to compare a change's cost on the hot path
with less noise than a load over sockets.
"""

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

from serving.core import InferenceCore
from serving.examples import write_repository
from serving.http import request_codec, response_codec
from serving.manager import ModelManager
from serving.metrics import Metrics
from serving.settings import Settings


def run() -> None:
    N = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    repo = Path(tempfile.mkdtemp()) / "repo"
    write_repository(repo, ["mlp"])
    settings = Settings(model_repository=repo)
    metrics = Metrics()
    manager = ModelManager(settings, metrics)
    core = InferenceCore(settings, manager, metrics)
    body = json.dumps(
        {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 64], "data": [0.5] * 64}]}
    ).encode()

    async def main():
        await core.start()

        async def one():
            req = request_codec.decode_infer_request(
                body,
                model_name="mlp",
                model_version="",
                content_type="application/json",
                header_length=None,
            )
            resp = await core.infer(req)
            return response_codec.encode_infer_response(resp, req, accept=None)

        for _ in range(2000):
            await one()
        best = []
        for _ in range(5):
            t = time.perf_counter_ns()
            for _ in range(N):
                await one()
            best.append((time.perf_counter_ns() - t) / N / 1000)
        await core.close()
        print(
            json.dumps(
                {"us_per_request_min": round(min(best), 2), "all": [round(b, 2) for b in best]}
            )
        )

    asyncio.run(main())


if __name__ == "__main__":
    run()
