"""The HTTP/REST front end: wire codecs, the error table and the starlette app."""

__all__ = ["create_app"]

from serving.http.app import create_app
