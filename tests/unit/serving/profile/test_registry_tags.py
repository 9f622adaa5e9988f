"""The tags ``sluice profile --registry`` records, and how they reach MLflow."""

from __future__ import annotations

import asyncio
import json

import httpx

from registry_client import MlflowRegistry
from serving.profile import TAG_PREFIX, profile_tags


def report(cpu: float | None) -> dict:
    return {
        "slo_p99_ms": 25.0,
        "rerun_slo_held": False,
        "points": [
            {
                "configuration": {"instances": 2, "max_batch_size": 8, "queue_delay_us": 500},
                "load": {"mode": "open", "rate": 250.0},
                "throughput": 249.84,
                "latency_ms": {"p99": 12.3456},
            },
        ],
        "recommendation": {
            "point": 0,
            "cpu_request_cores": cpu,
            "memory_request": None if cpu is None else "144Mi",
        },
    }


def test_the_tags_carry_the_recommendation_as_the_report_states_it() -> None:
    tags = profile_tags(report(0.9))
    assert all(key.startswith(TAG_PREFIX) for key in tags)
    short = {key.removeprefix(TAG_PREFIX): value for key, value in tags.items()}
    assert short.pop("at")  # when it was measured
    assert short == {
        "configuration": "i2-b8-d500",
        "load": "r250",
        "throughput": "249.8",
        "p99_ms": "12.346",
        "slo_p99_ms": "25",
        "rerun_slo_held": "false",
        "cpu_request": "0.9",
        "memory_request": "144Mi",
    }
    unmeasured = profile_tags(report(None))
    assert unmeasured[TAG_PREFIX + "cpu_request"] == unmeasured[TAG_PREFIX + "memory_request"] == ""


def test_mlflow_gets_one_set_tag_call_per_tag() -> None:
    seen: list[tuple[str, dict]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.path, json.loads(request.content)))
        return httpx.Response(200, json={})

    async def tag() -> None:
        transport = httpx.MockTransport(handler)
        async with MlflowRegistry("http://mlflow.test", transport=transport) as registry:
            await registry.set_tags("churn", 3, {"a": "1", "b": ""})

    asyncio.run(tag())
    assert seen == [
        ("/api/2.0/mlflow/model-versions/set-tag",
         {"name": "churn", "version": "3", "key": "a", "value": "1"}),
        ("/api/2.0/mlflow/model-versions/set-tag",
         {"name": "churn", "version": "3", "key": "b", "value": ""}),
    ]  # fmt: skip
