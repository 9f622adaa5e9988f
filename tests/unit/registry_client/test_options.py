from __future__ import annotations

import base64
import random
import ssl

from registry_client import RetryPolicy
from registry_client._options import auth_from_env, tls_from_env


def test_token_wins_over_basic_auth() -> None:
    env = {"MLFLOW_TRACKING_TOKEN": "t0k", "MLFLOW_TRACKING_USERNAME": "u",
           "MLFLOW_TRACKING_PASSWORD": "p"}  # fmt: skip
    assert auth_from_env(env) == {"Authorization": "Bearer t0k"}


def test_basic_auth() -> None:
    header = auth_from_env({"MLFLOW_TRACKING_USERNAME": "u", "MLFLOW_TRACKING_PASSWORD": "p"})
    assert header == {"Authorization": "Basic " + base64.b64encode(b"u:p").decode()}
    assert auth_from_env({}) == {}


def test_tls_settings() -> None:
    assert tls_from_env({}) is True
    context = tls_from_env({"MLFLOW_TRACKING_INSECURE_TLS": "true"})
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_NONE and not context.check_hostname


def test_backoff_grows_with_jitter_and_a_ceiling() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=8.0)
    rng = random.Random(7)
    delays = [policy.delay(n, rng) for n in range(1, 8)]
    for n, delay in enumerate(delays, start=1):
        ceiling = min(8.0, 2 ** (n - 1))
        assert ceiling / 2 <= delay <= ceiling
