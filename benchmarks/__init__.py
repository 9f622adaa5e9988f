"""Sluice's benchmark suite: ``python -m benchmarks run``.

Generates its models, starts Sluice and its peers (MLServer, a fixed-answer grpc.aio
server, in-process ONNX Runtime), drives them with wrk and Sluice's own load generator,
and prints Sluice beside its peers. See ``benchmarks/README.md``.
"""

from __future__ import annotations

__all__: list[str] = []
