# Part of _json_text.pxi: a "data" array's text -> the array's buffer.


cdef enum:
    # Deeper data nests go the pure-Python way (which also bounds them, by recursion).
    _MAX_DEPTH = 64
    # A width or depth not seen yet.
    _UNSET = -1
    # Element kinds the scanner writes.
    _K_BOOL = 0
    _K_SIGNED = 1
    _K_UNSIGNED = 2
    _K_FLOAT = 3
    _K_DOUBLE = 4
    _K_BYTES = 5

cdef double _FP32_MAX = c.FP32_MAX
cdef Py_ssize_t _MAX_DIMS = c.MAX_DIMS
cdef Py_ssize_t _MAX_ELEMENTS = c.MAX_ELEMENTS


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
