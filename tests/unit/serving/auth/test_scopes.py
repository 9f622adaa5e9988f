"""The one scope table covers every HTTP route and every gRPC method, and nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2
from starlette.applications import Starlette
from starlette.routing import Route

from serving.auth import OPERATION_SCOPES, Scope
from serving.core import InferenceCore
from serving.grpc import grpc_service_pb2 as pb
from serving.grpc import sluice_admin_pb2
from serving.grpc.auth import grpc_operation
from serving.http.app import create_app
from serving.http.auth import HTTP_OPERATIONS, http_operation
from serving.manager import ModelManager
from serving.metrics import Metrics
from serving.settings import Settings

_INFERENCE = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
_HEALTH = health_pb2.DESCRIPTOR.services_by_name["Health"]
_ADMIN = sluice_admin_pb2.DESCRIPTOR.services_by_name["SluiceAdmin"]


def _grpc_methods() -> list[str]:
    return [f"/{s.full_name}/{m.name}" for s in (_INFERENCE, _HEALTH, _ADMIN) for m in s.methods]


def _starlette_routes(tmp_path: Path) -> list[tuple[str, str]]:
    settings = Settings(model_repository=tmp_path, cores=1)
    metrics = Metrics()
    app = create_app(InferenceCore(settings, ModelManager(settings, metrics), metrics))
    fallback = getattr(app, "fallback", None)
    assert isinstance(fallback, Starlette)  # the infer route passes the rest to starlette
    pairs = []
    for route in fallback.routes:
        assert isinstance(route, Route)
        pairs += [(m, route.path) for m in sorted(route.methods or ()) if m != "HEAD"]
    return pairs


def test_every_grpc_method_has_an_operation_in_the_table() -> None:
    operations = {method: grpc_operation(method) for method in _grpc_methods()}
    missing = [m for m, op in operations.items() if op not in OPERATION_SCOPES]
    assert missing == []
    # and the table holds nothing but those and the metrics port (grpc.health.v1's List
    # exists from grpcio-health-checking 1.82; the older ones protobuf 6 installs lack it)
    assert set(OPERATION_SCOPES) - set(operations.values()) <= {"Metrics", "HealthList"}


def test_every_starlette_route_is_in_the_http_table(tmp_path: Path) -> None:
    routes = _starlette_routes(tmp_path)
    table = {(method, path) for method, path, _ in HTTP_OPERATIONS}
    assert sorted(set(routes) - table) == []
    # the table's other entries are the raw infer route's
    extra = {(m, p) for m, p in table - set(routes)}
    assert extra == {
        ("POST", "/v2/models/{model}/infer"),
        ("POST", "/v2/models/{model}/versions/{version}/infer"),
    }
    assert all(op in OPERATION_SCOPES for _, _, op in HTTP_OPERATIONS)


@pytest.mark.parametrize(
    ("method", "path", "operation", "scope"),
    [
        ("GET", "/v2/health/live", "ServerLive", None),
        ("HEAD", "/v2/health/ready", "ServerReady", None),
        ("GET", "/v2/models/m/versions/2/ready", "ModelReady", None),
        ("POST", "/v2/models/m/infer", "ModelInfer", Scope.INFER),
        ("POST", "/v2/models/m/versions/3/infer", "ModelInfer", Scope.INFER),
        ("GET", "/v2", "ServerMetadata", Scope.READ),
        ("GET", "/v2/models/stats", "ModelStatistics", Scope.READ),
        ("GET", "/v2/models/m", "ModelMetadata", Scope.READ),
        ("GET", "/v2/models/m/config", "ModelConfig", Scope.READ),
        ("POST", "/v2/repository/index", "RepositoryIndex", Scope.READ),
        ("GET", "/v2/systemsharedmemory/region/r/status", "SystemSharedMemoryStatus", Scope.READ),
        ("POST", "/v2/repository/models/m/load", "RepositoryModelLoad", Scope.ADMIN),
        ("POST", "/v2/repository/models/m/unload", "RepositoryModelUnload", Scope.ADMIN),
        ("POST", "/v2/systemsharedmemory/region/r/register", "SystemSharedMemoryRegister",
         Scope.ADMIN),
        ("POST", "/v2/systemsharedmemory/unregister", "SystemSharedMemoryUnregister", Scope.ADMIN),
        ("POST", "/v2/cudasharedmemory/region/r/register", "CudaSharedMemoryRegister",
         Scope.ADMIN),
        ("GET", "/v2/models/m/traffic", "TrafficShow", Scope.READ),
        ("POST", "/v2/models/m/traffic", "TrafficSet", Scope.ADMIN),
        ("GET", "/v2/models/m/rollout", "RolloutStatus", Scope.READ),
        ("POST", "/v2/models/m/rollout", "RolloutStart", Scope.ADMIN),
        ("POST", "/v2/models/m/rollout/abort", "RolloutAbort", Scope.ADMIN),
    ],
)  # fmt: skip
def test_http_requests_map_to_their_operation_and_scope(
    method: str, path: str, operation: str, scope: Scope | None
) -> None:
    assert http_operation(method, path) == operation
    assert OPERATION_SCOPES[operation] is scope


def test_unknown_paths_and_methods_map_to_no_operation() -> None:
    assert http_operation("GET", "/v2/models/m/infer") is None
    assert http_operation("DELETE", "/v2/models/m") is None
    assert http_operation("GET", "/metrics") is None
    assert grpc_operation("/grpc.reflection.v1alpha.ServerReflection/Info") is None


def test_grpc_methods_scopes() -> None:
    service = _INFERENCE.full_name
    assert OPERATION_SCOPES[grpc_operation(f"/{service}/ModelStreamInfer") or ""] is Scope.INFER
    assert OPERATION_SCOPES[grpc_operation("/grpc.health.v1.Health/Check") or ""] is None
    assert OPERATION_SCOPES[grpc_operation(f"/{service}/ServerReady") or ""] is None
    assert OPERATION_SCOPES[grpc_operation(f"/{service}/LogSettings") or ""] is Scope.ADMIN
    admin = _ADMIN.full_name
    assert OPERATION_SCOPES[grpc_operation(f"/{admin}/TrafficSet") or ""] is Scope.ADMIN
    assert OPERATION_SCOPES[grpc_operation(f"/{admin}/TrafficShow") or ""] is Scope.READ
    assert OPERATION_SCOPES[grpc_operation(f"/{admin}/RolloutAbort") or ""] is Scope.ADMIN
