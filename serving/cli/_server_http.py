"""The commands that talk to a running server over HTTP: where it is by default, and one
rule for an answer other than 200 (``server answered STATUS: the server's error``)."""

from __future__ import annotations

from typing import Any

from serving.cli._errors import CommandError

__all__ = ["DEFAULT_URL", "checked", "request_json"]

DEFAULT_URL = "http://127.0.0.1:8000"


def checked(response: Any) -> Any:
    """``response`` when it is a 200; else a ``CommandError`` with the server's error."""
    if response.status_code != 200:
        try:
            message = response.json()["error"]
        except Exception:
            message = response.text.strip() or f"HTTP {response.status_code}"
        raise CommandError(f"server answered {response.status_code}: {message}")
    return response


def request_json(method: str, url: str, path: str, body: Any = None) -> dict[str, Any]:
    """One JSON request to the server at ``url`` and its checked JSON answer."""
    import httpx

    with httpx.Client(base_url=url, timeout=30.0) as client:
        response = client.request(method, path, json=body)
    result: dict[str, Any] = checked(response).json()
    return result
