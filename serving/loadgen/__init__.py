"""Sluice's load generator: closed-loop concurrency and open-loop constant or Poisson rates.

Shared by the benchmark suite (``python -m benchmarks``, run from a checkout) and
``sluice profile``. Requests are encoded once before a run (``http_request``,
``grpc_infer_request``) and written as bytes by lean senders (``HttpSender`` on a raw asyncio
protocol, ``GrpcSender`` on grpc.aio); latencies count from the intended send time and land in
HDR histograms (``summarize_values``; the ``hdrhistogram`` distribution, imported when a
histogram is made). grpc loads only when a gRPC channel is opened.
"""

from serving.loadgen._drive import LoadResult, LoadSpec, Sender, drive, open_senders
from serving.loadgen._grpc import GrpcSender, open_channel
from serving.loadgen._histogram import (
    HIGHEST_US,
    PERCENTILES,
    LatencySummary,
    new_histogram,
    summarize,
    summarize_values,
)
from serving.loadgen._http import HttpConnection, HttpSender, ProtocolError, ResponseParser
from serving.loadgen._payloads import (
    GRPC_INFER_METHOD,
    binary_infer_body,
    grpc_infer_request,
    grpc_infer_response,
    http_request,
    json_infer_body,
    wire_datatype,
)
from serving.loadgen._schedule import constant_schedule, poisson_schedule

__all__ = [
    "GRPC_INFER_METHOD",
    "HIGHEST_US",
    "PERCENTILES",
    "GrpcSender",
    "HttpConnection",
    "HttpSender",
    "LatencySummary",
    "LoadResult",
    "LoadSpec",
    "ProtocolError",
    "ResponseParser",
    "Sender",
    "binary_infer_body",
    "constant_schedule",
    "drive",
    "grpc_infer_request",
    "grpc_infer_response",
    "http_request",
    "json_infer_body",
    "new_histogram",
    "open_channel",
    "open_senders",
    "poisson_schedule",
    "summarize",
    "summarize_values",
    "wire_datatype",
]
