"""h2load as a gRPC client: the message frame, the per-request log, and a real run."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import h2load
from serving.grpc import grpc_service_pb2 as pb
from serving.loadgen import grpc_infer_request, grpc_infer_response


def test_the_body_is_one_uncompressed_grpc_message() -> None:
    message = grpc_infer_request("tiny", {"INPUT0": np.ones((1, 4), np.float32)}, ["OUTPUT0"])
    body = h2load.grpc_body(message)
    assert body[0] == 0  # not compressed
    (length,) = struct.unpack(">I", body[1:5])
    assert length == len(body) - 5
    parsed = pb.ModelInferRequest.FromString(body[5:])
    assert parsed.model_name == "tiny" and parsed.inputs[0].shape == [1, 4]


def test_the_log_gives_latencies_of_answers_and_counts_the_rest() -> None:
    log = "1796066741721314\t200\t552\n1796066741721438\t503\t90\n1796066741721578\t200\t623\n\n"
    latencies, bad = h2load.parse_log(log)
    assert list(latencies) == [552, 623]
    assert bad == 1


@pytest.mark.skipif(h2load.available() is None, reason="h2load (nghttp2-client) not installed")
def test_a_run_against_a_real_grpc_server(tmp_path: Path) -> None:
    response = tmp_path / "response.bin"
    response.write_bytes(grpc_infer_response("tiny", {"OUTPUT0": np.zeros((1, 10), np.float32)}))
    server = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.ceiling", "--response", str(response)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        line = server.stdout.readline()  # "gRPC service listening on HOST:PORT"
        target = line.split()[-1]
        body = tmp_path / "body"
        message = grpc_infer_request("tiny", {"INPUT0": np.ones((1, 64), np.float32)}, ["OUTPUT0"])
        body.write_bytes(h2load.grpc_body(message))
        result = h2load.run_h2load(
            target, body, tmp_path / "log.tsv", connections=2, streams=1, duration=1, warmup=0.2
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert result.errors == 0
    assert len(result.latencies_us) > 100
    assert result.throughput == pytest.approx(len(result.latencies_us), rel=0.01)
