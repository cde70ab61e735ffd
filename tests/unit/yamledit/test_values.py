"""Byte-exact edits of Helm values files (reconciler.yamledit.values).

Cases covered:
- golden files in tests/golden/layout/values (NAME.in.yaml + NAME.changes.json ->
  NAME.out.yaml): byte-for-byte output; every changed diff line holds a new value or an
  inserted key (or is the old line of a replaced value); the reported lines show the new
  values; the output parses (independently, yaml.safe_load) to the input plus exactly the
  requested values; re-applying is a no-op. Cases: the real microservices-demo Helm values
  (replace, insert replicas, insert a limit), CRLF + 4-space indentation + double quotes,
  `key:`/`~`/`{}` placeholders with comments, flow mappings, numerically equal values
  (no-op) and a file without a final newline;
- every golden case again with LF and CRLF line endings;
- errors: a path through a sequence or a scalar, a value that is also a parent, hostile
  values and keys, a leaf that is a mapping, a multi-document values file, an anchored
  value;
- no changes return the text unchanged.

``check_minimal_diff`` and the golden helpers are shared with test_kustomize.py.
"""

from __future__ import annotations

import difflib
import json
import pathlib
import re
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from reconciler.domain import errors, quantity
from reconciler.yamledit import splice, values

GOLDEN = pathlib.Path(__file__).resolve().parents[2] / "golden" / "layout"
KEY_ONLY = re.compile(r"^\s*(?:-\s+)?[A-Za-z][\w-]*:\s*(?:#.*)?$")


def _read(path: pathlib.Path) -> str:
    return path.read_bytes().decode("utf-8")


def _cases(sub: str) -> list[str]:
    return sorted(p.name[: -len(".in.yaml")] for p in (GOLDEN / sub).glob("*.in.yaml"))


def golden(sub: str, name: str, eol: str, spec: str) -> tuple[str, str, Any]:
    """Input, expected output and the requested change of one golden case, with every line
    ending of the texts made ``eol`` ("" keeps the files' own)."""

    def read(suffix: str) -> str:
        text = _read(GOLDEN / sub / f"{name}{suffix}")
        return text if not eol else text.replace("\r\n", "\n").replace("\n", eol)

    spec_data = json.loads(_read(GOLDEN / sub / f"{name}.{spec}.json"))
    return read(".in.yaml"), read(".out.yaml"), spec_data



def check_minimal_diff(
    source: str, result: splice.EditResult, extra_ok: Callable[[str], bool] = lambda _: False
) -> None:
    """Every added line holds a new value or opens an inserted key; every removed line held
    an old value (or was a placeholder turned into a block)."""
    new_values = {c.new for c in result.changes}
    old_values = {c.old for c in result.changes if c.old is not None}
    diff = list(difflib.ndiff(source.splitlines(), result.text.splitlines()))
    added = [line[2:] for line in diff if line.startswith("+ ")]
    removed = [line[2:] for line in diff if line.startswith("- ")]
    for line in added:
        assert any(v in line for v in new_values) or KEY_ONLY.match(line) or extra_ok(line), line
    for line in removed:
        converted = re.sub(r":\s+(?:\{\}|~|\[\])(\s*(?:#.*)?)$", r":\1", line)
        assert any(v in line for v in old_values) or converted in added, line
    lines = result.text.splitlines()
    for c in result.changes:
        assert c.new in lines[c.line - 1], c
    if not result.changes:
        assert result.text == source


def _get(data: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        data = data[key]
    return data


# --------------------------------------------------------------------------- values


@pytest.mark.parametrize("eol", ["", "\n", "\r\n"])
@pytest.mark.parametrize("name", _cases("values"))
def test_values_golden(name: str, eol: str) -> None:
    source, expected, changes = golden("values", name, eol, "changes")
    result = values.edit_values(source, changes)
    assert result.text == expected
    check_minimal_diff(source, result)
    old, new = yaml.safe_load(source), yaml.safe_load(result.text)
    for path, value in changes.items():
        got = _get(new, path)
        assert str(got) == str(value) or quantity.same(str(got), str(value)), path
    # Nothing else moved: drop the changed paths from both and compare.
    for data in (old, new):
        for path in changes:
            parent, _, leaf = path.rpartition(".")
            try:
                holder = _get(data, parent)
            except (KeyError, TypeError):
                continue
            if isinstance(holder, dict):
                holder.pop(leaf, None)
    assert _prune(old) == _prune(new)
    again = values.edit_values(result.text, changes)
    assert again.text == result.text and again.changes == ()


def _prune(data: Any) -> Any:
    """Empty mappings and nulls left behind by removing changed leaves compare equal."""
    if isinstance(data, dict):
        out = {k: _prune(v) for k, v in data.items()}
        return {k: v for k, v in out.items() if v not in ({}, None)}
    return data


def test_values_golden_set_covers_the_brief() -> None:
    assert {"real_values", "crlf_indent4_quoted", "placeholders", "flow", "noop_no_eol",
            "insert_no_eol"} <= set(_cases("values"))  # fmt: skip
    assert _read(GOLDEN / "values" / "real_values.in.yaml") == _read(
        pathlib.Path("/work/shared/data/microservices-demo/helm-chart/values.yaml")
    ) or not pathlib.Path("/work/shared/data/microservices-demo").exists()


@pytest.mark.parametrize(
    ("text", "changes", "error"),
    [
        ("a:\n- x: 1\n", {"a.x": "1"}, errors.PermanentError),  # through a sequence
        ("a: 1\n", {"a.b": "2"}, errors.PermanentError),  # through a scalar
        ("a: {}\n", {"a.b": "1", "a.b.c": "2"}, errors.PermanentError),  # value and parent
        ("a: {}\n", {"a.b": "1\nc: 2"}, errors.FieldError),  # injection
        ("a: {}\n", {"a.b": "#1"}, errors.FieldError),
        ("a: {}\n", {"a.b": ""}, errors.FieldError),
        ("a: {}\n", {"a.b": -1}, errors.FieldError),
        ("a: {}\n", {"a.b": True}, errors.FieldError),
        ("a: {}\n", {"a.b c": "1"}, errors.FieldError),  # key needs quoting
        ("a: {}\n", {"": "1"}, errors.FieldError),
        ("a:\n  b:\n    c: 1\n", {"a.b": "2"}, errors.PermanentError),  # leaf is a mapping
        ("a: 1\n---\nb: 2\n", {"a": "2"}, errors.PermanentError),  # two documents
        ("base: &b\n  cpu: 1\nother: *b\n", {"base.cpu": "2"}, errors.PermanentError),
    ],
)
def test_values_errors(text: str, changes: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        values.edit_values(text, changes)


def test_values_empty_changes_return_the_text_unchanged() -> None:
    assert values.edit_values("a: 1\n", {}) == splice.EditResult("a: 1\n", ())
