"""Kubernetes resource quantities: parsing, canonical form, comparison and rejections.

Cases covered:
- canonical strings, table-driven, as the API server's ``resource.Quantity`` stores them:
  ``250m``, ``0.5`` -> ``500m``, ``1``, ``256Mi``, ``1G``, ``1e3``, ``1.5Gi`` -> ``1536Mi``,
  ``1000`` -> ``1k``, ``2000m`` -> ``2``, ``0.1`` -> ``100m``, ``100Mi``, ``1024``, ``1024Mi``
  -> ``1Gi``, ``1000M`` -> ``1G``, fractional binary below 1Ki turning decimal, ``1.`` and
  ``1.G``, exponent forms (``1E-3``, ``1.3E+6``, ``80e-3``), signs, zero in every family;
- YAML numbers (ints and floats) parse like the same text;
- finer than nano is rounded up (``3.001n`` -> ``4n``, ``0.00000012345`` -> ``124n``);
- equality and hashing across forms (``1.5Gi == 1536Mi == 1610612736``), ordering and
  sorting;
- ``.cores`` (float cores) and ``.bytes`` (whole bytes, rounded up);
- ``cpu()`` and ``memory()`` constructors used by planners;
- rejections with a message that says why: empty, ``abc``, ``1.2.3``, ``--1``, ``1Kb``,
  ``1 Mi``, ``1e999``, invalid suffixes from the apimachinery test table, booleans, None,
  other types, strings longer than 64 characters, NaN and infinite floats;
- leading/trailing whitespace is refused, as the API server does;
- ``same``: equal values in other forms are the same, text that is no quantity only
  matches itself (both orders).

Expected canonical forms come from the Kubernetes sources: the ``Quantity`` API reference
(kubernetes.io/docs/reference/kubernetes-api/common-definitions/quantity: "1.5 will be
serialized as 1500m, 1.5Gi will be serialized as 1536Mi", "0.1m will be rounded up to 1m")
and ``staging/src/k8s.io/apimachinery/pkg/api/resource/quantity_test.go`` in
kubernetes/kubernetes (tables ``TestQuantityParse``, ``TestQuantityString``,
``TestQuantityParseEmit``); each case below names its source.
"""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from reconciler.domain import quantity

DOC = "k8s Quantity API reference"
QT = "apimachinery quantity_test.go"


@pytest.mark.parametrize(
    ("raw", "expected", "source"),
    [
        ("250m", "250m", DOC),
        ("0.5", "500m", QT + " TestQuantityString (500m alternate 0.5)"),
        ("1", "1", QT + " TestQuantityParse"),
        ("256Mi", "256Mi", QT + " TestQuantityString (300Mi)"),
        ("1G", "1G", QT + " TestQuantityString"),
        ("1e3", "1e3", QT + " TestQuantityString (decQuantity(1, 3, DecimalExponent))"),
        ("1.5", "1500m", DOC),
        ("1.5Gi", "1536Mi", DOC),
        ("1000", "1k", QT + " TestQuantityString (3k: largest suffix, integer mantissa)"),
        ("2000m", "2", DOC + " (exponent as large as possible)"),
        ("0.1", "100m", DOC),
        ("100Mi", "100Mi", QT + " TestQuantityString"),
        ("1024", "1024", QT + " TestQuantityString (1025 BinarySI stays 1025)"),
        ("1024Mi", "1Gi", QT + " TestQuantityParseEmit"),
        ("1000M", "1G", QT + " TestQuantityParseEmit"),
        ("1.08", "1080m", QT + " TestQuantityString"),
        ("1Ki", "1Ki", QT + " TestQuantityParseEmit"),
        (".001Ki", "1024m", QT + " TestQuantityParseEmit (below 1Ki: decimal)"),
        (".000001Ki", "1024u", QT + " TestQuantityParseEmit"),
        (".000000001Ki", "1024n", QT + " TestQuantityParseEmit"),
        (".000000000001Ki", "2n", QT + " TestQuantityParseEmit (rounds up, turns decimal)"),
        ("0.5Ki", "512", QT + " BinarySI below 1024 is shown as DecimalSI"),
        ("1.5Ki", "1536", QT + " BinarySI not a multiple of 1Ki has no binary suffix"),
        ("0.5Mi", "512Ki", QT + " TestQuantityParse (fractional binary accepted)"),
        ("1.", "1", QT + " TestQuantityParse (things written by trolls)"),
        ("1.G", "1G", QT + " TestQuantityParse (things written by trolls)"),
        ("1E-3", "1e-3", QT + " TestQuantityParse / TestQuantityString"),
        ("1.3E+6", "1300e3", QT + " TestQuantityParse (1.3E+6), exponent a multiple of 3"),
        ("80e-3", "80e-3", QT + " TestQuantityString"),
        ("1.2e3", "1200", QT + " TestQuantityParse (1.2e3), exponent 0 has no suffix"),
        ("0", "0", QT + " TestQuantityParseZero"),
        ("0Mi", "0", QT + " TestQuantityString (0 BinarySI is 0)"),
        ("0m", "0", QT + " TestQuantityCanocicalizeZero"),
        ("-9.01", "-9010m", QT + " TestQuantityNeg"),
        ("+250m", "250m", DOC + " (<sign> ::= + | -; sign omitted unless negative)"),
        ("-1Gi", "-1Gi", QT + " TestQuantityParseEmit (negative)"),
        ("1080n", "1080n", QT + " TestQuantityString"),
        ("1u", "1u", QT + " TestQuantityString"),
    ],
)
def test_canonical_form(raw: str, expected: str, source: str) -> None:
    assert quantity.canonical(raw) == expected, source
    # The canonical string is a fixed point: parsing it again changes neither value nor text.
    again = quantity.parse(expected)
    assert again.value == quantity.parse(raw).value
    assert str(again) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (3.001e-9, "4e-9"),     # float text "3.001e-09": exponent form, rounded up to nano
        ("3.001n", "4n"),                 # QT TestQuantityParse "things that saturate/round"
        ("0.00000012345", "124n"),        # QT TestQuantityParse
        ("0.9n", "1n"),                   # QT TestQuantityParse
        ("0.0000000001", "1n"),           # QT TestQuantityParse
        ("1.1E-9", "2e-9"),               # QT TestQuantityParse (decQuantity(2, -9, Exp))
        ("1.0000000001", "1000000001n"),  # one unit above 1, finer than nano: up to 1n more
    ],
)
def test_finer_than_nano_rounds_up(raw: str | float, expected: str) -> None:
    assert quantity.canonical(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (1, "1"),
        (2, "2"),
        (1000, "1k"),
        (1024, "1024"),
        (0, "0"),
        (1610612736, "1610612736"),  # an integer in bytes stays DecimalSI, like the text
        (0.5, "500m"),
        (0.1, "100m"),
        (1.0, "1"),
        (256.0, "256"),
        (2.5, "2500m"),
        (1e20, "100e18"),  # Python writes 1e+20: exponent form, as the API server would
    ],
)
def test_yaml_numbers(raw: int | float, expected: str) -> None:
    """YAML gives ints and floats for unquoted ``cpu: 1`` or ``cpu: 0.5``."""
    assert quantity.canonical(raw) == expected


def test_yaml_number_equals_its_text() -> None:
    assert quantity.parse(0.5) == quantity.parse("0.5") == quantity.parse("500m")
    assert quantity.parse(2) == quantity.parse("2") == quantity.parse("2000m")


@pytest.mark.parametrize(
    "forms",
    [
        ("1.5Gi", "1536Mi", "1610612736", 1610612736, "1572864Ki"),
        ("0.5", "500m", 0.5, "500000u", "5e-1"),
        ("1", "1000m", 1, "1e0", "0.001k"),
        ("1k", "1000", "1e3", 1000),
        ("1Mi", "1024Ki", "1048576"),
    ],
)
def test_equal_across_forms(forms: tuple[str | int | float, ...]) -> None:
    parsed = [quantity.parse(f) for f in forms]
    first = parsed[0]
    for q in parsed[1:]:
        assert q == first
        assert hash(q) == hash(first)
    assert len(set(parsed)) == 1


def test_not_equal_to_other_types() -> None:
    assert quantity.parse("1") != 1
    assert quantity.parse("1") != "1"
    assert quantity.parse("1k") != quantity.parse("1Ki")


@pytest.mark.parametrize(
    ("small", "large"),
    [
        ("50m", "100m"),       # QT TestQuantityCmp
        ("100Gi", "10000T"),   # QT TestQuantityCmp
        ("999m", "1"),
        ("1k", "1Ki"),
        ("1G", "1Gi"),
        ("-1", "0"),
        ("1535Mi", "1.5Gi"),
    ],
)
def test_ordering(small: str, large: str) -> None:
    a, b = quantity.parse(small), quantity.parse(large)
    assert a < b
    assert a <= b
    assert b > a
    assert b >= a
    assert not b < a
    assert not b <= a
    assert a != b


def test_sorting_mixed_forms() -> None:
    raw = ["1Gi", "500m", "1G", "2", "1k", "1Ki", "0.1"]
    ordered = sorted(quantity.parse(r) for r in raw)
    assert [str(q) for q in ordered] == ["100m", "500m", "2", "1k", "1Ki", "1G", "1Gi"]


def test_le_on_equal_values() -> None:
    assert quantity.parse("1.5Gi") <= quantity.parse("1536Mi")
    assert not quantity.parse("1.5Gi") < quantity.parse("1536Mi")


@pytest.mark.parametrize(
    ("raw", "cores"),
    [("250m", 0.25), ("1", 1.0), ("1500m", 1.5), ("0.1", 0.1), ("2k", 2000.0), ("5n", 5e-9)],
)
def test_cores(raw: str, cores: float) -> None:
    got = quantity.parse(raw).cores
    assert isinstance(got, float)
    assert got == pytest.approx(cores, rel=1e-12)


@pytest.mark.parametrize(
    ("raw", "n_bytes"),
    [
        ("1Mi", 1048576),
        ("64Mi", 67108864),
        ("1.5Gi", 1610612736),
        ("1G", 1_000_000_000),
        ("1k", 1000),
        ("1", 1),
        ("0.5", 1),    # rounded up: never fewer bytes than asked for
        ("100m", 1),
        ("1001m", 2),
    ],
)
def test_bytes(raw: str, n_bytes: int) -> None:
    got = quantity.parse(raw).bytes
    assert isinstance(got, int)
    assert got == n_bytes


@pytest.mark.parametrize(
    ("cores", "expected"),
    [(0.15, "150m"), (0.25, "250m"), (2, "2"), (Fraction(1, 3), "333333334n"), (1.5, "1500m")],
)
def test_cpu_constructor(cores: float | int | Fraction, expected: str) -> None:
    assert str(quantity.cpu(cores)) == expected


@pytest.mark.parametrize(
    ("n_bytes", "expected"),
    [(1610612736, "1536Mi"), (1 << 30, "1Gi"), (1536, "1536"), (0, "0"),
     # below 1024 a BinarySI value is shown as DecimalSI (QT TestQuantityString)
     (1000, "1k"), (512, "512")],
)
def test_memory_constructor(n_bytes: int, expected: str) -> None:
    q = quantity.memory(n_bytes)
    assert str(q) == expected
    assert q.bytes == n_bytes


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("abc", "not a quantity"),
        ("1.2.3", "not a quantity"),
        ("--1", "not a quantity"),
        ("1Kb", "not a quantity"),
        ("1 Mi", "not a quantity"),
        ("1e999", "exponent out of range"),
        ("1.1.M", "not a quantity"),     # QT TestQuantityParse invalid
        ("1+1.0M", "not a quantity"),    # QT
        ("0.1mi", "not a quantity"),     # QT
        ("0.1am", "not a quantity"),     # QT
        (".5i", "not a quantity"),       # QT
        ("1i", "not a quantity"),        # QT
        ("-3.01e-", "not a quantity"),   # QT
        ("1e4294967297", "exponent out of range"),  # QT: exponent past int32
        ("1KI", "not a quantity"),
        ("1mi", "not a quantity"),
        ("Mi", "not a quantity"),
        ("0x10", "not a quantity"),
        ("1_000", "not a quantity"),
        ("١", "not a quantity"),  # an Arabic-Indic digit is not [0-9]
        ("1" * 65, "too long"),
        ("1" * 60 + "e999", "exponent out of range"),
    ],
)
def test_rejected_strings(raw: str, needle: str) -> None:
    with pytest.raises(quantity.QuantityError) as exc:
        quantity.parse(raw)
    assert needle in str(exc.value)
    if raw.strip():
        # The message quotes the input so an author can find it.
        assert repr(raw)[:20] in str(exc.value) or raw[:20] in str(exc.value)


def test_rejection_lists_expected_suffixes() -> None:
    with pytest.raises(quantity.QuantityError, match=r"suffix such as m, Ki, Mi"):
        quantity.parse("1Kb")


def test_rejection_is_a_value_error() -> None:
    # Callers that only know ValueError still catch it.
    with pytest.raises(ValueError):
        quantity.parse("abc")


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (True, "boolean"),
        (False, "boolean"),
        (None, "expected a string or number, got NoneType"),
        ([1], "expected a string or number, got list"),
        ({"cpu": 1}, "expected a string or number, got dict"),
        (b"1", "expected a string or number, got bytes"),
        (math.nan, "not a finite number"),
        (math.inf, "not a finite number"),
        (-math.inf, "not a finite number"),
    ],
)
def test_rejected_values(raw: object, needle: str) -> None:
    with pytest.raises(quantity.QuantityError) as exc:
        quantity.parse(raw)  # type: ignore[arg-type]
    assert needle in str(exc.value)


def test_sixty_four_characters_is_the_limit() -> None:
    assert quantity.parse("1" + "0" * 63).value == 10**63
    with pytest.raises(quantity.QuantityError, match="too long"):
        quantity.parse("1" + "0" * 64)


@pytest.mark.parametrize("raw", [" 1", "1 ", "\t250m", "256Mi\n"])
def test_surrounding_whitespace_rejected(raw: str) -> None:
    with pytest.raises(quantity.QuantityError):
        quantity.parse(raw)


@pytest.mark.parametrize(("a", "b", "same"), [
    ("200m", "0.2", True),
    ("1Gi", "1024Mi", True),
    ("1", "1000m", True),
    ("100m", "101m", False),
    ("abc", "abc", True),     # not quantities: identical text only
    ("abc", "abd", False),
    ("abc", "100m", False),
])
def test_same(a: str, b: str, same: bool) -> None:
    assert quantity.same(a, b) is same
    assert quantity.same(b, a) is same
