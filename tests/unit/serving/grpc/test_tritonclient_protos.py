"""Sluice's gRPC code and tritonclient's gRPC client in one process, on one protobuf runtime.

tritonclient[grpc] pins protobuf<7, so Sluice's generated code must load on protobuf 6
(scripts/gen_protos.py); the test extra installs both into one environment.
"""

from __future__ import annotations

import numpy as np
import tritonclient.grpc as triton
from google.protobuf import __version__ as protobuf_version
from tritonclient.grpc import _utils as triton_utils
from tritonclient.grpc import service_pb2 as triton_pb

from serving.grpc import codec
from serving.grpc import grpc_service_pb2 as pb
from serving.types import InferOutput, InferResponse


def test_tritonclients_request_decodes_and_sluices_response_reads_back() -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    words = np.array([b"a", b"bc"], dtype=np.object_)
    inputs = [triton.InferInput("X", [2, 3], "FP32"), triton.InferInput("W", [2], "BYTES")]
    inputs[0].set_data_from_numpy(x)
    inputs[1].set_data_from_numpy(words)
    built = triton_utils._get_inference_request(
        model_name="m", inputs=inputs, model_version="1", request_id="r1", outputs=None,
        sequence_id=0, sequence_start=False, sequence_end=False, priority=0, timeout=None,
        parameters=None,
    )  # fmt: skip

    request = codec.decode_infer_request(pb.ModelInferRequest.FromString(built.SerializeToString()))

    assert (request.model_name, request.model_version, request.id) == ("m", "1", "r1")
    decoded = {i.name: i for i in request.inputs}
    np.testing.assert_array_equal(decoded["X"].data, x)
    assert decoded["W"].data.tolist() == [b"a", b"bc"]

    response = InferResponse("m", "1", (InferOutput("Y", "FP32", (2, 3), x * 2),), id="r1")
    wire = codec.encode_infer_response(response, request).SerializeToString()
    result = triton.InferResult(triton_pb.ModelInferResponse.FromString(wire))

    np.testing.assert_array_equal(result.as_numpy("Y"), x * 2)
    assert result.get_response().id == "r1"


def test_one_protobuf_runtime_serves_both() -> None:
    # Both generated modules registered the same file in the default pool: one class each.
    assert pb.ModelInferResponse is triton_pb.ModelInferResponse
    major = int(protobuf_version.split(".")[0])
    assert major in (6, 7), protobuf_version
