"""What a policy set reads of its input (embedded.input_shape) and the cut sent (project).

Cases covered:
- a reference ``input.a.b`` needs ``a.b`` whole, whatever follows it (a field, an index,
  a variable); ``input.a["b-c"]`` reads the key ``b-c``;
- ``object.get(input, <literal path>, d)`` needs the value at the path, over several lines
  too; with a path that is not a literal, or the empty path, the input is sent as it is;
- ``object.get(input.a, <literal path>, d)`` needs ``a`` (its type) and the path under it;
- ``input.a != null``, ``input.a == null`` and ``is_object(input.a)`` need only ``a`` with
  its type; a wider read of the same value wins;
- comments, strings and raw strings that mention ``input`` read nothing; ``data.input``
  and ``my_input`` are not the input;
- ``with input as x`` and ``with input.a as x`` write the input: nothing read;
  ``import input.a`` reads ``a``; ``import input`` reads everything;
- any other use of ``input`` (bare, ``input[k]``, ``walk(input, ...)``, ``x := input``) sends
  the input whole (None);
- project keeps what the shape names and is present, objects cut key by key, arrays and
  scalars and a value of an unexpected type whole; the input is not changed; None keeps all.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from reconciler.adapters.opa.embedded import input_shape, project


def _shape(body: str) -> Any:
    return input_shape([f"package t\n\n{body}\n"])


def test_a_reference_needs_its_value_whole_whatever_follows() -> None:
    assert _shape("x if input.a.b.c[k] == 1\ny if input.a.d") == {
        "a": {"b": {"c": None}, "d": None}}
    assert _shape('x := input.a["b-c"].d') == {"a": {"b-c": {"d": None}}}
    assert _shape("x if input.a\ny := input.a.b") == {"a": None}


def test_object_get_on_the_input_with_a_literal_path() -> None:
    assert _shape('x := object.get(input, ["a", "b"], {})') == {"a": {"b": None}}
    assert _shape('x := object.get(input, "a", {})') == {"a": None}
    assert _shape("x := object.get(input, p, {})") is None
    assert _shape("x := object.get(input, [], {})") is None
    assert _shape('x := object.get(\n\tinput,\n\t["a",\n\t"b"],\n\t{},\n)') == {"a": {"b": None}}


def test_object_get_on_a_reference_needs_its_type_and_the_path_under_it() -> None:
    assert _shape('x := object.get(input.a.b, ["c", "d"], "")\ny := object.get(input.a.b, "e", 0)'
                  ) == {"a": {"b": {"c": {"d": None}, "e": None}}}


@pytest.mark.parametrize("expr", ["input.a.b != null", "input.a.b == null",
                                  "is_object(input.a.b)"])
def test_presence_and_type_tests_need_only_the_value_there(expr: str) -> None:
    assert _shape(f"x if {expr}") == {"a": {"b": {}}}
    assert _shape(f"x if {expr}\ny := input.a.b") == {"a": {"b": None}}
    assert _shape(f"x if {expr}\ny := input.a.b.c") == {"a": {"b": {"c": None}}}


def test_comments_strings_and_other_names_are_not_reads() -> None:
    assert _shape('# input[x] and walk(input)\nx := "input" # input\ny := `input`\n'
                  "z := data.input.q\nw := my_input") == {}


def test_with_writes_and_import_reads() -> None:
    assert _shape("x := data.t.y with input as {}\nz := data.t.y with input.a as 1") == {}
    assert _shape("import input.a.b\nx := b.c") == {"a": {"b": None}}
    assert _shape("import input\nx := 1") is None


@pytest.mark.parametrize("body", ["x := input", "x if input[k] == 1", "x if walk(input, _)",
                                  "x := count(input)", "x if some k, _ in input",
                                  "x := json.marshal(input)"])
def test_any_other_use_sends_the_input_whole(body: str) -> None:
    assert _shape(body) is None


def test_every_module_counts() -> None:
    assert input_shape(["package a\n\nx := input.a", "package b\n\ny := input.b.c"]) == {
        "a": None, "b": {"c": None}}
    assert input_shape(["package a\n\nx := input.a", "package b\n\ny := input"]) is None


def test_project_keeps_what_the_shape_names() -> None:
    doc = {"a": {"b": [1, {"z": 2}], "c": {"d": 1, "e": 2}, "f": "x"}, "g": 1,
           "h": "not an object", "k": {}}
    before = copy.deepcopy(doc)
    shape = {"a": {"b": None, "c": {"d": None}, "missing": None}, "h": {"i": None},
             "k": {}}
    assert project(doc, shape) == {"a": {"b": [1, {"z": 2}], "c": {"d": 1}},
                                   "h": "not an object", "k": {}}
    assert doc == before
    assert project(doc, None) is doc
    assert project(doc, {}) == {}
