# cython: language_level=3, boundscheck=False, wraparound=False
"""The Cython assembly twin: the copy loops of ``serving/batching/_python.py`` in C.

Same functions, same signatures, same messages (spelled in ``_common``). Plain
arrays go through the buffer protocol and ``memcpy``, one run per contiguous
stretch of a row; object (BYTES) arrays take the shared numpy path because their
elements are references.
"""

from cpython.buffer cimport PyBUF_C_CONTIGUOUS, PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer
from libc.string cimport memcpy, memset

import numpy as np

from serving.batching import _common as c

__all__ = ["assemble", "scatter"]

cdef enum:
    MAX_DIMS = 32

cdef object _OBJECT = np.dtype(object)


cdef inline bint _all_zero(const char* p, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        if p[i] != 0:
            return False
    return True


cdef void _fill(char* dst, Py_ssize_t size, const char* pattern, Py_ssize_t itemsize) noexcept nogil:
    """Repeat one element's bytes over ``size`` bytes, doubling the copied stretch."""
    cdef Py_ssize_t done
    if size <= 0:
        return
    if _all_zero(pattern, itemsize):
        memset(dst, 0, size)
        return
    memcpy(dst, pattern, itemsize)
    done = itemsize
    while done < size:
        if done > size - done:
            memcpy(dst + done, dst, size - done)
            done = size
        else:
            memcpy(dst + done, dst, done)
            done *= 2


cdef void _copy_runs(
    char* big, char* small, Py_ssize_t rows, int ndim,
    const Py_ssize_t* small_dims, const Py_ssize_t* big_dims, Py_ssize_t itemsize, bint into_big,
) noexcept nogil:
    """Copy between compact rows of ``small_dims`` and padded rows of ``big_dims``.

    Below the innermost axis where the two differ the rows agree, so each copy is
    one contiguous run of ``small_dims[m] * prod(big_dims[m+1:])`` elements.
    """
    cdef Py_ssize_t stride[MAX_DIMS]
    cdef Py_ssize_t idx[MAX_DIMS]
    cdef Py_ssize_t big_row, run, offset, soff = 0, r = 0
    cdef int k, m = ndim - 1
    if ndim <= 0:
        return
    while m >= 0 and small_dims[m] == big_dims[m]:
        m -= 1
    stride[ndim - 1] = itemsize
    for k in range(ndim - 2, -1, -1):
        stride[k] = stride[k + 1] * big_dims[k + 1]
    big_row = stride[0] * big_dims[0]
    run = small_dims[m] * stride[m]
    for k in range(m):
        idx[k] = 0
        if small_dims[k] == 0:
            return
    if run == 0:
        return
    while r < rows:
        offset = r * big_row
        for k in range(m):
            offset += idx[k] * stride[k]
        if into_big:
            memcpy(big + offset, small + soff, run)
        else:
            memcpy(small + soff, big + offset, run)
        soff += run
        k = m - 1
        while k >= 0:
            idx[k] += 1
            if idx[k] < small_dims[k]:
                break
            idx[k] = 0
            k -= 1
        if k < 0:
            r += 1


cdef inline object _pad_bytes(object pad_value, object dtype):
    return np.asarray(pad_value, dtype=dtype).tobytes()


def assemble(parts, out, pad_value=0):
    """Copy each part's rows into ``out`` one after another, padding smaller rows."""
    cdef Py_buffer dst
    cdef Py_buffer src
    cdef Py_ssize_t total = 0, offset = 0, row_bytes, rows, index = 0
    cdef Py_ssize_t out_rows
    cdef int ndim, k
    cdef bint same
    cdef bytes pattern = None
    dtype = out.dtype
    if dtype is _OBJECT:
        c.assemble_numpy(parts, out, pad_value)
        return
    PyObject_GetBuffer(out, &dst, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE)
    try:
        ndim = dst.ndim - 1
        if ndim < 0 or ndim >= MAX_DIMS:
            raise c.bad_rank(0, out.shape, out.shape)
        out_rows = dst.shape[0]
        row_bytes = dst.itemsize
        for k in range(ndim):
            row_bytes *= dst.shape[k + 1]
        for part in parts:
            total += part.shape[0]
        if total != out_rows:
            raise c.bad_rows(total, out_rows)
        for part in parts:
            part_dtype = part.dtype
            if part_dtype is not dtype and part_dtype != dtype:
                raise c.bad_dtype(index, part_dtype, dtype)
            try:
                PyObject_GetBuffer(part, &src, PyBUF_C_CONTIGUOUS)
            except (BufferError, ValueError):
                part = np.ascontiguousarray(part)
                PyObject_GetBuffer(part, &src, PyBUF_C_CONTIGUOUS)
            try:
                if src.ndim != dst.ndim:
                    raise c.bad_rank(index, part.shape, out.shape[1:])
                rows = src.shape[0]
                same = True
                for k in range(1, dst.ndim):
                    if src.shape[k] > dst.shape[k]:
                        raise c.bad_rank(index, part.shape, out.shape[1:])
                    if src.shape[k] != dst.shape[k]:
                        same = False
                if same:
                    memcpy(<char*>dst.buf + offset * row_bytes, src.buf, rows * row_bytes)
                else:
                    if pattern is None:
                        pattern = _pad_bytes(pad_value, dtype)
                    _fill(<char*>dst.buf + offset * row_bytes, rows * row_bytes,
                          <const char*>pattern, dst.itemsize)
                    _copy_runs(<char*>dst.buf + offset * row_bytes, <char*>src.buf, rows, ndim,
                               src.shape + 1, dst.shape + 1, dst.itemsize, True)
                offset += rows
            finally:
                PyBuffer_Release(&src)
            index += 1
    finally:
        PyBuffer_Release(&dst)


def scatter(batch, rows, shapes):
    """Split ``batch`` into fresh arrays of ``rows[i]`` rows, cut to ``shapes[i]`` per row."""
    cdef Py_buffer src
    cdef Py_buffer dst
    cdef Py_ssize_t total = 0, offset = 0, row_bytes, count, index = 0
    cdef Py_ssize_t small[MAX_DIMS]
    cdef int ndim, k
    cdef bint same
    dtype = batch.dtype
    if dtype is _OBJECT:
        return c.scatter_numpy(batch, rows, shapes)
    try:
        PyObject_GetBuffer(batch, &src, PyBUF_C_CONTIGUOUS)
    except (BufferError, ValueError):
        batch = np.ascontiguousarray(batch)
        PyObject_GetBuffer(batch, &src, PyBUF_C_CONTIGUOUS)
    result = []
    try:
        ndim = src.ndim - 1
        if ndim < 0 or ndim >= MAX_DIMS:
            raise c.bad_rank(0, batch.shape, batch.shape)
        row_shape = batch.shape[1:]
        row_bytes = src.itemsize
        for k in range(ndim):
            row_bytes *= src.shape[k + 1]
        for count in rows:
            total += count
        if total > src.shape[0]:
            raise c.bad_rows(total, src.shape[0])
        for count, shape in zip(rows, shapes, strict=True):
            same = shape is None
            if not same:
                shape = tuple(shape)
                same = shape == row_shape
            if same:
                piece = np.empty((count, *row_shape), dtype=dtype)
                PyObject_GetBuffer(piece, &dst, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE)
                memcpy(dst.buf, <char*>src.buf + offset * row_bytes, count * row_bytes)
                PyBuffer_Release(&dst)
            else:
                if len(shape) != ndim:
                    raise c.too_large(index, shape, row_shape)
                for k in range(ndim):
                    small[k] = shape[k]
                    if small[k] > src.shape[k + 1] or small[k] < 0:
                        raise c.too_large(index, shape, row_shape)
                piece = np.empty((count, *shape), dtype=dtype)
                PyObject_GetBuffer(piece, &dst, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE)
                _copy_runs(<char*>src.buf + offset * row_bytes, <char*>dst.buf, count, ndim,
                           small, src.shape + 1, src.itemsize, False)
                PyBuffer_Release(&dst)
            result.append(piece)
            offset += count
            index += 1
    finally:
        PyBuffer_Release(&src)
    return result
