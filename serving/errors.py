"""Sluice's own error codes.

Front ends map these codes to wire statuses in exactly one table each
(``serving/http/errors.py``, and later the gRPC front end); this module imports
no web or gRPC library so the core stays protocol-neutral.
"""

from __future__ import annotations

import enum

__all__ = [
    "ErrorCode",
    "InternalError",
    "InvalidArgument",
    "NotFound",
    "Overloaded",
    "PayloadTooLarge",
    "PermissionDenied",
    "RequestTimeout",
    "SluiceError",
    "Unauthenticated",
    "Unavailable",
    "Unsupported",
]


class ErrorCode(enum.Enum):
    INVALID_ARGUMENT = "invalid_argument"
    NOT_FOUND = "not_found"
    UNAVAILABLE = "unavailable"
    UNSUPPORTED = "unsupported"
    INTERNAL = "internal"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    UNAUTHENTICATED = "unauthenticated"  # no credentials, or ones that do not verify
    PERMISSION_DENIED = "permission_denied"  # verified, but without the scope the call needs
    REQUEST_TIMEOUT = "request_timeout"  # the client was too slow sending its request


class SluiceError(Exception):
    """An error a client should see, with a precise message."""

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(SluiceError):
    code = ErrorCode.INVALID_ARGUMENT


class NotFound(SluiceError):
    code = ErrorCode.NOT_FOUND


class Unavailable(SluiceError):
    code = ErrorCode.UNAVAILABLE


class Unsupported(SluiceError):
    code = ErrorCode.UNSUPPORTED


class InternalError(SluiceError):
    code = ErrorCode.INTERNAL


class PayloadTooLarge(SluiceError):
    code = ErrorCode.PAYLOAD_TOO_LARGE


class Unauthenticated(SluiceError):
    code = ErrorCode.UNAUTHENTICATED


class PermissionDenied(SluiceError):
    code = ErrorCode.PERMISSION_DENIED


class RequestTimeout(SluiceError):
    code = ErrorCode.REQUEST_TIMEOUT


class Overloaded(Unavailable):
    """The server is too busy to queue this request; retry after ``retry_after`` seconds.

    A subclass of ``Unavailable`` (same code), so each front end keeps one table
    and only adds a retry hint (HTTP ``Retry-After``) when the error carries one.
    """

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after
