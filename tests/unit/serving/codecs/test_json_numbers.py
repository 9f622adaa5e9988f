"""Decimal numbers in JSON "data" arrays become the float ``float(text)`` gives, in both twins.

The native twin converts most decimals itself (a 64-bit mantissa times a 128-bit power of
ten, Eisel and Lemire's method) and asks strtod only when that product cannot settle the
rounding; the pure-Python twin runs ``json`` and ``float``. Either way an FP64 element must be
the correctly rounded double of its text, bit for bit, and an FP32 element that double cast
to float32 (so a decimal just past a float32 halfway rounds twice, in both twins alike). FP16
does not travel as JSON, and both twins decline it. Texts ``float`` makes infinite (1e309)
and doubles past float32's range for FP32 (1e39) are refused, as before.
"""

from __future__ import annotations

import math
from decimal import Context, Decimal
from types import ModuleType

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serving.codecs._common import FP32_MAX
from serving.datatypes import by_name

BOUNDED = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
TARGETS = ["FP64", "FP32", "FP16"]
# Beyond this a number token is the pure-Python way's (documented in test_json_text.py).
MAX_TOKEN = 256


def expected(tokens: list[str], datatype: str) -> np.ndarray | None:
    """What ``json.loads`` plus ``json_to_array`` make of the tokens, from ``float`` alone."""
    if datatype == "FP16":
        return None  # not a JSON datatype
    try:
        values = [float(t) if any(ch in t for ch in ".eE") else float(int(t)) for t in tokens]
    except OverflowError:
        return None  # an integer past the largest double
    if any(math.isinf(v) for v in values):
        return None
    if datatype == "FP32":
        if any(abs(v) > FP32_MAX for v in values):
            return None
        return np.array(values, dtype=np.float64).astype(np.float32)
    return np.array(values, dtype=np.float64)


def scan(twin: ModuleType, tokens: list[str], datatype: str) -> np.ndarray | None:
    doc = ('{"data": [' + ", ".join(tokens) + "]}").encode()
    return twin.json_text_to_array(doc, 9, len(doc) - 1, by_name(datatype), (len(tokens),))


def check(twin: ModuleType, tokens: list[str], datatype: str) -> None:
    tokens = [t for t in tokens if len(t) <= MAX_TOKEN]
    got = scan(twin, tokens, datatype)
    want = expected(tokens, datatype)
    if want is None:
        assert got is None, tokens
        return
    assert got is not None, tokens
    assert got.dtype == want.dtype
    if got.tobytes() != want.tobytes():
        pairs = zip(tokens, got, want, strict=True)
        wrong = [(t, float(g), float(w)) for t, g, w in pairs if g.tobytes() != w.tobytes()]
        raise AssertionError(f"{datatype}: {wrong[:5]}")


# ---------------------------------------------------------------------------- the texts


def _layouts(digits: str, exponent: int, layout: int, negative: bool) -> str:
    """One decimal, digits * 10**exponent, in one of the spellings JSON allows."""
    sign = "-" if negative else ""
    if layout == 0:  # 1.2345e-7, as repr writes it
        point = f".{digits[1:]}" if len(digits) > 1 else ""
        return f"{sign}{digits[0]}{point}e{exponent + len(digits) - 1}"
    if layout == 1:  # 12345E+3
        return f"{sign}{digits}E+{exponent}" if exponent >= 0 else f"{sign}{digits}E{exponent}"
    point = len(digits) + exponent  # 123.45 or 0.0012345, no exponent
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return f"{sign}{digits}{'0' * (point - len(digits))}.0"
    return f"{sign}{digits[:point]}.{digits[point:]}"


finite_doubles = st.floats(allow_nan=False, allow_infinity=False)
below_max_double = st.floats(min_value=0.0, max_value=1.7976931348623155e308)
# Exact decimal arithmetic: a halfway between two subnormals has some 770 digits.
EXACT = Context(prec=2000)
subnormals = st.floats(min_value=0.0, max_value=2.2250738585072014e-308, exclude_max=True)
float32_values = st.floats(width=32, allow_nan=False, allow_infinity=False)


@st.composite
def decimals(draw: st.DrawFn, digit_counts: st.SearchStrategy[int]) -> str:
    """n significant digits at any exponent a double's range reaches, and past it."""
    count = draw(digit_counts)
    digits = str(draw(st.integers(10 ** (count - 1), 10**count - 1)))
    exponent = draw(st.integers(-345 - count, 310 - count))
    layout = draw(st.integers(0, 2)) if abs(exponent) < 60 else draw(st.integers(0, 1))
    return _layouts(digits, exponent, layout, draw(st.booleans()))


def _decimal_text(value: Decimal) -> str:
    return format(value, "e").replace("e+", "e")


def near(value: Decimal, digits: int) -> list[str]:
    """``value`` itself, and written to ``digits`` significant digits just under and over."""
    text = _decimal_text(value)
    mantissa, exponent = text.split("e")
    whole = mantissa.lstrip("-").replace(".", "")
    sign = "-" if value < 0 else ""
    out = [text]
    if len(whole) > digits:
        under = int(whole[:digits])
        for d in (under, under + 1):
            d_text = str(d)
            shift = int(exponent) + len(d_text) - digits
            point = f".{d_text[1:]}" if len(d_text) > 1 else ""
            out.append(f"{sign}{d_text[0]}{point}e{shift}")
    return out


def halfway_between(x: float, width: int) -> Decimal:
    """The exact decimal halfway between x and the next float of ``width`` bits above it."""
    kind = np.float64 if width == 64 else np.float32
    a = kind(x)
    b = np.nextafter(a, kind(np.inf))
    return EXACT.divide(EXACT.add(Decimal(float(a)), Decimal(float(b))), 2)


# ---------------------------------------------------------------------------- the tests


@pytest.mark.parametrize("datatype", TARGETS)
@BOUNDED
@given(
    values=st.lists(
        st.one_of(finite_doubles, st.floats(-3.4e38, 3.4e38), float32_values),
        min_size=1,
        max_size=20,
    )
)
def test_repr_of_any_double(twin: ModuleType, datatype: str, values: list[float]) -> None:
    """What repr and json.dumps write (17 significant digits at most) reads back exactly."""
    check(twin, [repr(v) for v in values], datatype)


@pytest.mark.parametrize("datatype", TARGETS)
@BOUNDED
@given(tokens=st.lists(decimals(st.integers(15, 20)), min_size=1, max_size=20))
def test_decimals_of_15_to_20_digits(twin: ModuleType, datatype: str, tokens: list[str]) -> None:
    """17 digits above all, and around them: 16 digits past 2**53, 19 filling 64 bits, 20
    overflowing them; exponents from below the smallest subnormal to past the largest double."""
    check(twin, tokens, datatype)


@pytest.mark.parametrize("datatype", TARGETS)
@BOUNDED
@given(tokens=st.lists(decimals(st.integers(1, 40)), min_size=1, max_size=20))
def test_decimals_of_any_length(twin: ModuleType, datatype: str, tokens: list[str]) -> None:
    check(twin, tokens, datatype)


@pytest.mark.parametrize("datatype", TARGETS)
@BOUNDED
@given(values=st.lists(subnormals, min_size=1, max_size=10), digits=st.integers(1, 25))
def test_subnormals(twin: ModuleType, datatype: str, values: list[float], digits: int) -> None:
    tokens = [t for v in values for t in [repr(v), *near(Decimal(v), digits)]]
    check(twin, tokens, datatype)


@pytest.mark.parametrize("datatype", TARGETS)
@BOUNDED
@given(x=below_max_double, digits=st.integers(16, 40))
def test_halfway_between_doubles(twin: ModuleType, datatype: str, x: float, digits: int) -> None:
    """The exact halfway (ties to the even double) and decimals a hair either side of it."""
    check(twin, near(halfway_between(x, 64), digits), datatype)


@pytest.mark.parametrize("datatype", TARGETS)
@BOUNDED
@given(x=float32_values.filter(lambda v: abs(v) < 3.4e38), digits=st.integers(9, 30))
def test_halfway_between_float32s(twin: ModuleType, datatype: str, x: float, digits: int) -> None:
    """For FP32 the text rounds to a double, which then rounds to float32: a decimal a hair
    over a float32 halfway can become the halfway double and then round to even, not up.
    Both twins round twice, so they agree."""
    check(twin, near(halfway_between(x, 32), digits), datatype)


@pytest.mark.parametrize("datatype", TARGETS)
@BOUNDED
@given(
    mantissa=st.integers(1, 2**40 - 1),
    power=st.integers(-60, 60),
    nudge=st.sampled_from([-1, 0, 1]),
)
def test_decimals_a_double_holds_exactly(
    twin: ModuleType, datatype: str, mantissa: int, power: int, nudge: int
) -> None:
    """A double written out in full (1.0288543701171875, float32 data through repr) sits
    exactly on a double, where the fast product's bits under the rounding bit are all ones
    or all zeros; and the decimals one unit in the last digit either side of it."""
    text = format(EXACT.multiply(Decimal(mantissa), EXACT.power(Decimal(2), power)), "f")
    if nudge and "." in text:
        head, last = text[:-1], int(text[-1])
        text = head + str((last + nudge) % 10)
    check(twin, [text], datatype)


@pytest.mark.parametrize("datatype", TARGETS)
@BOUNDED
@given(odd=st.integers(2**53, 2**54 - 1).map(lambda n: n | 1), halvings=st.integers(1, 4))
def test_short_exact_halfways(twin: ModuleType, datatype: str, odd: int, halvings: int) -> None:
    """A 54-bit odd integer over a small power of two lies exactly halfway between two
    doubles and takes at most 20 digits (9007199254740995.5 / 2): the tie goes to the even
    double, which the fast product, a hair under the exact value, cannot tell alone."""
    text = format(EXACT.divide(Decimal(odd), 2**halvings), "f")
    check(twin, [text, text + "0", "-" + text], datatype)


EDGES = [
    "9007199254740993", "9007199254740992", "9007199254740994", "9007199254740995",
    "9007199254740995.0", "4503599627370497.5", "9007199254740993.00", "2251799813685248.25",
    "2.2250738585072011e-308", "2.2250738585072014e-308", "2.2250738585072009e-308",
    "4.9406564584124654e-324", "2.4703282292062327e-324", "2.4703282292062328e-324",
    "1e-323", "1e-324", "1e-342", "1e-343", "1e-400", "0e-999", "0.0e400",
    "1.7976931348623157e308", "1.7976931348623158e308", "1.7976931348623159e308",
    "179769313486231580793728971405303415079934132710037826936173778980444968292764750946649"
    "017977587207096330286416692887910946555547851940402630657488671505820681908902000708383"
    "676273854845817711531764475730270069855571366959622842914819860834936475292719074168444"
    "365510704342711559699508093042880177904174497791.9", "1e308", "1e309", "-1e309",
    "8.98846567431158e307", "1e23", "8.589973e9", "0.1", "0.3", "1.0288543701171875",
    "18446744073709551615", "18446744073709551616", "1844674407370955161", "18446744073709551615e-20",
    "9999999999999999999", "99999999999999999999", "123456789012345678901234567890e-30",
    "3.4028234663852886e38", "3.4028235677973366e38", "3.4028235677973362e38", "1e39",
    "1.401298464324817e-45", "7.006492321624085e-46", "7.006492321624086e-46",
    "0.30000000000000004", "-0", "-0.0", "-0e10", "0.000000000000000000001",
]  # fmt: skip


@pytest.mark.parametrize("datatype", TARGETS)
@pytest.mark.parametrize("token", EDGES)
def test_edges(twin: ModuleType, datatype: str, token: str) -> None:
    """Exact halves, the subnormal and overflow thresholds, the 64-bit mantissa's edge."""
    check(twin, [token, token if token.startswith("-") else "-" + token], datatype)


@pytest.mark.parametrize("datatype", ["INT64", "UINT64", "INT8", "FP64", "FP32"])
@pytest.mark.parametrize("length", range(1, 23))
def test_digit_runs_of_every_length(
    both: tuple[ModuleType, ModuleType], datatype: str, length: int
) -> None:
    """The native scanner reads digits eight at a time: runs of every length, ending at a
    comma, a point, an exponent, a bracket, a stray letter or the end of the text."""
    py, native = both
    run = ("98765432109876543210" * 2)[:length]
    texts = [
        f"[{run}]", f"[{run},{run}]", f"[-{run}]", f"[{run}.5]", f"[0.{run}]", f"[{run}e-3]",
        f"[1.{run}e2]", f"[{run}a]", f"[{run}", f"[{run} ]",
    ]  # fmt: skip
    for text in texts:
        doc = text.encode()
        count = text.count(",") + 1
        got = native.json_text_to_array(doc, 0, len(doc), by_name(datatype), (count,))
        want = py.json_text_to_array(doc, 0, len(doc), by_name(datatype), (count,))
        if want is None:
            assert got is None, text
        else:
            assert got is not None, text
            assert got.dtype == want.dtype and got.tobytes() == want.tobytes(), text
