# Part of _json_text.pxi: where each input's "data" array lies in a request document.


cdef inline bint _is_ws(unsigned char ch) noexcept nogil:
    return ch == 32 or ch == 9 or ch == 10 or ch == 13


cdef inline Py_ssize_t _skip_ws(const unsigned char* p, Py_ssize_t pos, Py_ssize_t n) noexcept nogil:
    while pos < n and _is_ws(p[pos]):
        pos += 1
    return pos


cdef Py_ssize_t _skip_string(const unsigned char* p, Py_ssize_t pos, Py_ssize_t n) noexcept nogil:
    """From the opening quote to just past the closing one; -1 when it does not close."""
    pos += 1
    while pos < n:
        if p[pos] == 92:  # backslash: the next byte is escaped
            pos += 2
        elif p[pos] == 34:
            return pos + 1
        else:
            pos += 1
    return -1


cdef Py_ssize_t _skip_value(const unsigned char* p, Py_ssize_t pos, Py_ssize_t n) noexcept nogil:
    """Past one value, loosely: the document around the data arrays is checked by json."""
    cdef Py_ssize_t depth = 0
    cdef unsigned char ch
    if pos >= n:
        return -1
    ch = p[pos]
    if ch == 34:
        return _skip_string(p, pos, n)
    if ch == 91 or ch == 123:
        while pos < n:
            ch = p[pos]
            if ch == 34:
                pos = _skip_string(p, pos, n)
                if pos < 0:
                    return -1
                continue
            if ch == 91 or ch == 123:
                depth += 1
            elif ch == 93 or ch == 125:
                depth -= 1
                if depth == 0:
                    return pos + 1
            pos += 1
        return -1
    cdef Py_ssize_t start = pos
    while pos < n:
        ch = p[pos]
        if _is_ws(ch) or ch == 44 or ch == 93 or ch == 125:
            break
        pos += 1
    return pos if pos > start else -1


cdef inline bint _plain_key(const unsigned char* p, Py_ssize_t start, Py_ssize_t end,
                            const char* want, Py_ssize_t size) noexcept nogil:
    """Whether the string token [start, end) is exactly ``"want"``."""
    cdef Py_ssize_t i
    if end - start != size + 2:
        return False
    for i in range(size):
        if p[start + 1 + i] != <unsigned char>want[i]:
            return False
    return True


cdef inline bint _has_escape(const unsigned char* p, Py_ssize_t start, Py_ssize_t end) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(start, end):
        if p[i] == 92:
            return True
    return False


cdef Py_ssize_t _scan_object(const unsigned char* p, Py_ssize_t pos, Py_ssize_t n,
                             Py_ssize_t position, list spans) except -2:
    """An object at ``pos``; in an input (``position`` >= 0), a "data" array is recorded,
    at the root (``position`` == -1) the "inputs" list is walked. -1: not for the scanner."""
    cdef Py_ssize_t key_start, key_end, value_end, index
    cdef bint seen = False
    pos = _skip_ws(p, pos + 1, n)
    if pos < n and p[pos] == 125:
        return pos + 1
    while True:
        if pos >= n or p[pos] != 34:
            return -1
        key_start = pos
        key_end = _skip_string(p, pos, n)
        if key_end < 0 or _has_escape(p, key_start, key_end):
            return -1
        pos = _skip_ws(p, key_end, n)
        if pos >= n or p[pos] != 58:
            return -1
        pos = _skip_ws(p, pos + 1, n)
        if pos >= n:
            return -1
        if position == -1 and _plain_key(p, key_start, key_end, b"inputs", 6):
            if seen:
                return -1
            seen = True
            if p[pos] == 91:
                pos = _skip_ws(p, pos + 1, n)
                index = 0
                if pos < n and p[pos] == 93:
                    value_end = pos + 1
                else:
                    while True:
                        if pos < n and p[pos] == 123:
                            pos = _scan_object(p, pos, n, index, spans)
                        else:
                            pos = _skip_value(p, pos, n)
                        if pos < 0:
                            return -1
                        pos = _skip_ws(p, pos, n)
                        if pos < n and p[pos] == 44:
                            pos = _skip_ws(p, pos + 1, n)
                            index += 1
                            continue
                        if pos < n and p[pos] == 93:
                            value_end = pos + 1
                            break
                        return -1
            else:
                value_end = _skip_value(p, pos, n)
        elif position >= 0 and _plain_key(p, key_start, key_end, b"data", 4):
            if seen:
                return -1
            seen = True
            value_end = _skip_value(p, pos, n)
            if value_end >= 0 and p[pos] == 91:
                spans.append((position, pos, value_end))
        else:
            value_end = _skip_value(p, pos, n)
        if value_end < 0:
            return -1
        pos = _skip_ws(p, value_end, n)
        if pos < n and p[pos] == 44:
            pos = _skip_ws(p, pos + 1, n)
            continue
        if pos < n and p[pos] == 125:
            return pos + 1
        return -1


def split_json_data(doc):
    """The request document with each input's "data" array replaced by ``null``, and where
    those arrays were: ``(rest, [(input position, start, end), ...])``; None when the
    document has none or is not plain enough to split (the caller then parses it whole)."""
    cdef const unsigned char[::1] view = doc
    cdef Py_ssize_t n = view.shape[0]
    if n == 0:
        return None
    cdef const unsigned char* p = &view[0]
    cdef list spans = []
    cdef Py_ssize_t pos = _skip_ws(p, 0, n)
    if pos >= n or p[pos] != 123:
        return None
    pos = _scan_object(p, pos, n, -1, spans)
    if pos < 0 or _skip_ws(p, pos, n) != n or not spans:
        return None
    cdef Py_ssize_t total = n
    cdef Py_ssize_t at = 0
    cdef Py_ssize_t s, e
    cdef char* dst
    for _, start, end in spans:
        total -= <Py_ssize_t>end - <Py_ssize_t>start - 4
    rest = PyBytes_FromStringAndSize(NULL, total)
    dst = PyBytes_AS_STRING(rest)
    for _, start, end in spans:
        s = start
        e = end
        memcpy(dst, p + at, s - at)
        dst += s - at
        memcpy(dst, b"null", 4)
        dst += 4
        at = e
    memcpy(dst, p + at, n - at)
    return rest, spans
