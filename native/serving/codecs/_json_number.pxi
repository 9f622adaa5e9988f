# Part of _json_text.pxi: one JSON number token -> its double, as ``float(text)`` gives it.


cdef enum:
    # A number token longer than this goes the pure-Python way.
    _MAX_TOKEN = 256

cdef double[23] _POW10 = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
]


cdef extern from *:
    """
    /* The eight ASCII digits at p as one integer (p[0] the most significant) into *value;
       0 where one of the eight bytes is not a digit. Little-endian loads only. */
    static inline int sluice_eight_digits(const unsigned char *p, uint64_t *value) {
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        uint64_t chunk, tens;
        memcpy(&chunk, p, 8);
        /* A byte is a digit when its high nibble is 3 both as it is and plus 6. */
        if (((chunk & 0xF0F0F0F0F0F0F0F0u) |
             (((chunk + 0x0606060606060606u) & 0xF0F0F0F0F0F0F0F0u) >> 4)) != 0x3333333333333333u)
            return 0;
        chunk -= 0x3030303030303030u;
        /* Each even byte becomes a pair of digits (10 * first + second), then the four pairs
           are weighed 10**6, 10**4, 10**2 and 1 in two multiplications. */
        tens = chunk * 10 + (chunk >> 8);
        *value = ((tens & 0x000000FF000000FFu) * (100 + (1000000ull << 32)) +
                  ((tens >> 16) & 0x000000FF000000FFu) * (1 + (10000ull << 32))) >> 32;
        return 1;
    #else
        (void)p; (void)value;
        return 0;
    #endif
    }
    """
    bint _eight_digits "sluice_eight_digits"(const unsigned char* p, uint64_t* value) noexcept nogil


cdef struct _Number:
    bint negative
    bint integral      # no fraction and no exponent
    bint special       # NaN, Infinity or -Infinity
    uint64_t mantissa  # the digits, while they fit in 64 bits
    bint wide          # they do not (or the exponent has 7 digits or more)
    Py_ssize_t exp10   # the value is mantissa * 10**exp10
    double value       # for a special


cdef Py_ssize_t _scan_number(const unsigned char* p, Py_ssize_t pos, Py_ssize_t end,
                             _Number* num) noexcept nogil:
    """One JSON number (or NaN / Infinity / -Infinity) from ``pos``; its end, or -1."""
    cdef Py_ssize_t start = pos
    cdef Py_ssize_t frac = 0
    cdef uint64_t mantissa = 0
    cdef bint wide = False
    cdef Py_ssize_t exp = 0
    cdef Py_ssize_t exp_digits = 0
    cdef bint exp_negative = False
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
        pos = _scan_digits(p, pos, end, &mantissa, &wide)
    else:
        return -1
    if pos < end and p[pos] == 46:
        num.integral = False
        pos += 1
        if pos >= end or not (48 <= p[pos] <= 57):
            return -1
        frac = pos
        pos = _scan_digits(p, pos, end, &mantissa, &wide)
        frac = pos - frac
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
            wide = True  # strtod decides
    if pos - start > _MAX_TOKEN:
        return -1
    num.mantissa = mantissa
    num.wide = wide
    num.exp10 = (-exp if exp_negative else exp) - frac
    return pos


cdef inline Py_ssize_t _scan_digits(const unsigned char* p, Py_ssize_t pos, Py_ssize_t end,
                                    uint64_t* mantissa, bint* wide) noexcept nogil:
    """Past the digits at ``pos``, each added to ``mantissa`` while it stays under 2**64."""
    cdef uint64_t m = mantissa[0]
    cdef uint64_t digit, eight
    # Eight at a time while m * 10**8 + 99999999 stays under 2**64.
    while end - pos >= 8 and m < <uint64_t>100000000000 and _eight_digits(p + pos, &eight):
        m = m * 100000000 + eight
        pos += 8
    # m * 10 + digit < 2**64 while m < 1844674407370955161 (= (2**64 - 1) // 10), or m is
    # that and the digit at most 5.
    while pos < end:
        digit = <uint64_t>p[pos] - 48
        if digit > 9:
            break
        if m < <uint64_t>1844674407370955161 or (m == <uint64_t>1844674407370955161 and digit <= 5):
            m = m * 10 + digit
        else:
            wide[0] = True  # past 64 bits: the slow conversion, or out of range
        pos += 1
    mantissa[0] = m
    return pos


cdef double _to_double(const unsigned char* p, Py_ssize_t start, Py_ssize_t end,
                       _Number* num) except? -1.0:
    """The correctly rounded double of a scanned number, as ``float(text)`` gives it."""
    cdef double d
    if num.special:
        return num.value
    if num.wide:
        d = _text_to_double(p, start, end)
    elif num.mantissa == 0:
        d = 0.0
    elif num.mantissa <= (<uint64_t>1 << 53) and -22 <= num.exp10 <= 22:
        # Both operands are exact doubles, so one IEEE operation rounds correctly.
        d = <double>num.mantissa
        if num.exp10 >= 0:
            d = d * _POW10[num.exp10]
        else:
            d = d / _POW10[-num.exp10]
    elif not _decimal_to_double(num.mantissa, num.exp10, &d):
        d = _text_to_double(p, start, end)
    if num.integral and d == 0:
        return 0.0  # "-0" is the integer 0, which is +0.0
    return -d if num.negative else d


cdef double _text_to_double(const unsigned char* p, Py_ssize_t start, Py_ssize_t end) except? -1.0:
    """The magnitude of the number token ``p[start:end]``, by the C library."""
    cdef char[_MAX_TOKEN + 1] text
    cdef char* stop
    cdef double d
    memcpy(text, p + start, end - start)
    text[end - start] = 0
    # The C library's strtod rounds correctly (glibc) and is quicker than Python's own
    # converter; a locale whose decimal point is not "." stops it early, and then
    # Python's converter, which ignores the locale, decides.
    d = strtod(text, &stop)
    if stop != text + (end - start):
        d = PyOS_string_to_double(text, NULL, NULL)
    return fabs(d)  # also -0.0 from "-1e-400", which the caller makes -0.0 again
