"""Kubernetes resource quantities, parsed and formatted with the API server's rules.

Values are exact (``Fraction``) so that ``1.5Gi``, ``1536Mi`` and ``1610612736`` compare
equal and a value written back never drifts through float rounding. Formatting follows
``resource.Quantity``'s canonical form: the suffix family the value was written in (binary,
decimal SI, or exponent) and the largest unit that keeps an integer mantissa, so ``0.5``
becomes ``500m`` and ``1.5Gi`` becomes ``1536Mi``, the way ``kubectl get -o yaml`` shows them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction

BINARY = "BinarySI"
DECIMAL = "DecimalSI"
EXPONENT = "DecimalExponent"

_BINARY_SUFFIX = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL_SUFFIX = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12,
                   "P": 15, "E": 18}
_SUFFIX_BY_EXP = {v: k for k, v in _DECIMAL_SUFFIX.items()}
_RE = re.compile(
    r"^(?P<sign>[+-]?)(?P<num>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
    r"(?:(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)|[eE](?P<exp>[+-]?[0-9]+))?$"
)
_NANO = Fraction(1, 10**9)
_POW10 = [10**i for i in range(28)]
_MAX_LEN = 64  # the API server refuses absurdly long quantities too


class QuantityError(ValueError):
    """Not a quantity the API server would accept."""


@dataclass(frozen=True, order=False)
class Quantity:
    value: Fraction
    format: str = DECIMAL

    def __str__(self) -> str:
        return format_quantity(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Quantity) and self.value == other.value

    def __lt__(self, other: Quantity) -> bool:
        return self.value < other.value

    def __le__(self, other: Quantity) -> bool:
        return self.value <= other.value

    def __hash__(self) -> int:
        return hash(self.value)

    @property
    def cores(self) -> float:
        """As CPU cores (what a policy compares)."""
        return float(self.value)

    @property
    def bytes(self) -> int:
        """As whole bytes, rounded up like the kubelet does for memory."""
        return math.ceil(self.value)


def parse(raw: str | int | float) -> Quantity:
    """Parse ``250m``, ``0.5``, ``1``, ``256Mi``, ``1G``, ``1e3``, ``1.5Gi`` (and YAML numbers)."""
    if isinstance(raw, bool):
        raise QuantityError("a boolean is not a quantity")
    if isinstance(raw, int):
        if raw.bit_length() > _MAX_LEN * 4:  # str() would be past _MAX_LEN (or fail)
            raise QuantityError(f"an integer of {raw.bit_length()} bits is not a quantity "
                                "(too long)")
        raw = str(raw)
    elif isinstance(raw, float):
        if not math.isfinite(raw):
            raise QuantityError(f"{raw!r} is not a finite number")
        raw = repr(raw)
    if not isinstance(raw, str):
        raise QuantityError(f"expected a string or number, got {type(raw).__name__}")
    text = raw  # the API server refuses surrounding whitespace too
    if not text.strip() or len(text) > _MAX_LEN:
        raise QuantityError(f"{raw!r} is not a quantity (empty or too long)")
    m = _RE.fullmatch(text)
    if not m:
        raise QuantityError(
            f"{raw!r} is not a quantity (expected a number with an optional suffix such as "
            "m, Ki, Mi, Gi, k, M, G or e3)"
        )
    value = Fraction(m["num"])
    if m["sign"] == "-":
        value = -value
    suffix, exp = m["suffix"], m["exp"]
    if suffix in _BINARY_SUFFIX:
        fmt = BINARY
        value *= 2 ** _BINARY_SUFFIX[suffix]
    elif exp is not None:
        fmt = EXPONENT
        e = int(exp)
        if abs(e) > 30:
            raise QuantityError(f"{raw!r}: exponent out of range")
        value *= Fraction(10) ** e
    else:
        fmt = DECIMAL
        value *= Fraction(10) ** _DECIMAL_SUFFIX[suffix or ""]
    # The API server keeps nano precision and rounds anything finer up.
    if value.denominator != 1 and (value / _NANO).denominator != 1:
        value = Fraction(math.ceil(value / _NANO)) * _NANO
    return Quantity(value, fmt)


def _decimal(value: Fraction, exponent_style: bool) -> str:
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    v = abs(value)
    # In whole nanos (rounded up, as the server does), then the largest power of 1000 that
    # keeps the mantissa an integer. Integer arithmetic: this runs for every quantity of
    # every recommendation the stream receives.
    nanos = -(-v.numerator * 10**9 // v.denominator)
    for e in range(18, -10, -3):
        unit = _POW10[e + 9]
        if nanos % unit == 0:
            n = nanos // unit
            if exponent_style:
                return f"{sign}{n}" + (f"e{e}" if e else "")
            return f"{sign}{n}{_SUFFIX_BY_EXP[e]}"
    raise AssertionError("unreachable: every whole number of nanos divides by 10**0")


def format_quantity(q: Quantity) -> str:
    """The canonical string the API server would store for ``q``."""
    v = q.value
    if q.format == BINARY and v.denominator == 1 and abs(v) >= 1024:
        n = int(v)
        for suffix, shift in sorted(_BINARY_SUFFIX.items(), key=lambda kv: -kv[1]):
            if n % (1 << shift) == 0:
                return f"{n >> shift}{suffix}"
    return _decimal(v, exponent_style=q.format == EXPONENT)


def same(a: str, b: str) -> bool:
    """Whether two written values mean the same quantity (``0.2`` and ``200m``, ``1Gi`` and
    ``1024Mi``). Text that is not a quantity is only the same as identical text."""
    if a == b:
        return True
    try:
        return parse(a).value == parse(b).value
    except QuantityError:
        return False


def canonical(raw: str | int | float) -> str:
    return format_quantity(parse(raw))


def cpu(cores: Fraction | float | int) -> Quantity:
    """A CPU quantity from cores, for planners that compute values."""
    return Quantity(Fraction(cores).limit_denominator(10**9), DECIMAL)


def memory(n_bytes: int) -> Quantity:
    return Quantity(Fraction(n_bytes), BINARY)
