# Part of _json_text.pxi: w * 10**q (w a nonzero 64-bit integer) -> the correctly rounded
# double, without strtod, for the numbers clients send most: up to 19 significant digits,
# such as the 17 that repr and json.dumps write for a float.
#
# The method is Eisel and Lemire's (Lemire, "Number Parsing at a Gigabyte per Second",
# 2021): 10**q = 5**q * 2**q, and a 128-bit truncation T of 5**q, scaled into [2**127, 2**128),
# times w moved up to [2**63, 2**64), gives the leading bits of the value. T is at most one
# unit below the true scaled 5**q, so the true product lies in [w*T, w*T + 2**64), and its top
# 128 bits are U or U + 1 where U is the top 128 bits of w*T: the value is somewhere in
# [U, U + 2) units of 2**64. Where no rounding boundary of a double lies in that range, the
# double nearest U is the double nearest the number. Where one might (the bits under the
# rounding bit all zeros with the rounding bit set, which is how an exact half looks, or all
# ones under an unset rounding bit), and for subnormal and overflowing results, the caller
# asks strtod instead.

from libc.string cimport memcpy as _memcpy

cdef extern from *:
    """
    /* The full 128-bit product of two 64-bit integers: the high half, the low one in *low. */
    static inline uint64_t sluice_multiply_64(uint64_t a, uint64_t b, uint64_t *low) {
    #if defined(__SIZEOF_INT128__)
        unsigned __int128 product = (unsigned __int128)a * b;
        *low = (uint64_t)product;
        return (uint64_t)(product >> 64);
    #else
        uint64_t a0 = a & 0xFFFFFFFFu, a1 = a >> 32, b0 = b & 0xFFFFFFFFu, b1 = b >> 32;
        uint64_t p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
        uint64_t middle = (p00 >> 32) + (p01 & 0xFFFFFFFFu) + (p10 & 0xFFFFFFFFu);
        *low = (middle << 32) | (p00 & 0xFFFFFFFFu);
        return p11 + (p01 >> 32) + (p10 >> 32) + (middle >> 32);
    #endif
    }

    /* Leading zero bits of a nonzero 64-bit integer. */
    static inline int sluice_leading_zeros_64(uint64_t v) {
    #if defined(__GNUC__) || defined(__clang__)
        return __builtin_clzll(v);
    #else
        int n = 0;
        while (!(v & 0x8000000000000000u)) { v <<= 1; n++; }
        return n;
    #endif
    }
    """
    uint64_t _multiply_64 "sluice_multiply_64"(uint64_t a, uint64_t b, uint64_t* low) noexcept nogil
    int _leading_zeros_64 "sluice_leading_zeros_64"(uint64_t v) noexcept nogil

cdef enum:
    # Powers of ten outside these leave any 64-bit w at zero or infinity (strtod says which).
    _Q_MIN = -342
    _Q_MAX = 308
    _Q_COUNT = _Q_MAX - _Q_MIN + 1
    # A double: 52 stored mantissa bits, exponent bias 1023, 2047 for infinity and NaN.
    _MANTISSA_BITS = 52
    _EXPONENT_BIAS = 1023
    _EXPONENT_INFINITE = 2047

# For q = _Q_MIN + i: T = floor(5**q / 2**_POW5_SCALE[i]), in [2**127, 2**128), as two halves.
cdef uint64_t[_Q_COUNT] _POW5_HIGH
cdef uint64_t[_Q_COUNT] _POW5_LOW
cdef int[_Q_COUNT] _POW5_SCALE


cdef tuple _power_of_five(object q):
    """(T, scale) with T = floor(5**q / 2**scale) in [2**127, 2**128), in exact integers."""
    if q >= 0:
        five = 5**q
        scale = five.bit_length() - 128
        return (five >> scale if scale >= 0 else five << -scale), scale
    five = 5**-q
    scale = -(127 + five.bit_length())
    return (1 << -scale) // five, scale


cdef int _fill_powers_of_five() except -1:
    """The table, from exact integers at import (well under a millisecond)."""
    cdef Py_ssize_t i
    for i in range(_Q_COUNT):
        truncated, scale = _power_of_five(_Q_MIN + i)
        _POW5_HIGH[i] = truncated >> 64
        _POW5_LOW[i] = truncated & 0xFFFFFFFFFFFFFFFF
        _POW5_SCALE[i] = scale
    return 0


_fill_powers_of_five()


cdef inline bint _decimal_to_double(uint64_t w, Py_ssize_t q, double* out) noexcept nogil:
    """``w * 10**q`` (w > 0) correctly rounded into ``out``; False where this cannot be
    sure (then strtod decides): a near-halfway value, a subnormal or an overflow."""
    cdef Py_ssize_t i
    cdef int shift, zeros
    cdef uint64_t high, low, cross, ignored, rest, mantissa, bits
    cdef Py_ssize_t exponent
    if q < _Q_MIN or q > _Q_MAX:
        return False
    i = q - _Q_MIN
    zeros = _leading_zeros_64(w)
    w <<= zeros
    # U = (w * T) >> 64, where T = _POW5_HIGH * 2**64 + _POW5_LOW; U < 2**128.
    high = _multiply_64(w, _POW5_HIGH[i], &low)
    cross = _multiply_64(w, _POW5_LOW[i], &ignored)
    low += cross
    high += low < cross
    # w >= 2**63 and T >= 2**127, so high >= 2**62: take its top 54 bits (a double's 53 and
    # the rounding bit), and the bits under them (with ``low``) decide the rounding.
    shift = 10 if high >> 63 else 9
    mantissa = high >> shift
    rest = high & ((<uint64_t>1 << shift) - 1)
    if rest == (<uint64_t>1 << shift) - 1 and low >= <uint64_t>0xFFFFFFFFFFFFFFFE:
        # U + 1 may carry into the rounding bit. From an odd 54-bit mantissa (above halfway)
        # both round up to the same double: a value a double holds exactly, written in full
        # (1.0288543701171875), lands here. From an even one, the carry makes a halfway.
        if not mantissa & 1:
            return False
    if mantissa & 1 and rest == 0 and low == 0:
        return False  # maybe exactly halfway: the tie goes to the even neighbour
    # value = mantissa/2 * 2**exponent, with mantissa/2 in [2**52, 2**53).
    exponent = shift + 129 + _POW5_SCALE[i] + q - zeros + _MANTISSA_BITS + _EXPONENT_BIAS
    if exponent <= 0:
        return False  # subnormal (or zero): fewer mantissa bits, strtod rounds it
    mantissa = (mantissa >> 1) + (mantissa & 1)  # the rounding bit set: above halfway, up
    if mantissa >> (_MANTISSA_BITS + 1):
        mantissa >>= 1  # rounded up to the next power of two
        exponent += 1
    if exponent >= _EXPONENT_INFINITE:
        return False  # overflow: strtod gives the infinity the caller refuses
    bits = (<uint64_t>exponent << _MANTISSA_BITS) | (mantissa & ((<uint64_t>1 << _MANTISSA_BITS) - 1))
    _memcpy(out, &bits, 8)
    return True
