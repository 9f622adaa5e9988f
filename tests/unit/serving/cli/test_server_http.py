"""The one rule for a server's answer other than 200, shared by models, infer, traffic and
rollout."""

from __future__ import annotations

import httpx
import pytest

from serving.cli._errors import CommandError
from serving.cli._server_http import checked


def test_a_200_is_handed_back() -> None:
    response = httpx.Response(200, json={"ready": True})
    assert checked(response) is response


def test_the_servers_error_is_the_message() -> None:
    with pytest.raises(CommandError, match=r"^server answered 404: unknown model 'x'$"):
        checked(httpx.Response(404, json={"error": "unknown model 'x'"}))


def test_an_answer_without_json_error_shows_its_text_or_status() -> None:
    with pytest.raises(CommandError, match=r"^server answered 502: Bad Gateway$"):
        checked(httpx.Response(502, text="  Bad Gateway\n"))
    with pytest.raises(CommandError, match=r"^server answered 503: HTTP 503$"):
        checked(httpx.Response(503))
