"""Sluice's grpc_service.proto is wire-identical to the public protocol tritonclient speaks."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_descriptor_is_identical_to_tritonclients() -> None:
    service_pb2 = pytest.importorskip("tritonclient.grpc.service_pb2")
    from serving.grpc import grpc_service_pb2

    assert grpc_service_pb2.DESCRIPTOR.serialized_pb == service_pb2.DESCRIPTOR.serialized_pb
    # One file in the default pool: both modules share the message classes.
    assert grpc_service_pb2.ModelInferRequest is service_pb2.ModelInferRequest


@pytest.mark.parametrize(
    "order",
    [
        "import serving.grpc.grpc_service_pb2_grpc, tritonclient.grpc",
        "import tritonclient.grpc, serving.grpc.grpc_service_pb2_grpc",
    ],
)
def test_both_import_into_one_process(order: str) -> None:
    pytest.importorskip("tritonclient.grpc")
    done = subprocess.run([sys.executable, "-c", order], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_service_surface() -> None:
    from serving.grpc import grpc_service_pb2

    service = grpc_service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert service.full_name == "inference.GRPCInferenceService"
    names = [m.name for m in service.methods]
    assert names[:6] == ["ServerLive", "ServerReady", "ModelReady", "ServerMetadata",
                         "ModelMetadata", "ModelInfer"]  # fmt: skip
    stream = service.methods_by_name["ModelStreamInfer"]
    assert stream.client_streaming and stream.server_streaming
    request = grpc_service_pb2.ModelInferRequest.DESCRIPTOR
    assert {f.name: f.number for f in request.fields} == {
        "model_name": 1, "model_version": 2, "id": 3, "parameters": 4, "inputs": 5,
        "outputs": 6, "raw_input_contents": 7,
    }  # fmt: skip
