"""The one deep merge (``domain.mappings``): how policy data files layer, how the
platform's parameter updates accumulate, and how Helm values files merge.

Cases: a new key is added; an object merges key by key, at any depth; a scalar, a list or
null replaces what was there (lists are not concatenated); an object replaces a scalar and
a scalar an object; the inputs are not mutated; merge_all layers each over the ones
before it (none: empty). The one key-path lookup (``mappings.at``): the value at a path,
the whole mapping for the empty path, None where a key is missing or the way runs through
a scalar, a list or null. Where two documents first differ (``first_difference``): the
path and both values, keys in text order, list items named by `name` or by position, the
top ("") when they are not two mappings or two lists of one length.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from reconciler.domain import mappings


@pytest.mark.parametrize(("base", "update", "expected"), [
    ({}, {"a": 1}, {"a": 1}),
    ({"a": 1}, {"b": 2}, {"a": 1, "b": 2}),
    ({"a": {"x": 1, "y": 2}}, {"a": {"y": 3}}, {"a": {"x": 1, "y": 3}}),
    ({"a": {"b": {"c": 1, "d": 2}}}, {"a": {"b": {"d": 5, "e": 6}}},
     {"a": {"b": {"c": 1, "d": 5, "e": 6}}}),
    ({"a": [1, 2]}, {"a": [3]}, {"a": [3]}),
    ({"a": 1}, {"a": None}, {"a": None}),
    ({"a": 1}, {"a": {"x": 1}}, {"a": {"x": 1}}),
    ({"a": {"x": 1}}, {"a": 2}, {"a": 2}),
])
def test_merge(base: dict[str, Any], update: dict[str, Any], expected: dict[str, Any]) -> None:
    b, u = copy.deepcopy(base), copy.deepcopy(update)
    assert mappings.deep_merge(base, update) == expected
    assert (base, update) == (b, u)


def test_merge_all_layers_later_over_earlier() -> None:
    assert mappings.merge_all([{"a": {"x": 1}}, {"a": {"y": 2}}, {"a": {"x": 3}}]) == {
        "a": {"x": 3, "y": 2}}
    assert mappings.merge_all([]) == {}


@pytest.mark.parametrize(("node", "path", "expected"), [
    ({"a": {"b": {"c": 1}}}, ("a", "b", "c"), 1),
    ({"a": {"b": {"c": 1}}}, ("a", "b"), {"c": 1}),
    ({"a": 1}, (), {"a": 1}),
    ({"a": {"b": 1}}, ("a", "x"), None),
    ({"a": 1}, ("a", "b"), None),
    ({"a": [{"b": 1}]}, ("a", "b"), None),
    ({"a": None}, ("a", "b"), None),
    ("text", ("a",), None),
])
def test_at(node: Any, path: tuple[str, ...], expected: Any) -> None:
    assert mappings.at(node, path) == expected


@pytest.mark.parametrize(("a", "b", "expected"), [
    ({"spec": {"replicas": 2}}, {"spec": {"replicas": 3}}, ("spec.replicas", 2, 3)),
    ({"b": 1, "a": 1}, {"b": 2, "a": 2}, ("a", 1, 2)),
    ({"a": 1}, {}, ("a", 1, None)),
    ({"c": [{"name": "web", "x": 1}, {"name": "db", "x": 1}]},
     {"c": [{"name": "web", "x": 1}, {"name": "db", "x": 2}]}, ("c[db].x", 1, 2)),
    ({"c": [1, 2]}, {"c": [1, 3]}, ("c[1]", 2, 3)),
    ({"c": [1]}, {"c": [1, 2]}, ("c", [1], [1, 2])),
    ({1: "a"}, {1: "b"}, ("1", "a", "b")),
    ("x", {"a": 1}, ("", "x", {"a": 1})),
])
def test_first_difference(a: Any, b: Any, expected: tuple[str, Any, Any]) -> None:
    assert mappings.first_difference(a, b) == expected
