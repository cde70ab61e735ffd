"""Label selector matching (reconciler.core.selectors), table-driven against the semantics of
apimachinery's LabelSelectorAsSelector / Requirement.Matches.

Cases:
- null selector matches nothing (even an object without labels); empty `{}` and a selector
  with empty matchLabels/matchExpressions match everything;
- matchLabels: all pairs must be present with equal values; extra labels are fine;
- In: key present with one of the values; absent key does not match;
- NotIn: absent key matches; present with a listed value does not; another value does;
- Exists / DoesNotExist, with present and absent keys;
- matchLabels AND matchExpressions, and several expressions ANDed;
- malformed selectors raise SelectorError: unknown operator, In/NotIn without values,
  Exists/DoesNotExist with values, invalid key, invalid value, non-string value,
  wrong container types;
- parse() result is reusable: `everything` / `nothing` flags, None labels.
"""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.domain import selectors

WEB = {"app": "web", "tier": "front"}


def expr(key: str, op: str, *values: str) -> dict[str, Any]:
    out: dict[str, Any] = {"key": key, "operator": op}
    if values:
        out["values"] = list(values)
    return out


@pytest.mark.parametrize("selector, labels, expected", [
    # null and empty
    (None, WEB, False),
    (None, {}, False),
    ({}, WEB, True),
    ({}, {}, True),
    ({"matchLabels": {}, "matchExpressions": []}, WEB, True),
    ({"matchLabels": None}, {}, True),
    # matchLabels
    ({"matchLabels": {"app": "web"}}, WEB, True),
    ({"matchLabels": {"app": "web", "tier": "front"}}, WEB, True),
    ({"matchLabels": {"app": "web", "tier": "back"}}, WEB, False),
    ({"matchLabels": {"app": "api"}}, WEB, False),
    ({"matchLabels": {"env": "prod"}}, WEB, False),
    ({"matchLabels": {"app": "web"}}, {}, False),
    ({"matchLabels": {"app": ""}}, {"app": ""}, True),
    ({"matchLabels": {"app": ""}}, {}, False),
    # In
    ({"matchExpressions": [expr("app", "In", "web", "api")]}, WEB, True),
    ({"matchExpressions": [expr("app", "In", "api")]}, WEB, False),
    ({"matchExpressions": [expr("env", "In", "prod")]}, WEB, False),
    # NotIn: absent key matches
    ({"matchExpressions": [expr("env", "NotIn", "prod")]}, WEB, True),
    ({"matchExpressions": [expr("app", "NotIn", "web")]}, WEB, False),
    ({"matchExpressions": [expr("app", "NotIn", "api", "db")]}, WEB, True),
    # Exists / DoesNotExist
    ({"matchExpressions": [expr("app", "Exists")]}, WEB, True),
    ({"matchExpressions": [expr("env", "Exists")]}, WEB, False),
    ({"matchExpressions": [expr("env", "DoesNotExist")]}, WEB, True),
    ({"matchExpressions": [expr("app", "DoesNotExist")]}, WEB, False),
    ({"matchExpressions": [{"key": "app", "operator": "Exists", "values": []}]}, WEB, True),
    # ANDed
    ({"matchLabels": {"app": "web"}, "matchExpressions": [expr("tier", "In", "front")]},
     WEB, True),
    ({"matchLabels": {"app": "web"}, "matchExpressions": [expr("tier", "In", "back")]},
     WEB, False),
    ({"matchLabels": {"app": "api"}, "matchExpressions": [expr("tier", "In", "front")]},
     WEB, False),
    ({"matchExpressions": [expr("app", "Exists"), expr("env", "DoesNotExist"),
                           expr("tier", "NotIn", "back")]}, WEB, True),
    ({"matchExpressions": [expr("app", "Exists"), expr("tier", "DoesNotExist")]}, WEB, False),
    # prefixed keys
    ({"matchLabels": {"app.kubernetes.io/name": "web"}}, {"app.kubernetes.io/name": "web"},
     True),
    ({"matchExpressions": [expr("example.com/team", "In", "a")]}, {"team": "a"}, False),
])
def test_matches(selector: dict[str, Any] | None, labels: dict[str, str],
                 expected: bool) -> None:
    assert selectors.matches(selector, labels) is expected


@pytest.mark.parametrize("selector, fragment", [
    ({"matchExpressions": [{"key": "app", "operator": "Equals", "values": ["web"]}]},
     "not a valid label selector operator"),
    ({"matchExpressions": [{"key": "app", "operator": "Gt", "values": ["1"]}]},
     "not a valid label selector operator"),
    ({"matchExpressions": [{"key": "app"}]}, "not a valid label selector operator"),
    ({"matchExpressions": [expr("app", "In")]}, "needs at least one value"),
    ({"matchExpressions": [expr("app", "NotIn")]}, "needs at least one value"),
    ({"matchExpressions": [expr("app", "Exists", "web")]}, "takes no values"),
    ({"matchExpressions": [expr("app", "DoesNotExist", "web")]}, "takes no values"),
    ({"matchLabels": {"bad key": "x"}}, "invalid label key"),
    ({"matchLabels": {"-app": "x"}}, "invalid label key"),
    ({"matchLabels": {"Example.COM/app": "x"}}, "bad prefix"),
    ({"matchLabels": {"/app": "x"}}, "bad prefix"),
    ({"matchLabels": {"a" * 64: "x"}}, "invalid label key"),
    ({"matchLabels": {"app": "not valid"}}, "invalid label value"),
    ({"matchLabels": {"app": "x" * 64}}, "invalid label value"),
    ({"matchLabels": {"app": 3}}, "must be a string"),
    ({"matchExpressions": [{"key": 7, "operator": "Exists"}]}, "must be a string"),
    ({"matchLabels": ["app"]}, "matchLabels must be an object"),
    ({"matchExpressions": {"key": "app"}}, "matchExpressions must be a list"),
    ({"matchExpressions": ["app"]}, "must be an object"),
    ({"matchExpressions": [{"key": "app", "operator": "In", "values": "web"}]},
     "must be a list"),
    ("app=web", "must be an object"),
])
def test_malformed(selector: Any, fragment: str) -> None:
    with pytest.raises(selectors.SelectorError, match=fragment):
        selectors.matches(selector, WEB)


@pytest.mark.parametrize("selector, everything, nothing", [
    (None, False, True),
    ({}, True, False),
    ({"matchLabels": {"app": "web"}}, False, False),
])
def test_parsed_flags(selector: dict[str, Any] | None, everything: bool, nothing: bool) -> None:
    parsed = selectors.parse(selector)
    assert (parsed.everything, parsed.nothing) == (everything, nothing)


@pytest.mark.parametrize("selector, expected", [
    ({}, True),
    (None, False),
    ({"matchExpressions": [expr("app", "DoesNotExist")]}, True),
    ({"matchExpressions": [expr("app", "Exists")]}, False),
])
def test_unlabelled_object(selector: dict[str, Any] | None, expected: bool) -> None:
    assert selectors.parse(selector).matches(None) is expected
