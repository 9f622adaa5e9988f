"""Batch assembly and scatter, from the one place that picks a twin.

The Cython ``_native`` module unless ``SLUICE_NO_EXTENSIONS=1`` is set or it was
not built, else the pure-Python ``_python`` module. Both expose:

- ``assemble(parts, out, pad_value)``: copy the requests' arrays into ``out`` (a
  C-contiguous batch buffer) one after another; rows smaller than ``out``'s rows
  are padded with ``pad_value``.
- ``scatter(batch, rows, shapes)``: split an output into one freshly allocated
  array per request (never a view of the batch), each cut to ``shapes[i]`` per row
  (``None``: the whole row).
"""

from __future__ import annotations

import os

if os.environ.get("SLUICE_NO_EXTENSIONS") == "1":
    from serving.batching import _python as _impl

    IMPLEMENTATION = "python"
else:
    try:
        from serving.batching import _native as _impl  # type: ignore[attr-defined, no-redef]

        IMPLEMENTATION = "native"
    except ImportError:
        from serving.batching import _python as _impl  # type: ignore[no-redef]

        IMPLEMENTATION = "python"

assemble = _impl.assemble
scatter = _impl.scatter

__all__ = ["IMPLEMENTATION", "assemble", "scatter"]
