"""The gRPC front end: KServe V2 / Triton's ``inference.GRPCInferenceService`` and the
standard ``grpc.health.v1`` service, on ``grpc.aio``."""

from __future__ import annotations

from serving.grpc.server import GrpcServer

__all__ = ["GrpcServer"]
