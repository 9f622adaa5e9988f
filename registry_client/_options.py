"""How the client talks to a remote registry: timeouts, retries, credentials, TLS.

Credentials and TLS settings follow MLflow's own client so a machine configured
for ``mlflow`` works unchanged: ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``
(basic auth), ``MLFLOW_TRACKING_TOKEN`` (bearer), ``MLFLOW_TRACKING_INSECURE_TLS``,
``MLFLOW_TRACKING_SERVER_CERT_PATH`` (CA bundle) and ``MLFLOW_TRACKING_CLIENT_CERT_PATH``.
"""

from __future__ import annotations

import os
import random
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["HttpOptions", "RetryPolicy", "auth_from_env", "tls_from_env"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter, bounded by attempts in a row without progress."""

    max_attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 15.0

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        ceiling = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return (rng or random).uniform(ceiling / 2, ceiling)


@dataclass(frozen=True, slots=True)
class HttpOptions:
    """Connect: to open a connection; stall: longest silence while reading a body;
    total: the whole pull, every retry included (``None`` for no limit)."""

    connect_timeout: float = 10.0
    stall_timeout: float = 30.0
    total_timeout: float | None = 3600.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    bandwidth: float | None = None  # bytes per second, all files together
    chunk_size: int = 256 * 1024

    def timeout(self) -> Any:
        import httpx

        return httpx.Timeout(
            connect=self.connect_timeout,
            read=self.stall_timeout,
            write=self.stall_timeout,
            pool=self.connect_timeout,
        )


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def auth_from_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Authorization headers as MLflow's client builds them (a token wins over basic auth)."""
    import base64

    env = os.environ if env is None else env
    token = env.get("MLFLOW_TRACKING_TOKEN")
    if token:
        return {"Authorization": f"Bearer {token}"}
    user, password = env.get("MLFLOW_TRACKING_USERNAME"), env.get("MLFLOW_TRACKING_PASSWORD")
    if user and password:
        raw = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        return {"Authorization": f"Basic {raw}"}
    return {}


def tls_from_env(env: Mapping[str, str] | None = None) -> ssl.SSLContext | bool:
    """The ``verify`` argument for httpx: a context, or ``True`` for the system defaults."""
    env = os.environ if env is None else env
    insecure = _truthy(env.get("MLFLOW_TRACKING_INSECURE_TLS"))
    ca = env.get("MLFLOW_TRACKING_SERVER_CERT_PATH")
    client_cert = env.get("MLFLOW_TRACKING_CLIENT_CERT_PATH")
    if not (insecure or ca or client_cert):
        return True
    context = ssl.create_default_context(cafile=ca or None)
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if client_cert:
        context.load_cert_chain(client_cert)
    return context
