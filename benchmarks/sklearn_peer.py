"""The baseline `sluice convert` is measured against: a scikit-learn pipeline served by its
own ``predict_proba`` in a Python server (starlette on uvicorn, one process), answering the
same Open Inference Protocol JSON requests Sluice gets.

Run by ``benchmarks.sklearn_native``: ``python -m benchmarks.sklearn_peer MODEL.joblib PORT``.
"""

from __future__ import annotations

import sys

import numpy as np


def app(model_path: str):  # type: ignore[no-untyped-def]
    import joblib
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    model = joblib.load(model_path)

    async def infer(request: Request) -> JSONResponse:
        doc = await request.json()
        tensor = doc["inputs"][0]
        rows = np.asarray(tensor["data"], dtype=np.float64).reshape(tensor["shape"])
        proba = model.predict_proba(rows)
        labels = model.classes_[proba.argmax(axis=1)]
        return JSONResponse(
            {
                "model_name": "gbc",
                "outputs": [
                    {"name": "label", "datatype": "INT64", "shape": [len(rows)],
                     "data": labels.tolist()},
                    {"name": "probabilities", "datatype": "FP32", "shape": list(proba.shape),
                     "data": proba.ravel().tolist()},
                ],
            }
        )  # fmt: skip

    async def ready(_request: Request) -> JSONResponse:
        return JSONResponse({})

    return Starlette(routes=[Route("/v2/models/gbc/infer", infer, methods=["POST"]),
                             Route("/v2/health/ready", ready)])  # fmt: skip


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app(sys.argv[1]), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
