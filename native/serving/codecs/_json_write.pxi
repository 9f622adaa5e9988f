# Part of _json_text.pxi: an array's buffer -> its "data" text.


cdef object _quote_ascii = _json.encoder.encode_basestring_ascii


cdef struct _Text:
    char* data
    Py_ssize_t size
    Py_ssize_t room


cdef int _reserve(_Text* text, Py_ssize_t more) except -1:
    cdef Py_ssize_t room
    cdef char* grown
    if text.size + more <= text.room:
        return 0
    room = max(text.room * 2, text.size + more)
    grown = <char*>realloc(text.data, room)
    if grown == NULL:
        raise MemoryError()
    text.data = grown
    text.room = room
    return 0


cdef inline int _put(_Text* text, const char* src, Py_ssize_t size) except -1:
    _reserve(text, size)
    memcpy(text.data + text.size, src, size)
    text.size += size
    return 0


cdef inline int _put_unsigned(_Text* text, uint64_t v, bint negative) except -1:
    cdef char[24] digits
    cdef Py_ssize_t at = 24
    while True:
        at -= 1
        digits[at] = <char>(48 + v % 10)
        v //= 10
        if v == 0:
            break
    if negative:
        at -= 1
        digits[at] = 45
    return _put(text, digits + at, 24 - at)


cdef int _put_double(_Text* text, double d) except -1:
    cdef char* repr_
    if d != d:
        return _put(text, b"NaN", 3)
    if d == _INF:
        return _put(text, b"Infinity", 8)
    if d == -_INF:
        return _put(text, b"-Infinity", 9)
    repr_ = PyOS_double_to_string(d, c'r', 0, Py_DTSF_ADD_DOT_0, NULL)
    try:
        _put(text, repr_, strlen_(repr_))
    finally:
        PyMem_Free(repr_)
    return 0


cdef inline Py_ssize_t strlen_(const char* s) noexcept nogil:
    cdef Py_ssize_t n = 0
    while s[n]:
        n += 1
    return n


def array_to_json_text(arr, datatype):
    """The JSON text ``json.dumps(array_to_json(arr, datatype), separators=(",", ":"))``
    gives, written from the array's buffer."""
    c.reject_non_json(datatype, "")
    cdef str kind_name = datatype.name
    flat = np.ascontiguousarray(np.asarray(arr).reshape(-1))
    if kind_name == "BYTES":
        return _bytes_text(flat)
    flat = flat.astype(datatype.numpy, copy=False)
    cdef Py_ssize_t n = flat.shape[0]
    cdef Py_ssize_t i
    cdef _Text text
    text.size = 0
    text.room = n * 8 + 2
    text.data = <char*>malloc(text.room)
    if text.data == NULL:
        raise MemoryError()
    cdef const unsigned char[::1] bools
    cdef const float[::1] singles
    cdef const double[::1] doubles
    cdef const int64_t[::1] signed
    cdef const uint64_t[::1] unsigned_
    cdef int64_t v
    try:
        _put(&text, b"[", 1)
        if kind_name == "BOOL":
            bools = flat.view(np.uint8)
            for i in range(n):
                if i:
                    _put(&text, b",", 1)
                if bools[i]:
                    _put(&text, b"true", 4)
                else:
                    _put(&text, b"false", 5)
        elif kind_name == "FP32":
            singles = flat
            for i in range(n):
                if i:
                    _put(&text, b",", 1)
                _put_double(&text, <double>singles[i])
        elif kind_name == "FP64":
            doubles = flat
            for i in range(n):
                if i:
                    _put(&text, b",", 1)
                _put_double(&text, doubles[i])
        elif kind_name == "UINT64":
            unsigned_ = flat
            for i in range(n):
                if i:
                    _put(&text, b",", 1)
                _put_unsigned(&text, unsigned_[i], False)
        else:
            signed = flat.astype(np.int64)
            for i in range(n):
                if i:
                    _put(&text, b",", 1)
                v = signed[i]
                if v < 0:
                    _put_unsigned(&text, <uint64_t>0 - <uint64_t>v, True)
                else:
                    _put_unsigned(&text, <uint64_t>v, False)
        _put(&text, b"]", 1)
        return PyBytes_FromStringAndSize(text.data, text.size)
    finally:
        free(text.data)


cdef bytes _bytes_text(flat):
    cdef list parts = []
    for x in flat.tolist():
        if isinstance(x, bytes):
            x = (<bytes>x).decode("utf-8", "backslashreplace")
        elif not isinstance(x, str):
            x = str(x)
        parts.append(_quote_ascii(x))
    return ("[" + ",".join(parts) + "]").encode("ascii")
