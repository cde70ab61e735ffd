"""Label and field selectors, in the query-string and the `LabelSelector` object forms.

The grammar follows k8s.io/apimachinery/pkg/labels: `a=b`, `a==b`, `a!=b`, `a in (x,y)`,
`a notin (x)`, `a` (exists), `!a` (does not exist), comma-separated and ANDed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from tests.fakes.kubeapi import status

JSON = dict[str, Any]
Predicate = Callable[[dict[str, str]], bool]

_SET_RE = re.compile(r"^\s*(!?)\s*([A-Za-z0-9_./-]+)\s*(?:(in|notin)\s*\(([^)]*)\))?\s*$")


def _split_terms(text: str) -> list[str]:
    """Split on commas that are not inside `( ... )`."""
    terms: list[str] = []
    depth = 0
    current = ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += ch
    terms.append(current)
    return [t.strip() for t in terms if t.strip()]


def parse_label_selector(text: str) -> Predicate:
    """Compile a `labelSelector` query value; 400 BadRequest on a syntax error, like the server."""
    checks: list[Predicate] = []
    for term in _split_terms(text or ""):
        checks.append(_parse_term(term))

    def match(labels: dict[str, str]) -> bool:
        return all(c(labels) for c in checks)

    return match


def _parse_term(term: str) -> Predicate:
    for op in ("!=", "==", "="):
        if op in term and "(" not in term:
            key, _, value = term.partition(op)
            key, value = key.strip(), value.strip()
            if not key:
                break
            return _equality(key, value, negate=op == "!=")
    m = _SET_RE.match(term)
    if not m:
        raise status.bad_request(f"unable to parse requirement: {term!r}")
    negate, key, op, values_s = m.groups()
    if op:
        if negate:
            raise status.bad_request(f"unable to parse requirement: {term!r}")
        values = {v.strip() for v in values_s.split(",") if v.strip()}
        return _membership(key, values, negate=op == "notin")
    return _existence(key, negate=bool(negate))


def _equality(key: str, value: str, negate: bool) -> Predicate:
    def check(labels: dict[str, str]) -> bool:
        return (labels.get(key) == value) != negate

    return check


def _membership(key: str, values: set[str], negate: bool) -> Predicate:
    def check(labels: dict[str, str]) -> bool:
        return (labels.get(key) in values) != negate

    return check


def _existence(key: str, negate: bool) -> Predicate:
    def check(labels: dict[str, str]) -> bool:
        return (key in labels) != negate

    return check


def match_label_selector(selector: JSON | None, labels: dict[str, str]) -> bool:
    """A metav1.LabelSelector object: null matches nothing, `{}` matches everything."""
    if selector is None:
        return False
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key = expr.get("key", "")
        op = expr.get("operator", "")
        values = expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def _field_value(obj: JSON, path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(part)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def parse_field_selector(text: str, allowed: set[str]) -> Callable[[JSON], bool]:
    """Compile a `fieldSelector`; unsupported fields get 400 like the real server does."""
    checks: list[Callable[[JSON], bool]] = []
    for term in _split_terms(text or ""):
        op = "!=" if "!=" in term else ("==" if "==" in term else "=")
        field, _, value = term.partition(op)
        field, value = field.strip(), value.strip()
        if field not in allowed:
            raise status.bad_request(f"field label not supported: {field}")
        checks.append(_field_check(field, value, negate=op == "!="))

    def match(obj: JSON) -> bool:
        return all(c(obj) for c in checks)

    return match


def _field_check(field: str, value: str, negate: bool) -> Callable[[JSON], bool]:
    def check(obj: JSON) -> bool:
        return (_field_value(obj, field) == value) != negate

    return check
