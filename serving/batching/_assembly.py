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

from serving._twins import select_twin

_impl, IMPLEMENTATION = select_twin("serving.batching")

assemble = _impl.assemble
scatter = _impl.scatter

__all__ = ["IMPLEMENTATION", "assemble", "scatter"]
