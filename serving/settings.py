"""The one settings object of a server process, validated once at the edge.

Values come from command-line flags, falling back to ``SLUICE_*`` environment
variables, falling back to defaults.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ControlMode", "Settings", "env_default"]


class ControlMode(enum.Enum):
    NONE = "none"
    POLL = "poll"
    EXPLICIT = "explicit"


def env_default(name: str, default: str) -> str:
    return os.environ.get(f"SLUICE_{name.upper()}", default)


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass(frozen=True, slots=True)
class Settings:
    model_repository: Path
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    model_control_mode: ControlMode = ControlMode.NONE
    load_models: tuple[str, ...] = ()
    repository_poll_secs: float = 15.0
    log_level: str = "info"
    max_request_bytes: int = 64 * 1024 * 1024
    # Slow clients (serving.http.protocol): per HTTP and metrics server, per process
    http_header_timeout_secs: float = 10.0  # request line and headers, from the first byte
    http_body_timeout_secs: float = 60.0  # the whole body, from the end of the headers
    http_keepalive_secs: int = 75  # idle between requests; above load balancers' 60 s
    http_max_connections: int = 1024
    http_max_buffered_bytes: int | None = None  # None: http_buffered_bytes_limit's default
    default_max_batch_size: int = 4
    cores: int = field(default_factory=_available_cores)
    cache_dir: Path | None = None
    drain_timeout_secs: float = 30.0
    # Executions averaging under this run on the event loop (0: always in a thread).
    inline_execution_us: int = 200
    shared_memory: bool = False  # Triton's system shared memory extension
    workers: int = 1  # processes sharing the ports (serving.workers), cores divided
    # Serving from a registry (serving.registry_follower): --registry URI --model REF...
    registry: str | None = None
    registry_models: tuple[str, ...] = ()
    registry_poll_secs: float = 30.0
    registry_retention: int = 3  # pulled versions kept on disk, besides the serving one
    # Authentication and TLS (serving.auth, serving.tls; README "Authentication and TLS")
    auth_token_file: Path | None = None  # JSON: named tokens with scopes
    jwt_jwks: str | None = None  # a JWKS file or http(s) URL; needs issuer and audience
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    metrics_auth: bool = False  # the metrics port wants a token with the 'metrics' scope
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None  # mutual TLS: clients need a certificate it signed

    def __post_init__(self) -> None:
        if not self.model_repository.is_dir():
            raise ValueError(f"model repository {str(self.model_repository)!r} is not a directory")
        for name in ("http_port", "grpc_port", "metrics_port"):
            port = getattr(self, name)
            if not 0 <= port <= 65535:
                raise ValueError(f"--{name.replace('_', '-')} {port} is not a port number")
        if self.repository_poll_secs <= 0:
            raise ValueError("--repository-poll-secs must be positive")
        if self.max_request_bytes <= 0:
            raise ValueError("--max-request-size must be positive")
        self._check_http_limits()
        if self.load_models and self.model_control_mode is not ControlMode.EXPLICIT:
            raise ValueError("--load-model is only allowed with --model-control-mode explicit")
        if self.cores < 1:
            raise ValueError("cores must be at least 1")
        if self.inline_execution_us < 0:
            raise ValueError("--inline-execution-us must not be negative")
        if self.workers < 1:
            raise ValueError(f"--workers {self.workers} must be at least 1")
        if self.workers > 1 and self.model_control_mode is ControlMode.EXPLICIT:
            raise ValueError(
                "--workers above 1 cannot run with --model-control-mode explicit: each worker "
                "has its own models, and a load or unload through the API would reach only the "
                "worker that got the request; use poll mode, or one worker"
            )
        self._check_registry()
        self._check_security()

    @property
    def http_buffered_bytes_limit(self) -> int:
        """Request body bytes all connections may hold: by default four largest requests,
        and at least 256 MiB so that many ordinary requests never wait on a few large ones."""
        if self.http_max_buffered_bytes is not None:
            return self.http_max_buffered_bytes
        return max(4 * self.max_request_bytes, 256 * 1024 * 1024)

    def _check_http_limits(self) -> None:
        for name in ("http_header_timeout_secs", "http_body_timeout_secs", "http_keepalive_secs"):
            if getattr(self, name) <= 0:
                raise ValueError(f"--{name.replace('_', '-')} must be positive")
        if self.http_max_connections < 1:
            raise ValueError("--http-max-connections must be at least 1")
        if self.http_buffered_bytes_limit < self.max_request_bytes:
            raise ValueError(
                f"--http-max-buffered-bytes {self.http_buffered_bytes_limit} is below "
                f"--max-request-size {self.max_request_bytes}: the largest request could never "
                "be received"
            )

    def _check_registry(self) -> None:
        if self.registry_models and not self.registry:
            raise ValueError("--model needs --registry URI (or $SLUICE_REGISTRY)")
        if self.registry and not self.registry_models:
            raise ValueError("--registry needs at least one --model REF to follow")
        if self.registry_poll_secs <= 0:
            raise ValueError("--registry-poll-secs must be positive")
        if self.registry_retention < 1:
            raise ValueError("--registry-retention must be at least 1")
        if self.registry_models:
            from registry_client import RegistryError, parse_reference

            for ref in self.registry_models:
                try:
                    parse_reference(ref)
                except RegistryError as exc:
                    raise ValueError(f"--model {ref!r}: {exc.message}") from None

    @property
    def auth_enabled(self) -> bool:
        return self.auth_token_file is not None or self.jwt_jwks is not None

    def _check_security(self) -> None:
        if (self.jwt_issuer or self.jwt_audience) and not self.jwt_jwks:
            raise ValueError("--jwt-issuer and --jwt-audience need --jwt-jwks FILE|URL")
        if self.jwt_jwks and not (self.jwt_issuer and self.jwt_audience):
            raise ValueError(
                "--jwt-jwks needs --jwt-issuer and --jwt-audience to check tokens against"
            )
        if self.metrics_auth and not self.auth_enabled:
            raise ValueError("--metrics-auth needs --auth-token-file or --jwt-jwks")
        if self.auth_enabled:
            from serving.auth import Authenticator

            Authenticator.check_files(self.auth_token_file, self.jwt_jwks)
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("--tls-cert and --tls-key go together")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ValueError("--tls-client-ca needs --tls-cert and --tls-key")
        if self.tls_cert is not None and self.tls_key is not None:
            from serving.tls import check_files

            check_files(self.tls_cert, self.tls_key, self.tls_client_ca)
