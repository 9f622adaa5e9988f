# Included by _native.pyx (one extension module): JSON text <-> arrays.

# --- JSON text <-> arrays -------------------------------------------------------------------
#
# The request decoder hands the bytes of each input's "data" array here instead of a list of
# Python objects, and the response encoder takes the JSON text of each output from here. The
# scanner accepts exactly what ``json.loads`` followed by ``json_to_array`` accepts and gives
# the same array; whatever it is not sure of (escapes, a deep nesting, a number needing more
# than the fast path, anything malformed) makes it answer None, and the caller then decodes
# the whole document the pure-Python way, which names the error.

from cpython.object cimport PyObject
from libc.stdlib cimport free, malloc, realloc, strtod

cdef extern from "Python.h":
    double PyOS_string_to_double(const char* s, char** endptr, PyObject* overflow_exception) except? -1.0
    char* PyOS_double_to_string(double val, char format_code, int precision, int flags, int* ptype) except NULL
    void PyMem_Free(void* p)
    int Py_DTSF_ADD_DOT_0

import json as _json

cdef object _quote_ascii = _json.encoder.encode_basestring_ascii

cdef enum:
    # Deeper data nests go the pure-Python way (which also bounds them, by recursion).
    _MAX_DEPTH = 64
    # A number token longer than this goes the pure-Python way.
    _MAX_TOKEN = 256
    # A width or depth not seen yet.
    _UNSET = -1
    # Element kinds the scanner writes.
    _K_BOOL = 0
    _K_SIGNED = 1
    _K_UNSIGNED = 2
    _K_FLOAT = 3
    _K_DOUBLE = 4
    _K_BYTES = 5

cdef double _NAN = float("nan")
cdef double _INF = float("inf")
cdef double _FP32_MAX = c.FP32_MAX
cdef Py_ssize_t _MAX_DIMS = c.MAX_DIMS
cdef Py_ssize_t _MAX_ELEMENTS = c.MAX_ELEMENTS
cdef double[23] _POW10 = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
]



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


cdef struct _Number:
    bint negative
    bint integral      # no fraction and no exponent
    bint special       # NaN, Infinity or -Infinity
    uint64_t mantissa  # the significant digits, while they fit
    bint wide          # more than 19 significant digits
    Py_ssize_t exp10   # the value is mantissa * 10**exp10
    double value       # for a special


cdef Py_ssize_t _scan_number(const unsigned char* p, Py_ssize_t pos, Py_ssize_t end,
                             _Number* num) noexcept nogil:
    """One JSON number (or NaN / Infinity / -Infinity) from ``pos``; its end, or -1."""
    cdef Py_ssize_t start = pos
    cdef Py_ssize_t frac = 0
    cdef Py_ssize_t exp = 0
    cdef Py_ssize_t exp_digits = 0
    cdef bint exp_negative = False
    cdef unsigned char ch
    num.negative = False
    num.integral = True
    num.special = False
    num.mantissa = 0
    num.wide = False
    num.exp10 = 0
    num.value = 0.0
    if pos < end and p[pos] == 45:
        num.negative = True
        pos += 1
    if pos >= end:
        return -1
    if p[pos] == 78 or p[pos] == 73:
        if not num.negative and end - pos >= 3 and p[pos] == 78 and p[pos + 1] == 97 and p[pos + 2] == 78:
            num.special = True
            num.value = _NAN
            return pos + 3
        if end - pos >= 8 and memcmp_ascii(p + pos, b"Infinity", 8):
            num.special = True
            num.value = -_INF if num.negative else _INF
            return pos + 8
        return -1
    if p[pos] == 48:
        pos += 1
        if pos < end and 48 <= p[pos] <= 57:
            return -1
    elif 49 <= p[pos] <= 57:
        while pos < end and 48 <= p[pos] <= 57:
            _add_digit(num, p[pos])
            pos += 1
    else:
        return -1
    if pos < end and p[pos] == 46:
        num.integral = False
        pos += 1
        if pos >= end or not (48 <= p[pos] <= 57):
            return -1
        while pos < end and 48 <= p[pos] <= 57:
            _add_digit(num, p[pos])
            frac += 1
            pos += 1
    if pos < end and (p[pos] == 101 or p[pos] == 69):
        num.integral = False
        pos += 1
        if pos < end and (p[pos] == 43 or p[pos] == 45):
            exp_negative = p[pos] == 45
            pos += 1
        if pos >= end or not (48 <= p[pos] <= 57):
            return -1
        while pos < end and 48 <= p[pos] <= 57:
            if exp_digits < 7:
                exp = exp * 10 + (p[pos] - 48)
            exp_digits += 1
            pos += 1
        if exp_digits >= 7:
            num.wide = True  # PyOS_string_to_double decides
    if pos - start > _MAX_TOKEN:
        return -1
    num.exp10 = (-exp if exp_negative else exp) - frac
    return pos


cdef inline bint memcmp_ascii(const unsigned char* a, const char* b, Py_ssize_t size) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(size):
        if a[i] != <unsigned char>b[i]:
            return False
    return True


cdef inline void _add_digit(_Number* num, unsigned char ch) noexcept nogil:
    cdef uint64_t digit = ch - 48
    if num.wide:
        return
    if num.mantissa > (<uint64_t>0xFFFFFFFFFFFFFFFF - digit) // 10:
        num.wide = True  # past 64 bits: the slow conversion, or out of range
        return
    num.mantissa = num.mantissa * 10 + digit


cdef double _to_double(const unsigned char* p, Py_ssize_t start, Py_ssize_t end,
                       _Number* num) except? -1.0:
    """The correctly rounded double of a scanned number, as ``float(text)`` gives it."""
    cdef double d
    cdef char[_MAX_TOKEN + 1] text
    cdef char* stop
    if num.special:
        return num.value
    if not num.wide and num.mantissa <= (<uint64_t>1 << 53) and -22 <= num.exp10 <= 22:
        # Both operands are exact doubles, so one IEEE operation rounds correctly.
        d = <double>num.mantissa
        if num.exp10 >= 0:
            d = d * _POW10[num.exp10]
        else:
            d = d / _POW10[-num.exp10]
    else:
        memcpy(text, p + start, end - start)
        text[end - start] = 0
        # The C library's strtod rounds correctly (glibc) and is quicker than Python's own
        # converter; a locale whose decimal point is not "." stops it early, and then
        # Python's converter, which ignores the locale, decides.
        d = strtod(text, &stop)
        if stop != text + (end - start):
            d = PyOS_string_to_double(text, NULL, NULL)
        if d < 0:
            d = -d  # the sign is applied below, once
    if num.integral and d == 0:
        return 0.0  # "-0" is the integer 0, which is +0.0
    return -d if num.negative else d


cdef struct _Grid:
    # Nesting bookkeeping: every list at one depth has one length, and every value sits
    # at one depth below all lists (what ``json_to_array``'s flattening accepts).
    Py_ssize_t[_MAX_DEPTH + 1] counts
    Py_ssize_t[_MAX_DEPTH + 1] widths
    Py_ssize_t depth
    Py_ssize_t deepest_list
    Py_ssize_t value_level


cdef inline void _grid_start(_Grid* grid) noexcept nogil:
    grid.depth = 0
    grid.deepest_list = 0
    grid.value_level = _UNSET
    grid.counts[0] = 0
    grid.widths[0] = _UNSET


cdef inline bint _grid_open(_Grid* grid) noexcept nogil:
    cdef Py_ssize_t level = grid.depth + 1
    if level > _MAX_DEPTH or (grid.value_level != _UNSET and level >= grid.value_level):
        return False
    grid.depth = level
    grid.counts[level] = 0
    if level > grid.deepest_list:
        grid.deepest_list = level
        grid.widths[level] = _UNSET
    return True


cdef inline bint _grid_value(_Grid* grid) noexcept nogil:
    cdef Py_ssize_t level = grid.depth + 1
    if grid.value_level == _UNSET:
        if grid.deepest_list >= level:
            return False
        grid.value_level = level
    elif grid.value_level != level:
        return False
    grid.counts[grid.depth] += 1
    return True


cdef inline bint _grid_close(_Grid* grid) noexcept nogil:
    """False when ragged; the depth afterwards is -1 once the outermost list closes."""
    cdef Py_ssize_t level = grid.depth
    if grid.widths[level] == _UNSET:
        grid.widths[level] = grid.counts[level]
    elif grid.widths[level] != grid.counts[level]:
        return False
    grid.depth -= 1
    if grid.depth >= 0:
        grid.counts[grid.depth] += 1
    return True


def json_text_to_array(doc, Py_ssize_t start, Py_ssize_t end, datatype, shape, *, str name=""):
    """The array ``json_to_array`` makes of the JSON array in ``doc[start:end]``, scanned
    from the bytes into the array's buffer; None where ``json_to_array`` (or ``json``)
    would refuse it, or where the text needs the pure-Python way to be sure."""
    if not datatype.json_ok:
        return None
    cdef Py_ssize_t count = _small_count(shape, end - start)
    if count < 0:
        return None
    cdef const unsigned char[::1] view = doc
    if start < 0 or end > view.shape[0] or end - start < 2:
        return None
    cdef const unsigned char* p = &view[0]
    cdef str kind_name = datatype.name
    cdef int kind
    cdef int64_t lo = 0
    cdef uint64_t hi = 0
    if kind_name == "BOOL":
        kind = _K_BOOL
        out = np.empty(count, dtype=np.bool_)
    elif kind_name == "BYTES":
        kind = _K_BYTES
        out = np.empty(count, dtype=object)
    elif kind_name == "FP32":
        kind = _K_FLOAT
        out = np.empty(count, dtype=np.float32)
    elif kind_name == "FP64":
        kind = _K_DOUBLE
        out = np.empty(count, dtype=np.float64)
    elif kind_name.startswith("U"):
        kind = _K_UNSIGNED
        hi = c.INT_RANGES[kind_name][1]
        out = np.empty(count, dtype=np.uint64)
    else:
        kind = _K_SIGNED
        low, high = c.INT_RANGES[kind_name]
        lo = low
        hi = high
        out = np.empty(count, dtype=np.int64)
    filled = _fill(p, start, end, kind, lo, hi, out, count)
    if not filled:
        return None
    if kind == _K_SIGNED or kind == _K_UNSIGNED:
        out = out.astype(datatype.numpy, copy=False)
    return out.reshape(shape)


cdef Py_ssize_t _small_count(shape, Py_ssize_t limit) except -2:
    """The element count of ``shape`` when ``checked_count`` accepts it and it is at most
    ``limit``; -1 otherwise. Every element takes at least one byte of text, so a larger
    count cannot match the text and is refused before anything is allocated."""
    cdef Py_ssize_t count = 1
    cdef Py_ssize_t extent = 1
    cdef Py_ssize_t dim
    if type(shape) is not tuple or len(<tuple>shape) > _MAX_DIMS:
        return -1
    for item in <tuple>shape:
        if type(item) is not int or item < 0 or item > _MAX_ELEMENTS:
            return -1
        dim = item
        if dim and extent > _MAX_ELEMENTS // dim:
            return -1
        extent *= dim or 1
        count *= dim
    return count if count <= limit else -1


cdef bint _fill(const unsigned char* p, Py_ssize_t pos, Py_ssize_t end, int kind,
                int64_t lo, uint64_t hi, out, Py_ssize_t count) except -1:
    cdef _Grid grid
    _grid_start(&grid)
    cdef Py_ssize_t index = 0
    cdef Py_ssize_t token_end
    cdef _Number num
    cdef double d
    cdef unsigned char ch
    cdef bint after_value = False
    cdef unsigned char* bools = NULL
    cdef float* singles = NULL
    cdef double* doubles = NULL
    cdef int64_t* signed = NULL
    cdef uint64_t* unsigned_ = NULL
    cdef object[::1] cells
    cdef unsigned char[::1] bool_view
    cdef float[::1] single_view
    cdef double[::1] double_view
    cdef int64_t[::1] signed_view
    cdef uint64_t[::1] unsigned_view
    if count:
        if kind == _K_BOOL:
            bool_view = out.view(np.uint8)
            bools = &bool_view[0]
        elif kind == _K_FLOAT:
            single_view = out
            singles = &single_view[0]
        elif kind == _K_DOUBLE:
            double_view = out
            doubles = &double_view[0]
        elif kind == _K_SIGNED:
            signed_view = out
            signed = &signed_view[0]
        elif kind == _K_UNSIGNED:
            unsigned_view = out
            unsigned_ = &unsigned_view[0]
        else:
            cells = out
    if p[pos] != 91:
        return False
    pos += 1
    while True:
        pos = _skip_ws(p, pos, end)
        if pos >= end:
            return False
        ch = p[pos]
        if after_value:
            if ch == 44:
                pos += 1
                after_value = False
                pos = _skip_ws(p, pos, end)
                if pos >= end or p[pos] == 93:
                    return False  # a trailing comma
                continue
            if ch != 93:
                return False
        if ch == 93:
            if not _grid_close(&grid):
                return False
            pos += 1
            if grid.depth < 0:
                return pos == end and index == count
            after_value = True
            continue
        if ch == 91:
            if not _grid_open(&grid):
                return False
            pos += 1
            continue
        if not _grid_value(&grid) or index >= count:
            return False
        if kind == _K_BOOL:
            if end - pos >= 4 and memcmp_ascii(p + pos, b"true", 4):
                bools[index] = 1
                pos += 4
            elif end - pos >= 5 and memcmp_ascii(p + pos, b"false", 5):
                bools[index] = 0
                pos += 5
            else:
                return False
        elif kind == _K_BYTES:
            if ch != 34:
                return False
            token_end = _skip_string(p, pos, end)
            if token_end < 0:
                return False
            text = _string_bytes(p, pos, token_end)
            if text is None:
                return False
            cells[index] = text
            pos = token_end
        else:
            token_end = _scan_number(p, pos, end, &num)
            if token_end < 0:
                return False
            if kind == _K_FLOAT or kind == _K_DOUBLE:
                d = _to_double(p, pos, token_end, &num)
                if not num.special and not isfinite(d):
                    return False  # 1e309: refused, as the document parser refuses it
                if kind == _K_FLOAT:
                    if isfinite(d) and fabs(d) > _FP32_MAX:
                        return False
                    singles[index] = <float>d
                else:
                    doubles[index] = d
            else:
                if not num.integral or num.special or num.wide:
                    return False
                if num.negative:
                    if kind == _K_UNSIGNED:
                        if num.mantissa:
                            return False
                        unsigned_[index] = 0
                    else:
                        if num.mantissa > <uint64_t>(-(lo + 1)) + 1:
                            return False
                        signed[index] = <int64_t>(0 - num.mantissa)
                elif num.mantissa > hi:
                    return False
                elif kind == _K_UNSIGNED:
                    unsigned_[index] = num.mantissa
                else:
                    signed[index] = <int64_t>num.mantissa
            pos = token_end
        index += 1
        after_value = True


cdef object _string_bytes(const unsigned char* p, Py_ssize_t start, Py_ssize_t end):
    """A JSON string token's UTF-8 bytes; None where ``json`` or the encoding refuses it."""
    cdef Py_ssize_t i
    cdef unsigned char ch
    for i in range(start + 1, end - 1):
        ch = p[i]
        if ch < 32 or ch == 92 or ch >= 127:
            break
    else:
        return PyBytes_FromStringAndSize(<const char*>(p + start + 1), end - start - 2)
    # Escapes and non-ASCII text: json decodes it and Python encodes it, as the other way does.
    try:
        return (<str>_json.loads(PyBytes_FromStringAndSize(<const char*>(p + start), end - start))).encode("utf-8")
    except (ValueError, UnicodeError):
        return None


# --- arrays -> JSON text ----------------------------------------------------------------------

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
