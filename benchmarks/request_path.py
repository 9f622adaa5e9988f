"""The request path's cost in one process, without sockets: decode a request, ``core.infer``,
encode the answer; prints microseconds per request (best of 5 runs of N).

    taskset -c 1 python -m benchmarks.request_path 5000
    taskset -c 1 python -m benchmarks.request_path 5000 --model tiny_mlp --front grpc

``--model mlp`` (the default) is serving.examples' MLP behind the dynamic batcher;
``tiny_mlp`` is the benchmarks' tiny MLP behind the direct scheduler, the model of the
``tiny_*`` scenarios. ``--front http`` decodes a JSON body and encodes a JSON answer through
the route's own ``infer_answer``; ``grpc`` decodes a ``ModelInferRequest`` and encodes a
``ModelInferResponse`` as the servicer does.

Run it from two checkouts (``PYTHONPATH=CHECKOUT``) to compare a change's cost on the hot path
with less noise than a load over sockets; under ``valgrind --tool=callgrind`` its instruction
counts do not depend on what else the machine runs.
"""

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from serving.core import InferenceCore
from serving.manager import ModelManager
from serving.metrics import Metrics
from serving.settings import Settings


def _repository(model: str) -> Path:
    work = Path(tempfile.mkdtemp())
    if model == "mlp":
        from serving.examples import write_repository

        write_repository(work / "repo", ["mlp"])
    else:
        from benchmarks.models import write_onnx_models, write_sluice_repository

        paths = write_onnx_models(work / "onnx", ["tiny"])
        write_sluice_repository(work / "repo", paths, [model])
    return work / "repo"


def _http_one(core: InferenceCore, model: str, shape: list[int]):  # type: ignore[no-untyped-def]
    from serving.http.infer_route import infer_answer

    body = json.dumps(
        {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": shape, "data": [0.5] * 64}]}
    ).encode()
    headers = {"content-type": "application/json", "content-length": str(len(body))}

    async def one() -> None:
        await infer_answer(core, model, "", headers, body)

    return one


def _grpc_one(core: InferenceCore, model: str, shape: list[int]):  # type: ignore[no-untyped-def]
    from serving.grpc import codec
    from serving.grpc import grpc_service_pb2 as pb
    from serving.loadgen import grpc_infer_request

    inputs = {"INPUT0": np.full(shape, 0.5, dtype=np.float32)}
    wire = grpc_infer_request(model, inputs, ["OUTPUT0"])

    async def one() -> None:
        request = codec.decode_infer_request(pb.ModelInferRequest.FromString(wire))
        response = await core.infer(request, None)
        codec.encode_infer_response(response, request).SerializeToString()

    return one


def run() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.request_path")
    parser.add_argument("n", nargs="?", type=int, default=5000, help="requests per run")
    parser.add_argument("--model", choices=("mlp", "tiny_mlp"), default="mlp")
    parser.add_argument("--front", choices=("http", "grpc"), default="http")
    parser.add_argument("--warmup", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    repo = _repository(args.model)
    settings = Settings(model_repository=repo)
    metrics = Metrics()
    manager = ModelManager(settings, metrics)
    core = InferenceCore(settings, manager, metrics)
    shape = [1, 64]
    one = (_http_one if args.front == "http" else _grpc_one)(core, args.model, shape)

    async def main() -> None:
        await core.start()
        for _ in range(args.warmup):
            await one()
        best = []
        for _ in range(args.runs):
            t = time.perf_counter_ns()
            for _ in range(args.n):
                await one()
            best.append((time.perf_counter_ns() - t) / args.n / 1000)
        await core.close()
        print(
            json.dumps(
                {
                    "model": args.model,
                    "front": args.front,
                    "us_per_request_min": round(min(best), 2),
                    "all": [round(b, 2) for b in best],
                }
            )
        )

    asyncio.run(main())


if __name__ == "__main__":
    run()
