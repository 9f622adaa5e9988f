"""The one error the model tools raise: a refusal with the figures that caused it."""

from __future__ import annotations

from serving.errors import ErrorCode, SluiceError

__all__ = ["ToolError"]


class ToolError(SluiceError):
    """``convert``, ``optimize`` or ``profile`` refused; the message says why, with figures.

    Nothing was written when this is raised: the commands build their result aside and
    move it into the repository only once every check passed. A ``SluiceError``, so the
    ``sluice`` command reports it as one line and a non-zero exit like any other.
    """

    code = ErrorCode.INVALID_ARGUMENT
