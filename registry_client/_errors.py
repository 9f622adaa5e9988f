"""Errors of the registry client, each with the exit code ``sluice pull`` reports for it.

Scripts branch on the exit code, so every failure a user can act on differently has
its own class: a reference that names nothing, bytes that fail verification, a
network that keeps failing, credentials the registry refuses, a full disk.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "ConflictError",
    "InsufficientSpace",
    "InvalidReference",
    "NetworkError",
    "NotFound",
    "RegistryError",
    "UnsupportedSource",
    "VerificationError",
]


class RegistryError(Exception):
    """Base class; ``exit_code`` is what ``sluice pull`` and ``sluice registry`` exit with."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidReference(RegistryError):
    """A model reference or registry URI that cannot be parsed."""

    exit_code = 2


class NotFound(RegistryError):
    """No such registered model, version or alias (HTTP 404 included)."""

    exit_code = 3


class VerificationError(RegistryError):
    """A file's size or digest differs from what the registry recorded; nothing was installed."""

    exit_code = 4


class NetworkError(RegistryError):
    """The registry stayed unreachable, kept failing or timed out after every retry."""

    exit_code = 5


class AuthenticationError(RegistryError):
    """The registry refused the credentials (HTTP 401 or 403); retrying cannot help."""

    exit_code = 6


class InsufficientSpace(RegistryError):
    """The model repository's file system lacks the room for the files to download."""

    exit_code = 7


class ConflictError(RegistryError):
    """The request contradicts what exists: a pinned version to delete, a foreign version dir."""

    exit_code = 8


class UnsupportedSource(RegistryError):
    """A version whose files live where Sluice cannot fetch them (not behind the artifact proxy)."""

    exit_code = 9
