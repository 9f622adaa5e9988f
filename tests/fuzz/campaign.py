"""A fuzz campaign against a running Sluice server, over HTTP and gRPC.

Hostile requests are derived from valid ones by mutation, with a seeded
``random.Random`` so a campaign is reproducible: HTTP over raw sockets (random
methods, paths, headers, framing) and over httpx (mutated bodies: bit flips,
truncation, huge declared sizes, bad encodings, bad JSON, wrong types); gRPC
as mutated serialized ``ModelInferRequest`` bytes on a raw channel with
identity serializers, field-level mutations of the message, and short
``ModelStreamInfer`` streams.

What is legal for hostile input (anything else counts as unexpected):

- HTTP: any 1xx-4xx status; of the 5xx only 501 (Sluice's ``Unsupported`` code,
  e.g. a Content-Encoding it does not decode) and 503 (``Unavailable``: the
  documented overload answer). A connection closed without an answer is legal
  only for requests whose HTTP framing itself is broken.
- gRPC: every status but INTERNAL and UNKNOWN (and DEADLINE_EXCEEDED on the
  client's own deadline, which means the server hung).
- The process stays alive throughout, and a valid request answers correctly after.

``python -m tests.fuzz.campaign --requests 100000 --seed 1`` starts a server over
a few example models (or targets one with ``--http``/``--grpc``/``--pid``), splits
the requests between HTTP and gRPC and prints a JSON summary and a markdown table.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import gzip
import json
import random
import socket
import struct
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import msgpack
import numpy as np

from serving.grpc import grpc_service_pb2 as pb

__all__ = [
    "MODELS",
    "CampaignResult",
    "GrpcFuzzer",
    "HttpFuzzer",
    "check_valid_requests",
    "main",
    "rss_kib",
    "run_campaign",
]

MODELS = ["simple", "identity_fp32", "identity_bytes", "identity_bool", "identity_int64"]
LEGAL_HTTP_5XX = frozenset({501, 503})
ILLEGAL_GRPC = frozenset({"INTERNAL", "UNKNOWN", "DEADLINE_EXCEEDED"})
_SERVICE = "/inference.GRPCInferenceService/"
_TIMEOUT = 20.0  # seconds a single request may take before it counts as a hang


def rss_kib(pid: int) -> int:
    """The process's resident set size (VmRSS) in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


# ---------------------------------------------------------------- valid seeds


def _simple_arrays() -> tuple[np.ndarray, np.ndarray]:
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    return a, np.ones((1, 16), dtype=np.int32)


def _lp(items: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(x)) + x for x in items)


def _json_infer() -> dict[str, Any]:
    a, b = _simple_arrays()
    return {
        "id": "fuzz",
        "inputs": [
            {"name": "INPUT0", "datatype": "INT32", "shape": [1, 16], "data": a[0].tolist()},
            {"name": "INPUT1", "datatype": "INT32", "shape": [1, 16], "data": b[0].tolist()},
        ],
        "outputs": [{"name": "OUTPUT0"}, {"name": "OUTPUT1", "parameters": {"binary_data": True}}],
    }


def _http_seeds() -> list[tuple[str, str, dict[str, str], bytes]]:
    """Valid requests (method, path, headers, body) the mutations start from."""
    a, b = _simple_arrays()
    header = {
        "inputs": [
            {
                "name": n,
                "datatype": "INT32",
                "shape": [1, 16],
                "parameters": {"binary_data_size": 64},
            }
            for n in ("INPUT0", "INPUT1")
        ]
    }
    head = json.dumps(header).encode()
    binary = head + a.tobytes() + b.tobytes()
    as_json = json.dumps(_json_infer()).encode()
    pack = {
        "inputs": [
            {"name": "INPUT0", "datatype": "INT32", "shape": [1, 16], "data": a.tobytes()},
            {"name": "INPUT1", "datatype": "INT32", "shape": [1, 16], "data": b[0].tolist()},
        ]
    }
    words = [b"a", b"", "\u00e9".encode(), b"\x00\xff"]
    strings = {
        "inputs": [
            {
                "name": "INPUT0",
                "datatype": "BYTES",
                "shape": [1, 4],
                "parameters": {"binary_data_size": len(_lp(words))},
            }
        ]
    }
    strings_head = json.dumps(strings).encode()
    infer = "/v2/models/simple/infer"
    return [
        ("POST", infer, {"content-type": "application/json"}, as_json),
        ("POST", "/v2/models/simple/versions/1/infer", {}, as_json),
        ("POST", infer, {"inference-header-content-length": str(len(head))}, binary),
        ("POST", infer, {"content-type": "application/msgpack"}, msgpack.packb(pack)),
        ("POST", infer, {"content-encoding": "gzip"}, gzip.compress(as_json)),
        ("POST", infer, {"content-encoding": "deflate"}, zlib.compress(as_json)),
        (
            "POST",
            "/v2/models/identity_bytes/infer",
            {"inference-header-content-length": str(len(strings_head))},
            strings_head + _lp(words),
        ),
        (
            "POST",
            "/v2/models/identity_fp32/infer",
            {"inference-header-content-length": "0"},
            np.ones(4, np.float32).tobytes(),
        ),
        ("GET", "/v2/models/simple", {}, b""),
        ("GET", "/v2/models/simple/config", {}, b""),
        ("GET", "/v2/models/simple/stats", {}, b""),
        ("GET", "/v2/health/ready", {}, b""),
        ("GET", "/v2", {}, b""),
        ("POST", "/v2/repository/index", {}, b"{}"),
    ]


def _grpc_seed() -> pb.ModelInferRequest:
    a, b = _simple_arrays()
    msg = pb.ModelInferRequest(model_name="simple", id="fuzz")
    for name in ("INPUT0", "INPUT1"):
        msg.inputs.add(name=name, datatype="INT32", shape=[1, 16])
    msg.raw_input_contents.extend([a.tobytes(), b.tobytes()])
    msg.outputs.add(name="OUTPUT0")
    return msg


# ---------------------------------------------------------------- mutations

_HOSTILE_JSON = [
    b"[" * 50_000 + b"]" * 50_000,
    b'{"inputs":[{"name":"INPUT0","datatype":"INT32","shape":[1,16],"data":'
    + b"[" * 50_000
    + b"]" * 50_000
    + b"}]}",
    b'{"inputs":[{"name":"INPUT0","datatype":"INT32","shape":[1,16],"data":['
    + b"9" * 5000
    + b"]}]}",
    b'{"inputs":[{"name":"INPUT0","datatype":"INT32","shape":[' + b"7" * 5000 + b'],"data":[]}]}',
    b'{"inputs":[{"name":"INPUT0","datatype":"FP32","shape":[1],"data":[1e309]}]}',
    b'{"inputs":[{"name":"INPUT0","datatype":"FP32","shape":[2],"data":[NaN,-Infinity]}]}',
    b'{"inputs":[{"name":"INPUT0","datatype":"INT32","shape":[' + b"1," * 70 + b'1],"data":[1]}]}',
    b'{"inputs":[{"name":"INPUT0","datatype":"INT32","shape":[0,4611686018427387904],"data":[]}]}',
    b'{"inputs":[{"name":"INPUT0","datatype":"BYTES","shape":[0,9223372036854775807],"data":[]}]}',
    b'{"id":1,"inputs":{}}',
    b'{"inputs":[{"name":"INPUT0","datatype":"INT32","shape":[1,16],"data":"x"}]}',
    b"\xff\xfe{}",
    b"",
    b"null",
]
_JUNK_VALUES: list[Any] = [
    None, True, 0, -1, 2**63, 2**64, -(2**63) - 1, 1.5, 1e308, "", "x" * 300, "\u0661", [], [[]],
    {}, {"a": []}, [1, "a", None], ["INT32"], [-1], [2**62, 2**62],
]  # fmt: skip
_METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "FUZZ", "post"]
_PATHS = [
    "/v2/models/{m}/infer",
    "/v2/models/{m}/versions/{v}/infer",
    "/v2/models/{m}",
    "/v2/models/{m}/versions/{v}",
    "/v2/models/{m}/ready",
    "/v2/models/{m}/config",
    "/v2/models/{m}/stats",
    "/v2/health/live",
    "/v2/systemsharedmemory/status",
    "/v2/cudasharedmemory/status",
    "/v2/repository/index",
    "/v2/trace/setting",
    "/v2/logging",
    "/metrics",
    "/",
    "/v2/models//infer",
    "/v2/models/{m}/infer/../../../../etc/passwd",
    "/v2/models/%00/infer",
    "/v2/models/{m}%2Finfer",
    "/" + "a" * 9000,
]
_MODEL_NAMES = [*MODELS, "", "nope", "..", "%2e%2e", "simple\x00", "a" * 300, "\u00e9"]
_VERSIONS = ["1", "2", "0", "-1", "\u0661", "1_0", "01", "99999999999999999999999", "", "x"]
_ENCODINGS = ["gzip", "deflate", "br", "identity", "gzip, gzip", "x-gzip", "GZIP", "zstd", ""]
_CONTENT_TYPES = [
    "application/json", "application/msgpack", "application/x-msgpack", "text/plain",
    "multipart/form-data; boundary=x", "application/json; charset=latin-1", "",
]  # fmt: skip
_IHCL = ["-1", "0", " +1_1_7 ", "1e3", "999999999999999999999", "abc", "", "17", "\u0661"]


def mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(out)) if out else 0
        op = rng.randrange(6)
        if op == 0 and out:
            out[at] ^= 1 << rng.randrange(8)
        elif op == 1:
            del out[at:]
        elif op == 2:
            out[at:at] = rng.choice(
                [b"[", b"{", b'"', b"\\", b"\xff", b"1e309", b"NaN", b"-", b",", rng.randbytes(8)]
            )
        elif op == 3:
            del out[at : at + rng.randint(1, 16)]
        elif op == 4:
            out[at:at] = out[at : at + rng.randint(1, 64)] * rng.randint(1, 8)
        elif out:
            out[at] = rng.randrange(256)
    return bytes(out)


def retype_json(rng: random.Random) -> bytes:
    """The valid JSON request with one field, top-level or in an input, set to junk."""
    doc = _json_infer()
    target: dict[str, Any] = doc
    if rng.random() < 0.7:
        target = rng.choice(doc["inputs"])
        key = rng.choice(["name", "datatype", "shape", "data", "parameters"])
    else:
        key = rng.choice(["id", "inputs", "outputs", "parameters"])
    target[key] = rng.choice(_JUNK_VALUES)
    return json.dumps(doc).encode()


# ---------------------------------------------------------------- HTTP


@dataclass
class Tally:
    """Counts per answer class, and a few examples of each unexpected one."""

    counts: collections.Counter[str] = field(default_factory=collections.Counter)
    unexpected: collections.Counter[str] = field(default_factory=collections.Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    first: dict[str, str] = field(default_factory=dict)  # one request of each answer class

    def add(self, answer: str, legal: bool, example: Callable[[], str]) -> None:
        self.counts[answer] += 1
        if answer not in self.first:
            self.first[answer] = example()[:400]
        if not legal:
            self.unexpected[answer] += 1
            kept = self.examples.setdefault(answer, [])
            if len(kept) < 3:
                kept.append(example())


class HttpFuzzer:
    def __init__(self, host: str, port: int, rng: random.Random) -> None:
        self.host, self.port, self.rng = host, port, rng
        self.seeds = _http_seeds()
        self.client = httpx.Client(base_url=f"http://{host}:{port}", timeout=_TIMEOUT)
        self.tally = Tally()

    def close(self) -> None:
        self.client.close()

    def one(self) -> None:
        rng = self.rng
        method, path, headers, body = rng.choice(self.seeds)
        headers = dict(headers)
        framing_broken = False
        kind = rng.random()
        if kind < 0.35:
            body = mutate_bytes(rng, body)
        elif kind < 0.45:
            body, headers = retype_json(rng), {}
            method, path = "POST", "/v2/models/simple/infer"
        elif kind < 0.52:
            body, headers = rng.choice(_HOSTILE_JSON), {}
            method, path = "POST", "/v2/models/simple/infer"
        elif kind < 0.60:
            headers["content-encoding"] = rng.choice(_ENCODINGS)
            if rng.random() < 0.5:
                body = mutate_bytes(rng, gzip.compress(body))
        elif kind < 0.67:
            headers["inference-header-content-length"] = rng.choice(
                [*_IHCL, str(rng.randint(-5, len(body) + 5))]
            )
        elif kind < 0.72:
            headers["content-type"] = rng.choice(_CONTENT_TYPES)
        elif kind < 0.82:
            method = rng.choice(_METHODS)
            path = rng.choice(_PATHS).format(m=rng.choice(_MODEL_NAMES), v=rng.choice(_VERSIONS))
        elif kind < 0.86:
            # A declared size past the body limit: refused before any body is read.
            method, path = "POST", "/v2/models/simple/infer"
            return self._raw(method, path, headers, b"", length=str(rng.choice([2**40, 10**20])))
        else:
            framing_broken = True
            return self._raw_broken(method, path, headers, body)
        if rng.random() < 0.5:
            return self._httpx(method, path, headers, body)
        return self._raw(method, path, headers, body, framing_broken=framing_broken)

    def _httpx(self, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        try:
            resp = self.client.request(method, path, headers=headers, content=body)
        except (httpx.InvalidURL, httpx.LocalProtocolError, UnicodeEncodeError, ValueError):
            return self._raw(method, path, headers, body)
        except httpx.TimeoutException:
            return self._record("timeout", method, path, headers, body)
        except httpx.TransportError as exc:
            return self._record(f"closed ({type(exc).__name__})", method, path, headers, body)
        self._record(str(resp.status_code), method, path, headers, body)

    def _raw(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes,
        *,
        length: str | None = None,
        framing_broken: bool = False,
    ) -> None:
        lines = [f"{method} {path} HTTP/1.1", f"host: {self.host}", "connection: close"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        lines.append(f"content-length: {len(body) if length is None else length}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")
        self._send(head + body, method, path, headers, body, framing_broken)

    def _raw_broken(self, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        """Requests whose HTTP framing is wrong: the parser, not the app, answers these."""
        rng = self.rng
        choice = rng.randrange(7)
        if choice == 0:
            data = rng.randbytes(rng.randint(1, 200)) + b"\r\n\r\n"
        elif choice == 1:
            data = f"{method} {path} HTTP/9.9\r\nhost: x\r\n\r\n".encode()
        elif choice == 2:  # a bad chunk size
            data = f"POST {path} HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n".encode()
            data += b"zz\r\n" + body + b"\r\n0\r\n\r\n"
        elif choice == 3:  # a complete chunked body
            data = f"POST {path} HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n"
            data += "connection: close\r\n"
            data = (data + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode()
            data += f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
        elif choice == 4:  # content-length that is no number, or two that disagree
            data = f"POST {path} HTTP/1.1\r\nhost: x\r\n".encode()
            data += rng.choice([b"content-length: -1\r\n", b"content-length: 1, 2\r\n",
                                b"content-length: 0x10\r\n",
                                b"content-length: 3\r\ncontent-length: 4\r\n"])  # fmt: skip
            data += b"\r\n" + body + b"pad!"  # never fewer bytes than declared: no waiting
        elif choice == 5:  # a body longer than declared: the rest is a garbage next request
            data = f"POST {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n".encode()
            cut = rng.randint(0, len(body))
            data += f"content-length: {cut}\r\n\r\n".encode() + body
        else:  # a header line without a colon, or a huge header
            data = f"GET {path} HTTP/1.1\r\nhost: x\r\n".encode()
            data += rng.choice([b"no colon here\r\n", b"x-big: " + b"a" * 70_000 + b"\r\n"])
            data += b"\r\n"
        self._send(data, method, path, headers, body, framing_broken=True)

    def _send(
        self,
        data: bytes,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes,
        framing_broken: bool,
    ) -> None:
        try:
            with socket.create_connection((self.host, self.port), timeout=_TIMEOUT) as sock:
                try:
                    sock.sendall(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the server answered and closed before reading everything
                first = b""
                while b"\r\n" not in first:
                    chunk = sock.recv(4096)
                    if not chunk:
                        break
                    first += chunk
        except TimeoutError:
            return self._record("timeout", method, path, headers, body)
        except ConnectionRefusedError:
            return self._record("refused", method, path, headers, body)
        except ConnectionResetError:
            first = b""
        status = first.split(b" ", 2)[1].decode() if first.startswith(b"HTTP/1.") else ""
        if not status:
            answer = "closed (broken framing)" if framing_broken else "closed"
            return self._record(answer, method, path, headers, data[:300])
        self._record(status, method, path, headers, body)

    def _record(
        self, answer: str, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> None:
        legal = answer == "closed (broken framing)" or (
            answer.isdigit() and (int(answer) < 500 or int(answer) in LEGAL_HTTP_5XX)
        )
        self.tally.add(
            answer, legal, lambda: f"{method} {path[:120]} {headers} body={body[:300]!r}"
        )


# ---------------------------------------------------------------- gRPC


class GrpcFuzzer:
    def __init__(self, target: str, rng: random.Random) -> None:
        self.rng = rng
        self.channel = grpc.insecure_channel(
            target,
            options=[("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)],
        )
        self.seed = _grpc_seed()
        self.wire = self.seed.SerializeToString()
        self.tally = Tally()
        # No serializers: requests and answers are raw bytes.
        self.unary = {
            name: self.channel.unary_unary(_SERVICE + name)
            for name in ("ModelInfer", "ModelMetadata", "ModelReady", "ModelConfig")
        }
        self.stream = self.channel.stream_stream(_SERVICE + "ModelStreamInfer")

    def close(self) -> None:
        self.channel.close()

    def one(self) -> None:
        rng = self.rng
        kind = rng.random()
        if kind < 0.45:
            self._call("ModelInfer", mutate_bytes(rng, self.wire))
        elif kind < 0.85:
            self._call("ModelInfer", self._field_mutation().SerializeToString())
        elif kind < 0.92:
            name = rng.choice(["ModelMetadata", "ModelReady", "ModelConfig"])
            msg = pb.ModelMetadataRequest(
                name=rng.choice(_MODEL_NAMES), version=rng.choice(_VERSIONS)
            )
            self._call(name, mutate_bytes(rng, msg.SerializeToString()))
        else:
            self._stream()

    def _field_mutation(self) -> pb.ModelInferRequest:
        rng = self.rng
        msg = pb.ModelInferRequest()
        msg.CopyFrom(self.seed)
        for _ in range(rng.randint(1, 3)):
            op = rng.randrange(9)
            item = rng.choice(msg.inputs) if msg.inputs else msg.inputs.add(name="INPUT0")
            if op == 0:
                msg.model_name = rng.choice(_MODEL_NAMES)
            elif op == 1:
                msg.model_version = rng.choice(_VERSIONS)
            elif op == 2:
                item.datatype = rng.choice(["BYTES", "FP16", "BF16", "BOOL", "INT64", "", "x"])
            elif op == 3:
                del item.shape[:]
                item.shape.extend(
                    rng.choice(
                        [[], [-1], [0, 2**62], [2**40], [2**63 - 1], [1] * 70, [1, 16, 1], [16]]
                    )
                )
            elif op == 4 and msg.raw_input_contents:
                at = rng.randrange(len(msg.raw_input_contents))
                msg.raw_input_contents[at] = mutate_bytes(rng, msg.raw_input_contents[at])
            elif op == 5:
                del msg.raw_input_contents[rng.randrange(len(msg.raw_input_contents) + 1) :]
            elif op == 6:
                item.contents.int_contents.extend(range(rng.randint(0, 20)))
                item.contents.bytes_contents.append(b"x")
            elif op == 7:
                item.parameters["shared_memory_region"].string_param = rng.choice(["", "r", "x"])
                item.parameters["shared_memory_byte_size"].int64_param = rng.choice([-1, 2**62])
            else:
                msg.inputs.add(name=rng.choice(["INPUT0", "INPUT1", "", "extra"]), datatype="INT32")
        return msg

    def _call(self, method: str, data: bytes) -> None:
        try:
            self.unary[method](data, timeout=_TIMEOUT)
            code = "OK"
        except grpc.RpcError as exc:
            code = exc.code().name
        self.tally.add(code, code not in ILLEGAL_GRPC, lambda: f"{method} {data[:300]!r}")

    def _stream(self) -> None:
        rng = self.rng
        messages = [
            self.wire if rng.random() < 0.5 else mutate_bytes(rng, self.wire)
            for _ in range(rng.randint(1, 4))
        ]
        answers = 0
        try:
            for _ in self.stream(iter(messages), timeout=_TIMEOUT):
                answers += 1
            code = "OK"
        except grpc.RpcError as exc:
            code = exc.code().name
        # A stream answers every message it could parse; INTERNAL/UNKNOWN end it abnormally.
        self.tally.add(
            f"stream {code}",
            code not in ILLEGAL_GRPC,
            lambda: f"ModelStreamInfer {answers} answers to {[m[:80] for m in messages]!r}",
        )


# ---------------------------------------------------------------- the campaign


def check_valid_requests(http_url: str, grpc_target: str) -> None:
    """A valid infer answers correctly over both protocols (raises AssertionError if not)."""
    a, b = _simple_arrays()
    request = _json_infer()
    del request["outputs"]  # every output, as JSON
    resp = httpx.post(f"{http_url}/v2/models/simple/infer", json=request, timeout=30)
    assert resp.status_code == 200, resp.text
    outputs = {o["name"]: o for o in resp.json()["outputs"]}
    assert outputs["OUTPUT0"]["data"] == (a + b)[0].tolist(), outputs
    with grpc.insecure_channel(grpc_target) as channel:
        call = channel.unary_unary(
            _SERVICE + "ModelInfer",
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelInferResponse.FromString,
        )
        answer = call(_grpc_seed(), timeout=30)
    got = np.frombuffer(answer.raw_output_contents[0], dtype=np.int32)
    assert got.tolist() == (a + b)[0].tolist(), got


@dataclass
class CampaignResult:
    seed: int
    requests: dict[str, int]
    counts: dict[str, dict[str, int]]
    unexpected: dict[str, dict[str, int]]
    examples: dict[str, dict[str, list[str]]]
    first: dict[str, dict[str, str]]
    alive: bool
    valid_after: bool
    rss_kib_before: int
    rss_kib_after: int
    duration_s: float

    @property
    def crashes(self) -> int:
        return 0 if self.alive else 1

    @property
    def unexpected_total(self) -> int:
        return sum(sum(c.values()) for c in self.unexpected.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "requests": self.requests,
            "counts": self.counts,
            "unexpected": self.unexpected,
            "unexpected_total": self.unexpected_total,
            "crashes": self.crashes,
            "alive": self.alive,
            "valid_request_after": self.valid_after,
            "rss_kib_before": self.rss_kib_before,
            "rss_kib_after": self.rss_kib_after,
            "duration_s": round(self.duration_s, 1),
            "examples": self.examples,
            "first_of_each_answer": self.first,
        }

    def markdown(self) -> str:
        lines = ["| protocol | answer | count | unexpected |", "|---|---|---:|---:|"]
        for proto, counts in self.counts.items():
            for answer, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
                bad = self.unexpected[proto].get(answer, 0)
                lines.append(f"| {proto} | {answer} | {n} | {bad} |")
        lines += [
            "",
            f"- requests: {self.requests} (seed {self.seed}), {self.duration_s:.0f} s",
            f"- crashes: {self.crashes}; unexpected answers: {self.unexpected_total}",
            f"- valid request afterwards: {'answered correctly' if self.valid_after else 'FAILED'}",
            f"- server RSS: {self.rss_kib_before / 1024:.1f} MiB before, "
            f"{self.rss_kib_after / 1024:.1f} MiB after",
        ]
        return "\n".join(lines)


def run_campaign(
    http_url: str,
    grpc_target: str,
    pid: int,
    *,
    http_requests: int,
    grpc_requests: int,
    seed: int,
    alive: Callable[[], bool] | None = None,
    progress: Callable[[str], None] | None = None,
) -> CampaignResult:
    """Send the requests (HTTP first, then gRPC) and check the server after."""
    is_alive = alive or (lambda: Path(f"/proc/{pid}").exists())
    host, port = http_url.removeprefix("http://").rsplit(":", 1)
    check_valid_requests(http_url, grpc_target)
    rss_before = rss_kib(pid)
    started = time.monotonic()
    http = HttpFuzzer(host, int(port), random.Random(seed))
    grpc_fuzzer = GrpcFuzzer(grpc_target, random.Random(seed + 1))
    fuzzers: dict[str, Any] = {"http": http, "grpc": grpc_fuzzer}
    sent = {"http": 0, "grpc": 0}
    still_alive = True
    try:
        for proto, total in (("http", http_requests), ("grpc", grpc_requests)):
            for i in range(total):
                fuzzers[proto].one()
                sent[proto] += 1
                if i % 500 == 499:
                    if not is_alive():
                        still_alive = False
                        break
                    if progress is not None:
                        progress(f"{proto}: {i + 1}/{total}")
            if not still_alive:
                break
    finally:
        http.close()
        grpc_fuzzer.close()
    duration = time.monotonic() - started
    still_alive = still_alive and is_alive()
    valid_after = False
    rss_after = 0
    if still_alive:
        rss_after = rss_kib(pid)
        try:
            check_valid_requests(http_url, grpc_target)
            valid_after = True
        except (AssertionError, httpx.HTTPError, grpc.RpcError):
            valid_after = False
    return CampaignResult(
        seed=seed,
        requests=sent,
        counts={p: dict(f.tally.counts) for p, f in fuzzers.items()},
        unexpected={p: dict(f.tally.unexpected) for p, f in fuzzers.items()},
        examples={p: f.tally.examples for p, f in fuzzers.items()},
        first={p: f.tally.first for p, f in fuzzers.items()},
        alive=still_alive,
        valid_after=valid_after,
        rss_kib_before=rss_before,
        rss_kib_after=rss_after,
        duration_s=duration,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz.campaign", description=__doc__)
    parser.add_argument("--requests", type=int, default=100_000, help="split half and half")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--http", help="target a running server: http://host:port")
    parser.add_argument("--grpc", help="its gRPC host:port")
    parser.add_argument("--pid", type=int, help="its process id (for RSS and liveness)")
    parser.add_argument("--json", type=Path, help="also write the JSON summary here")
    args = parser.parse_args(argv)
    server = None
    if args.http:
        if not (args.grpc and args.pid):
            parser.error("--http needs --grpc and --pid")
        http_url, grpc_target, pid = args.http, args.grpc, args.pid
    else:
        from serving.examples import write_repository
        from tests.integration.server_process import ServerProcess

        work = Path(tempfile.mkdtemp(prefix="sluice-campaign-"))
        write_repository(work / "models", MODELS)
        server = ServerProcess(work / "models", log_dir=work)
        http_url, grpc_target, pid = server.http_url, server.grpc_url, server.proc.pid
        print(f"server log: {server.log_path}", file=sys.stderr)
    half = args.requests // 2
    try:
        result = run_campaign(
            http_url,
            grpc_target,
            pid,
            http_requests=args.requests - half,
            grpc_requests=half,
            seed=args.seed,
            progress=lambda line: print(line, file=sys.stderr, flush=True),
        )
    finally:
        if server is not None:
            server.stop()
    summary = result.to_json()
    summary["date"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    summary["command"] = "python -m tests.fuzz.campaign " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    print(json.dumps(summary, indent=2))
    print(result.markdown())
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    ok = result.alive and result.valid_after and result.unexpected_total == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
