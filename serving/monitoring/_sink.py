"""An optional sink that POSTs each collected record as CloudEvents, as KServe's
inference logger does: one ``org.kubeflow.serving.inference.request`` and one
``...response`` event per request, in binary mode (``ce-specversion``, ``ce-type``,
``ce-source``, ``ce-id`` = the request id), the body the Open Inference Protocol
JSON of the collected tensors (after the model's allow/deny lists and hashing)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from serving.monitoring._config import CollectConfig
from serving.monitoring._record import CollectRecord, element_hash

__all__ = ["CloudEventsSink"]

_DATATYPE = {"b": "BOOL", "i": "INT", "u": "UINT", "f": "FP"}


def _tensor(name: str, arr: np.ndarray, hashed: bool) -> dict[str, Any]:
    if hashed:
        rows = arr.shape[0] if arr.ndim else 1
        digests = [element_hash(arr[i]) for i in range(rows)]
        return {"name": name, "datatype": "BYTES", "shape": [rows], "data": digests}
    if arr.dtype == object:
        data = [x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x)
                for x in arr.ravel()]  # fmt: skip
        datatype = "BYTES"
    else:
        data = arr.ravel().tolist()
        kind = arr.dtype.kind
        datatype = "BOOL" if kind == "b" else f"{_DATATYPE[kind]}{arr.dtype.itemsize * 8}"
    return {"name": name, "datatype": datatype, "shape": list(arr.shape), "data": data}


class CloudEventsSink:
    def __init__(self, url: str, source: str, timeout: float = 2.0) -> None:
        import httpx

        self.url = url
        self.source = source
        self._client = httpx.Client(timeout=timeout)

    def send(self, record: CollectRecord, config: CollectConfig) -> None:
        inputs = [
            _tensor(c.column, np.asarray(record.inputs[c.tensor]), c.hashed)
            for c in config.input_columns if c.tensor in record.inputs
        ]  # fmt: skip
        outputs = [
            _tensor(c.column, np.asarray(record.outputs[c.tensor]), c.hashed)
            for c in config.output_columns if c.tensor in record.outputs
        ]  # fmt: skip
        common = {
            "ce-specversion": "1.0",
            "ce-source": self.source,
            "ce-id": record.request_id,
            "ce-inferenceservicename": record.model,
            "ce-modelversion": record.version,
            "content-type": "application/json",
        }
        request = {"id": record.request_id, "inputs": inputs}
        response: dict[str, Any] = {
            "id": record.request_id, "model_name": record.model,
            "model_version": record.version, "outputs": outputs,
        }  # fmt: skip
        if record.error is not None:
            response["error"] = record.error
        for kind, body in (("request", request), ("response", response)):
            headers = dict(common, **{"ce-type": f"org.kubeflow.serving.inference.{kind}"})
            answer = self._client.post(self.url, content=json.dumps(body), headers=headers)
            answer.raise_for_status()

    def close(self) -> None:
        self._client.close()
