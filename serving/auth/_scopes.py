"""Scopes, and the one table of which scope each operation needs.

Operations are named after the Open Inference Protocol's gRPC methods (both front
ends serve the same core calls); ``serving.http.auth`` maps each HTTP route to one
of these names and ``serving.grpc.auth`` each gRPC method. ``None`` marks an
operation open to everyone: health and readiness stay open for probes.
"""

from __future__ import annotations

import enum

__all__ = ["OPERATION_SCOPES", "Scope", "grants", "parse_scope"]


class Scope(enum.Enum):
    INFER = "infer"  # inference
    READ = "read"  # metadata, configs, statistics, the repository index, shm status
    ADMIN = "admin"  # repository load/unload, shared-memory (un)registration, settings
    METRICS = "metrics"  # the Prometheus metrics port, when --metrics-auth asks for a token


# What holding a scope grants. ``admin`` is the operator's scope: it grants every
# other one. ``read`` grants ``metrics`` (the same counts the statistics give);
# ``infer`` and ``read`` are independent, so a client that only infers sees nothing else.
_GRANTS: dict[Scope, frozenset[Scope]] = {
    Scope.ADMIN: frozenset(Scope),
    Scope.READ: frozenset({Scope.READ, Scope.METRICS}),
    Scope.INFER: frozenset({Scope.INFER}),
    Scope.METRICS: frozenset({Scope.METRICS}),
}

OPERATION_SCOPES: dict[str, Scope | None] = {
    # open: liveness and readiness probes
    "ServerLive": None,
    "ServerReady": None,
    "ModelReady": None,
    "HealthCheck": None,  # grpc.health.v1
    "HealthWatch": None,
    "HealthList": None,
    # infer
    "ModelInfer": Scope.INFER,
    "ModelStreamInfer": Scope.INFER,
    # read
    "ServerMetadata": Scope.READ,
    "ModelMetadata": Scope.READ,
    "ModelConfig": Scope.READ,
    "ModelStatistics": Scope.READ,
    "RepositoryIndex": Scope.READ,
    "TrafficShow": Scope.READ,  # sluice.admin: the split in force and per-arm counts
    "RolloutStatus": Scope.READ,  # sluice.admin: a canary rollout's step and decisions
    "SystemSharedMemoryStatus": Scope.READ,
    "CudaSharedMemoryStatus": Scope.READ,
    # admin: changes what the server serves or where it reads and writes
    "RepositoryModelLoad": Scope.ADMIN,
    "RepositoryModelUnload": Scope.ADMIN,
    "SystemSharedMemoryRegister": Scope.ADMIN,
    "SystemSharedMemoryUnregister": Scope.ADMIN,
    "CudaSharedMemoryRegister": Scope.ADMIN,
    "CudaSharedMemoryUnregister": Scope.ADMIN,
    "TraceSetting": Scope.ADMIN,
    "LogSettings": Scope.ADMIN,
    "TrafficSet": Scope.ADMIN,  # sluice.admin: which versions take a model's traffic
    "RolloutStart": Scope.ADMIN,  # sluice.admin: start or abort a canary rollout
    "RolloutAbort": Scope.ADMIN,
    # the metrics port
    "Metrics": Scope.METRICS,
}


def grants(held: frozenset[Scope], needed: Scope) -> bool:
    return any(needed in _GRANTS[scope] for scope in held)


def parse_scope(name: str) -> Scope:
    """A scope by its name; ValueError naming the known ones otherwise."""
    try:
        return Scope(name)
    except ValueError:
        known = ", ".join(s.value for s in Scope)
        raise ValueError(f"unknown scope {name!r} (known: {known})") from None
