"""Where MQTT is blocked: the desired document by HTTP polling with If-None-Match."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.integration.edge.conftest import Agents, wait_for
from tests.integration.edge.test_rollout import answer, doc


class DesiredServer:
    """Serves one desired document with an ETag; records each request's If-None-Match."""

    def __init__(self) -> None:
        self.document: dict[str, Any] = {}
        self.seen: list[str | None] = []
        self.answers: list[int] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                etag = f'"{server.document["version"]}"'
                server.seen.append(self.headers.get("If-None-Match"))
                if self.headers.get("If-None-Match") == etag:
                    self.send_response(304)
                    server.answers.append(304)
                    self.send_header("Sluice-Poll-Interval", "1")
                    self.end_headers()
                    return
                body = json.dumps(server.document).encode()
                self.send_response(200)
                server.answers.append(200)
                self.send_header("ETag", etag)
                self.send_header("Sluice-Poll-Interval", "1")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/devices/dev-p/desired"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def desired_server() -> Iterator[DesiredServer]:
    s = DesiredServer()
    yield s
    s.httpd.shutdown()


def test_polling_follows_the_document_and_asks_with_its_etag(agents: Agents, desired_server: DesiredServer) -> None:  # fmt: skip
    desired_server.document = doc(1, "models:/mlp/1")
    agent = agents.start("dev-p", mqtt__url=None, poll__url=desired_server.url, poll__interval_secs=600.0)  # fmt: skip
    wait_for(lambda: answer(agent.http_port)[:2] == (200, "1"), what="v1 serving")
    wait_for(lambda: 304 in desired_server.answers, what="a conditional poll")  # 1 s, not 600
    assert desired_server.seen[0] is None and desired_server.seen[-1] == '"1"'
    desired_server.document = doc(2, "models:/mlp/2")
    wait_for(lambda: answer(agent.http_port)[:2] == (200, "2"), what="v2 serving")
