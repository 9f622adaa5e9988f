# cython: language_level=3, boundscheck=False, wraparound=False
"""The Cython codec twin: the buffer and loop work of ``serving/codecs/_python.py``.

Same functions, same signatures, same messages (all spelled in ``_common``).
Bounds checks are off at compile time, so every index below is checked by hand.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.float cimport PyFloat_AS_DOUBLE
from libc.math cimport fabs, isfinite
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.string cimport memcpy

import numpy as np

from serving.codecs import _common as c
from serving.codecs._common import array_to_json
from serving.errors import InvalidArgument

__all__ = [
    "decode_bytes",
    "encode_bytes",
    "json_to_array",
    "array_to_json",
    "binary_to_array",
    "array_to_binary",
    "split_json_data",
    "json_text_to_array",
    "array_to_json_text",
]


cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object text, Py_ssize_t* size) except NULL
    long long PyLong_AsLongLongAndOverflow(object value, int* overflow) except? -1
    unsigned long long PyLong_AsUnsignedLongLong(object value) except? <unsigned long long>-1
    double PyLong_AsDouble(object value) except? -1.0


cdef inline uint32_t _read_u32(const unsigned char* p) noexcept nogil:
    return (<uint32_t>p[0]) | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24)


cdef inline void _write_u32(char* p, uint32_t v) noexcept nogil:
    p[0] = <char>(v & 0xFF)
    p[1] = <char>((v >> 8) & 0xFF)
    p[2] = <char>((v >> 16) & 0xFF)
    p[3] = <char>((v >> 24) & 0xFF)


def decode_bytes(buf, count, *, str name=""):
    """Split length-prefixed BYTES wire data into an object array of ``count`` bytes."""
    cdef const unsigned char[::1] view = memoryview(buf).cast("B")
    cdef Py_ssize_t total = view.shape[0]
    cdef Py_ssize_t offset = 0
    cdef Py_ssize_t index, left
    cdef uint32_t length
    cdef const unsigned char* p
    cdef Py_ssize_t n = c.bytes_cells(count, total)
    out = np.empty(n, dtype=object)
    cdef object[::1] cells = out
    for index in range(n):
        left = total - offset
        if left < 4:
            raise c.truncated_prefix(index, offset, left, name)
        p = &view[offset]
        length = _read_u32(p)
        if <Py_ssize_t>length > left - 4:
            raise c.length_overrun(index, offset, length, left - 4, name)
        cells[index] = PyBytes_FromStringAndSize(<const char*>(p + 4), length)
        offset += 4 + <Py_ssize_t>length
    if offset != total:
        raise c.leftover_bytes(count, offset, total, name)
    return out


def encode_bytes(arr):
    """Join elements as length-prefixed BYTES wire data (str as UTF-8, others via ``str``)."""
    cdef list items = np.asarray(arr).reshape(-1).tolist()
    cdef Py_ssize_t n = len(items)
    cdef Py_ssize_t index, size
    cdef Py_ssize_t total = 0
    cdef object x
    for index in range(n):
        x = items[index]
        if isinstance(x, bytes):
            size = PyBytes_GET_SIZE(x)
        elif isinstance(x, str):
            PyUnicode_AsUTF8AndSize(x, &size)
        else:
            x = str(x).encode("utf-8")
            items[index] = x
            size = PyBytes_GET_SIZE(x)
        if <unsigned long long>size > c.MAX_BYTES_ELEMENT:
            raise c.element_too_long(index, size)
        total += 4 + size
    out = PyBytes_FromStringAndSize(NULL, total)
    cdef char* dst = PyBytes_AS_STRING(out)
    cdef const char* src
    for index in range(n):
        x = items[index]
        if isinstance(x, bytes):
            src = PyBytes_AS_STRING(x)
            size = PyBytes_GET_SIZE(x)
        else:
            src = PyUnicode_AsUTF8AndSize(x, &size)
        _write_u32(dst, <uint32_t>size)
        if size:
            memcpy(dst + 4, src, size)
        dst += 4 + size
    return out


cdef list _flatten(data, str name):
    """Row-major leaves of rectangular nested lists, walking one depth at a time."""
    if not isinstance(data, list):
        raise c.not_a_list(data, name)
    cdef list level = data
    cdef list joined
    cdef Py_ssize_t depth = 0
    cdef Py_ssize_t width, i, n
    cdef object x
    while level:
        n = len(level)
        if not isinstance(level[0], list):
            for i in range(n):
                if isinstance(level[i], list):
                    raise c.mixed_nesting(depth, name)
            return level
        width = len(<list>level[0])
        joined = []
        for i in range(n):
            x = level[i]
            if not isinstance(x, list):
                raise c.mixed_nesting(depth, name)
            if len(<list>x) != width:
                raise c.ragged_nesting(depth + 1, width, len(<list>x), name)
            joined.extend(<list>x)
        level = joined
        depth += 1
    return level


def json_to_array(data, datatype, shape, *, str name=""):
    """Check and convert JSON (or msgpack array) ``data`` into an array of ``shape``."""
    c.reject_non_json(datatype, name)
    count = c.checked_count(shape, name)
    cdef list flat = _flatten(data, name)
    cdef Py_ssize_t n = len(flat)
    if n != count:
        raise c.count_mismatch(shape, n, name)
    kind = datatype.name
    if kind == "BOOL":
        out = _bools(flat, datatype, name)
    elif kind == "BYTES":
        out = _strings(flat, datatype, name)
    elif kind == "UINT64":
        out = _uint64s(flat, datatype, name)
    elif kind in c.INT_RANGES:
        out = _ints(flat, datatype, name).astype(datatype.numpy)
    else:
        out = _floats(flat, datatype, name)
    return out.reshape(shape)


cdef object _bools(list flat, datatype, str name):
    cdef Py_ssize_t n = len(flat)
    cdef Py_ssize_t i
    out = np.empty(n, dtype=np.bool_)
    cdef unsigned char[::1] cells = out.view(np.uint8)
    cdef object x
    for i in range(n):
        x = flat[i]
        if x is True:
            cells[i] = 1
        elif x is False:
            cells[i] = 0
        else:
            raise c.bad_element(datatype, i, x, name)
    return out


cdef object _strings(list flat, datatype, str name):
    cdef Py_ssize_t n = len(flat)
    cdef Py_ssize_t i
    out = np.empty(n, dtype=object)
    cdef object[::1] cells = out
    cdef object x
    for i in range(n):
        x = flat[i]
        if isinstance(x, str):
            cells[i] = (<str>x).encode("utf-8")
        elif isinstance(x, bytes):
            cells[i] = x
        else:
            raise c.bad_element(datatype, i, x, name)
    return out


cdef inline bint _is_int(object x):
    return type(x) is int or (isinstance(x, int) and not isinstance(x, bool))


cdef object _ints(list flat, datatype, str name):
    """Signed and narrow unsigned integers, range-checked into an int64 buffer."""
    low, high = c.INT_RANGES[datatype.name]
    cdef long long lo = low
    cdef long long hi = high
    cdef Py_ssize_t n = len(flat)
    cdef Py_ssize_t i
    cdef int overflow
    cdef long long v
    out = np.empty(n, dtype=np.int64)
    cdef int64_t[::1] cells = out
    cdef object x
    for i in range(n):
        x = flat[i]
        if not _is_int(x):
            raise c.bad_element(datatype, i, x, name)
        v = PyLong_AsLongLongAndOverflow(x, &overflow)
        if overflow or v < lo or v > hi:
            raise c.out_of_range(datatype, i, x, name)
        cells[i] = v
    return out


cdef object _uint64s(list flat, datatype, str name):
    cdef Py_ssize_t n = len(flat)
    cdef Py_ssize_t i
    cdef int overflow
    cdef long long v
    out = np.empty(n, dtype=np.uint64)
    cdef uint64_t[::1] cells = out
    cdef object x
    for i in range(n):
        x = flat[i]
        if not _is_int(x):
            raise c.bad_element(datatype, i, x, name)
        v = PyLong_AsLongLongAndOverflow(x, &overflow)
        if overflow == 0:
            if v < 0:
                raise c.out_of_range(datatype, i, x, name)
            cells[i] = <uint64_t>v
        elif overflow < 0 or x.bit_length() > 64:
            raise c.out_of_range(datatype, i, x, name)
        else:
            cells[i] = PyLong_AsUnsignedLongLong(x)
    return out


cdef object _floats(list flat, datatype, str name):
    cdef bint narrow = datatype.name == "FP32"
    cdef double limit = c.FP32_MAX
    cdef Py_ssize_t n = len(flat)
    cdef Py_ssize_t i
    cdef double d
    out = np.empty(n, dtype=np.float32 if narrow else np.float64)
    cdef float[::1] singles
    cdef double[::1] doubles
    if narrow:
        singles = out
    else:
        doubles = out
    cdef object x
    for i in range(n):
        x = flat[i]
        if type(x) is float:
            d = PyFloat_AS_DOUBLE(x)
        elif _is_int(x):
            if (<object>x).bit_length() > 1024:
                raise c.out_of_range(datatype, i, x, name)
            try:
                d = PyLong_AsDouble(x)
            except OverflowError:
                raise c.out_of_range(datatype, i, x, name) from None
        elif isinstance(x, float):
            d = float(x)
        else:
            raise c.bad_element(datatype, i, x, name)
        if narrow:
            if isfinite(d) and fabs(d) > limit:
                raise c.out_of_range(datatype, i, x, name)
            singles[i] = <float>d
        else:
            doubles[i] = d
    return out


def binary_to_array(buf, datatype, shape, str name):
    """Tensor bytes (binary extension, raw body or msgpack bin) as an array of ``shape``."""
    if datatype.is_bytes:
        return decode_bytes(buf, c.checked_count(shape, name), name=name).reshape(shape)
    return c.fixed_binary_to_array(buf, datatype, shape, name)


def array_to_binary(arr, datatype):
    """Tensor bytes for the binary extension or msgpack bin."""
    if datatype.is_bytes:
        return encode_bytes(arr)
    return c.array_to_binary(arr, datatype)



include "_json_text.pxi"
