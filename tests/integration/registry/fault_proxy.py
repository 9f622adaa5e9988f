"""A loopback HTTP proxy in front of MLflow that misbehaves on artifact downloads.

Faults (applied to GETs of artifact files, the first ``times`` requests of each):
``drop`` sends half the body and closes the connection; ``stall`` sends half and then
goes silent; ``ignore-range`` drops the first request and answers later ``Range``
requests with 200 and the whole file; ``flip`` inverts one byte in the middle;
``slow`` dribbles the body in small pieces; ``none`` passes everything through.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"}


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.mode = "none"
        self.times = 1
        self.stall_secs = 5.0
        self.seen: Counter[str] = Counter()
        self.range_headers: list[str] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                proxy._handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.uri = f"mlflow+{self.url}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def set(self, mode: str, times: int = 1) -> None:
        self.mode, self.times = mode, times
        self.seen.clear()
        self.range_headers.clear()

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        headers = {k: v for k, v in h.headers.items() if k.lower() not in {"host", "connection"}}
        is_file = h.path.startswith("/api/2.0/mlflow-artifacts/artifacts/") and not h.path.endswith(
            "sluice-manifest.json"
        )
        if is_file and "range" in {k.lower() for k in headers}:
            self.range_headers.append(h.headers["Range"])
        count = 0
        if is_file:
            self.seen[h.path] += 1
            count = self.seen[h.path]
        faulty = is_file and count <= self.times and self.mode != "none"
        if is_file and self.mode == "ignore-range" and count > 1:
            headers = {k: v for k, v in headers.items() if k.lower() not in {"range", "if-range"}}
        with httpx.Client(timeout=30) as client:
            response = client.get(self.upstream + h.path, headers=headers)
        body = response.content
        if faulty and self.mode == "flip":
            middle = len(body) // 2
            body = body[:middle] + bytes([body[middle] ^ 0xFF]) + body[middle + 1 :]
        h.send_response(response.status_code)
        for key, value in response.headers.items():
            if key.lower() not in _HOP:
                h.send_header(key, value)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if faulty and self.mode in ("drop", "stall", "ignore-range"):
            h.wfile.write(body[: len(body) // 2])
            h.wfile.flush()
            if self.mode == "stall":
                time.sleep(self.stall_secs)
            h.close_connection = True
            return
        if self.mode == "slow" and is_file:
            for i in range(0, len(body), 4096):
                h.wfile.write(body[i : i + 4096])
                h.wfile.flush()
                time.sleep(0.02)
            return
        h.wfile.write(body)
