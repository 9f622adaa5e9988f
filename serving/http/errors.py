"""The HTTP front end's one table from Sluice error codes to HTTP statuses."""

from __future__ import annotations

from serving.errors import ErrorCode

__all__ = ["HTTP_STATUS", "status_for"]

HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.INVALID_ARGUMENT: 400,
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.PERMISSION_DENIED: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.REQUEST_TIMEOUT: 408,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.INTERNAL: 500,
    ErrorCode.UNSUPPORTED: 501,
    ErrorCode.UNAVAILABLE: 503,
}


def status_for(code: ErrorCode) -> int:
    return HTTP_STATUS[code]
