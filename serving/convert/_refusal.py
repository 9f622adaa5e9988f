"""The one error the model tools raise: a refusal with the figures that caused it."""

from __future__ import annotations

__all__ = ["ToolError"]


class ToolError(Exception):
    """``convert``, ``optimize`` or ``profile`` refused; the message says why, with figures.

    Nothing was written when this is raised: the commands build their result aside and
    move it into the repository only once every check passed.
    """
