# Included by _native.pyx (one extension module): JSON text <-> arrays.
#
# The request decoder hands the bytes of each input's "data" array here instead of a list of
# Python objects, and the response encoder takes the JSON text of each output from here. The
# scanner accepts exactly what ``json.loads`` followed by ``json_to_array`` accepts and gives
# the same array; whatever it is not sure of (escapes, a deep nesting, a number needing more
# than the fast path, anything malformed) makes it answer None, and the caller then decodes
# the whole document the pure-Python way, which names the error.
#
# The parts, in the order they build on each other:
#   _json_scan.pxi         finding each input's "data" array in the request document
#   _decimal_double.pxi    digits x 10**exponent -> the correctly rounded double
#   _json_number.pxi       one number token -> its double, as ``float(text)`` gives it
#   _json_read.pxi         a "data" array's text -> the array's buffer
#   _json_write.pxi        an array's buffer -> its "data" text

from cpython.object cimport PyObject
from libc.stdlib cimport free, malloc, realloc, strtod

cdef extern from "Python.h":
    double PyOS_string_to_double(const char* s, char** endptr, PyObject* overflow_exception) except? -1.0
    char* PyOS_double_to_string(double val, char format_code, int precision, int flags, int* ptype) except NULL
    void PyMem_Free(void* p)
    int Py_DTSF_ADD_DOT_0

import json as _json

cdef double _NAN = float("nan")
cdef double _INF = float("inf")


cdef inline bint memcmp_ascii(const unsigned char* a, const char* b, Py_ssize_t size) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(size):
        if a[i] != <unsigned char>b[i]:
            return False
    return True


include "_json_scan.pxi"
include "_decimal_double.pxi"
include "_json_number.pxi"
include "_json_read.pxi"
include "_json_write.pxi"
