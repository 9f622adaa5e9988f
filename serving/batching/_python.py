"""The pure-Python assembly twin: numpy slicing, the reference for the Cython twin."""

from __future__ import annotations

from serving.batching._common import assemble_numpy as assemble
from serving.batching._common import scatter_numpy as scatter

__all__ = ["assemble", "scatter"]
