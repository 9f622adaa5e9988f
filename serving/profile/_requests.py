"""Pre-encoded HTTP infer requests (binary tensor extension), one row each.

Encoded once before the sweep so the load generator only writes bytes; the rows cycle,
and the server's dynamic batcher is what puts them together.
"""

from __future__ import annotations

import json

import numpy as np

from serving.datatypes import by_numpy

__all__ = ["infer_requests"]


def infer_requests(
    host: str, port: int, model: str, arrays: dict[str, np.ndarray], batched: bool, count: int
) -> list[bytes]:
    """``count`` complete keep-alive POSTs to ``/v2/models/<model>/infer``."""
    rows = len(next(iter(arrays.values()))) if batched else 1
    requests = []
    for i in range(count):
        row = i % rows
        inputs = {n: (a[row : row + 1] if batched else a) for n, a in arrays.items()}
        body, header_length = _binary_body(inputs)
        head = (
            f"POST /v2/models/{model}/infer HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Content-Type: application/octet-stream\r\n"
            f"Inference-Header-Content-Length: {header_length}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        requests.append(head.encode("latin-1") + body)
    return requests


def _binary_body(inputs: dict[str, np.ndarray]) -> tuple[bytes, int]:
    header: dict[str, list[dict[str, object]]] = {"inputs": []}
    blobs = []
    for name, array in inputs.items():
        datatype = by_numpy(array.dtype)
        if datatype.is_bytes:
            blob = b"".join(
                len(v).to_bytes(4, "little") + v
                for v in (x if isinstance(x, bytes) else str(x).encode() for x in array.ravel())
            )
        else:
            blob = np.ascontiguousarray(array, dtype=datatype.numpy).tobytes()
        header["inputs"].append(
            {
                "name": name,
                "shape": list(array.shape),
                "datatype": datatype.name,
                "parameters": {"binary_data_size": len(blob)},
            }
        )
        blobs.append(blob)
    head = json.dumps(header, separators=(",", ":")).encode()
    return head + b"".join(blobs), len(head)
