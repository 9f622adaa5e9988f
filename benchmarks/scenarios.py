"""The scenarios (names are stable: RESULTS.md and scripts refer to them) and the targets
each one is held to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["COMPARISONS", "SCENARIOS", "Comparison", "Scenario"]

Objective = Literal["throughput", "p50"]


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    model: str  # benchmarks.models.MODELS key; "" for micro-benchmarks
    protocol: Literal["http", "grpc", "micro"]
    encoding: Literal["json", "binary", "grpc", "shm", ""]
    connections: int
    objective: Objective  # what "best configuration" means here
    sluice_variants: tuple[str, ...] = ()
    mode: Literal["closed", "poisson"] = "closed"
    load_fractions: tuple[float, ...] = ()  # open loop: rates as fractions of capacity
    limit: bool = False  # in-process ONNX Runtime limit
    ceiling: bool = False  # fixed-answer server: grpc.aio, or a bare uvloop HTTP protocol
    mlserver: bool = True  # the peers (MLServer, Triton) run it
    sluice_workers: tuple[int, ...] = (1,)  # `sluice serve --workers N` values tried


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "tiny_http_json_c32",
            "tiny MLP, HTTP JSON, 32 connections (closed loop)",
            "tiny", "http", "json", 32, "throughput",
            ("tiny_mlp", "tiny_mlp_batched"), ceiling=True, sluice_workers=(1, 2),
        ),
        Scenario(
            "tiny_http_json_c1",
            "tiny MLP, HTTP JSON, 1 connection (latency)",
            "tiny", "http", "json", 1, "p50",
            ("tiny_mlp", "tiny_mlp_batched"), ceiling=True,
        ),
        Scenario(
            "wide_http_binary_c64",
            "wide MLP, HTTP binary tensors, 64 connections, dynamic batching",
            "wide", "http", "binary", 64, "throughput",
            ("wide_mlp_batched", "wide_mlp_batched_i2", "wide_mlp_batched_t1"), limit=True,
        ),
        Scenario(
            "seq_http_binary_c32",
            "variable-length sequence model (seq 8/16/32/64), HTTP binary, 32 connections",
            "seq", "http", "binary", 32, "throughput",
            ("seq_pool_batched",),
        ),
        Scenario(
            "tiny_http_json_poisson",
            "tiny MLP, HTTP JSON, open-loop Poisson at 25/50/75/90% of capacity, 64 connections",
            "tiny", "http", "json", 64, "throughput",
            ("tiny_mlp",), mode="poisson", load_fractions=(0.25, 0.5, 0.75, 0.9),
        ),
        Scenario(
            "tiny_grpc_c16",
            "tiny MLP, gRPC, 16 concurrent requests on one channel",
            "tiny", "grpc", "grpc", 16, "throughput",
            ("tiny_mlp", "tiny_mlp_batched"), ceiling=True, sluice_workers=(1, 2),
        ),
        Scenario(
            "tiny_grpc_c1",
            "tiny MLP, gRPC, 1 connection (latency)",
            "tiny", "grpc", "grpc", 1, "p50",
            ("tiny_mlp", "tiny_mlp_batched"), ceiling=True,
        ),
        Scenario(
            "wide_grpc_c16",
            "wide MLP, gRPC, 16 concurrent requests on one channel, dynamic batching",
            "wide", "grpc", "grpc", 16, "throughput",
            ("wide_mlp_batched", "wide_mlp_batched_i2"), limit=True, ceiling=True,
        ),
        Scenario(
            "ident4mb_http_binary_c1",
            "4 MiB FP32 identity, HTTP binary tensors both ways, 1 connection",
            "ident", "http", "binary", 1, "throughput", ("ident_4mb",), mlserver=False,
        ),
        Scenario(
            "ident4mb_http_shm_c1",
            "4 MiB FP32 identity, system shared memory in and out over HTTP, 1 connection",
            "ident", "http", "shm", 1, "throughput", ("ident_4mb",), mlserver=False,
        ),
        Scenario(
            "codecs",
            "codec micro-benchmarks, native twin vs pure-Python twin",
            "", "micro", "", 0, "throughput", mlserver=False,
        ),
    )
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Comparison:
    """``sluice metric / baseline metric`` (or Sluice's metric alone), and its target."""

    scenario: str
    metric: Literal["throughput", "p50", "p99", "speedup"]
    baseline: Literal["mlserver", "triton", "limit", "ceiling", "python", ""]  # "" = absolute
    target: float | None
    better: Literal["higher", "lower"]
    micro: str = ""  # micro-benchmark name, for metric "speedup"

    @property
    def label(self) -> str:
        if self.metric == "speedup":
            return f"{self.micro}: native / python speed"
        if not self.baseline:
            unit = " ms" if self.metric.startswith("p") else "/s"
            return f"{self.scenario}: Sluice {self.metric}{unit}"
        return f"{self.scenario}: {self.metric} Sluice / {self.baseline}"


COMPARISONS: tuple[Comparison, ...] = (
    Comparison("tiny_http_json_c32", "throughput", "triton", 1.5, "higher"),
    Comparison("tiny_http_json_c32", "throughput", "mlserver", 8.0, "higher"),
    Comparison("tiny_http_json_c32", "p99", "", 5.0, "lower"),
    Comparison("tiny_http_json_c32", "throughput", "ceiling", 0.5, "higher"),
    Comparison("tiny_http_json_c1", "p50", "triton", 1.0, "lower"),
    Comparison("tiny_http_json_c1", "p50", "mlserver", 0.3, "lower"),
    Comparison("tiny_http_json_c1", "p50", "ceiling", None, "lower"),
    Comparison("wide_http_binary_c64", "throughput", "limit", 0.6, "higher"),
    Comparison("wide_http_binary_c64", "throughput", "mlserver", 8.0, "higher"),
    Comparison("seq_http_binary_c32", "throughput", "mlserver", None, "higher"),
    Comparison("tiny_grpc_c16", "throughput", "ceiling", 0.7, "higher"),
    Comparison("tiny_grpc_c16", "throughput", "mlserver", 3.0, "higher"),
    Comparison("tiny_grpc_c1", "p50", "ceiling", 1.3, "lower"),
    Comparison("tiny_grpc_c1", "p50", "mlserver", None, "lower"),
    Comparison("wide_grpc_c16", "throughput", "limit", None, "higher"),
    Comparison("wide_grpc_c16", "throughput", "mlserver", None, "higher"),
    Comparison("ident4mb_http_shm_c1", "throughput", "", None, "higher"),
    Comparison("codecs", "speedup", "python", 5.0, "higher", "codec_bytes_decode_10k"),
    Comparison("codecs", "speedup", "python", 5.0, "higher", "codec_json_to_array_fp32_150k"),
    Comparison("codecs", "speedup", "python", 2.0, "higher", "batch_assembly_32"),
    Comparison(
        "codecs", "speedup", "python", None, "higher", "codec_json_text_to_array_fp32_150k_repr"
    ),
    Comparison(
        "codecs", "speedup", "python", None, "higher", "codec_json_text_to_array_fp32_150k_short"
    ),
    Comparison("codecs", "speedup", "python", None, "higher", "codec_array_to_json_text_fp32_150k"),
)
