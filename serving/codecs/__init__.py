"""Tensor codecs: JSON, binary and BYTES wire forms <-> numpy arrays.

The one place that picks a twin: the Cython ``_native`` module unless
``SLUICE_NO_EXTENSIONS=1`` is set or it was not built, else the pure-Python
``_python`` module. Both expose the same functions and raise the same messages.
"""

from __future__ import annotations

from serving._twins import select_twin

_impl, IMPLEMENTATION = select_twin(__name__)

decode_bytes = _impl.decode_bytes
encode_bytes = _impl.encode_bytes
json_to_array = _impl.json_to_array
array_to_json = _impl.array_to_json
binary_to_array = _impl.binary_to_array
array_to_binary = _impl.array_to_binary
split_json_data = _impl.split_json_data
json_text_to_array = _impl.json_text_to_array
array_to_json_text = _impl.array_to_json_text

__all__ = [
    "IMPLEMENTATION",
    "array_to_binary",
    "array_to_json",
    "array_to_json_text",
    "binary_to_array",
    "decode_bytes",
    "encode_bytes",
    "json_text_to_array",
    "json_to_array",
    "split_json_data",
]
