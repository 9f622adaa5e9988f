"""The names ``sluice optimize`` accepts, importable without ONNX, protobuf or numpy, so the
command's parser can offer them as choices while it is being built."""

from __future__ import annotations

__all__ = ["LEVELS", "QUANTIZE_MODES"]

LEVELS = ("basic", "extended", "all")
QUANTIZE_MODES = ("dynamic", "static")
