"""Byte-exact edits of Helm values files (reconciler.yamledit.values).

Cases covered:
- golden files in tests/golden/layout/values (NAME.in.yaml + NAME.changes.json ->
  NAME.out.yaml): byte-for-byte output; every changed diff line holds a new value or an
  inserted key (or is the old line of a replaced value); the reported lines show the new
  values; the output parses (independently, yaml.safe_load) to the input plus exactly the
  requested values; re-applying is a no-op. Cases: the real microservices-demo Helm values
  (replace, insert replicas, insert a limit), CRLF + 4-space indentation + double quotes,
  `key:`/`~`/`{}` placeholders with comments, flow mappings, numerically equal values
  (no-op) and a file without a final newline; the values.yaml `helm create` writes
  (top-level `replicaCount`, `resources: {}` followed by its commented-out examples, which
  stay byte for byte under the new block); a parent chart with a subchart's section
  (`redis.master.resources`, `redis.replica.replicaCount`) beside its own top-level values;
  keys that need quoting (`"my.app"`, `["my.app"]`, `'team.io/worker'`); a file with
  trailing tabs after values, after `:` and before a comment (Go's YAML reads it);
- every golden case again with LF and CRLF line endings, and again with PyYAML's
  pure-Python loader (which refuses the tabs Go skips: the editor falls back to a
  tab-normalized copy for positions and still writes the original bytes);
- values paths: the quoted forms read as the same keys as the plain ones, the canonical
  spelling reads back, the top level is "" or "." only where allowed; malformed paths
  name the character; one key spelled two ways in one change set is refused; a missing
  key that needs quoting is inserted double-quoted;
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
    for key in values.split_path(dotted, root=True):
        data = data[key]
    return data


def _load(text: str) -> Any:
    """The data of a golden text, read apart from the editor: PyYAML's pure-Python loader,
    or libyaml for a text with the tabs only libyaml and Go read (test_tabs.py)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return yaml.load(text, Loader=yaml.CSafeLoader)


# --------------------------------------------------------------------------- values


@pytest.mark.parametrize("eol", ["", "\n", "\r\n"])
@pytest.mark.parametrize("name", _cases("values"))
def test_values_golden(name: str, eol: str) -> None:
    source, expected, changes = golden("values", name, eol, "changes")
    result = values.edit_values(source, changes)
    assert result.text == expected
    check_minimal_diff(source, result)
    old, new = _load(source), _load(result.text)
    for path, value in changes.items():
        got = _get(new, path)
        assert str(got) == str(value) or quantity.same(str(got), str(value)), path
    # Nothing else moved: drop the changed paths from both and compare.
    for data in (old, new):
        for path in changes:
            *parent, leaf = values.split_path(path)
            try:
                holder = _get(data, values.join_path(parent))
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


@pytest.mark.parametrize("name", _cases("values"))
def test_values_golden_with_the_pure_python_loader(name: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    source, expected, changes = golden("values", name, "", "changes")
    monkeypatch.setattr(splice, "LOADER", yaml.SafeLoader)
    result = values.edit_values(source, changes)
    assert result.text == expected
    assert values.edit_values(result.text, changes).changes == ()


def test_values_golden_set_covers_the_brief() -> None:
    assert {"real_values", "crlf_indent4_quoted", "placeholders", "flow", "noop_no_eol",
            "insert_no_eol", "helm_create", "subchart", "quoted_key",
            "trailing_tabs"} <= set(_cases("values"))  # fmt: skip
    helm_create = _read(GOLDEN / "values" / "helm_create.in.yaml")
    assert "\nresources: {}\n  # We usually recommend" in helm_create
    assert "\t\n" in _read(GOLDEN / "values" / "trailing_tabs.in.yaml")
    with pytest.raises(yaml.YAMLError):  # the case the fallback exists for
        yaml.safe_load(_read(GOLDEN / "values" / "trailing_tabs.in.yaml"))


def test_helm_create_comment_block_stays_under_the_new_block() -> None:
    source, expected, changes = golden("values", "helm_create", "", "changes")
    comments = source[source.index("  # We usually recommend"):source.index("\n\n# This is to "
                                                                         "setup the liveness")]
    out = values.edit_values(source, changes).text
    assert out == expected
    head, _, tail = out.partition("resources:\n  requests:\n    cpu: 50m\n    memory: 64Mi\n"
                                  "  limits:\n    memory: 128Mi\n")
    assert tail.startswith(comments)  # the examples stay under `resources:`, as they were
    head = head.replace("\nreplicaCount: 3\n", "\nreplicaCount: 1\n", 1)
    assert head + "resources: {}\n" + tail == source  # and nothing else moved


@pytest.mark.parametrize(
    ("path", "keys"),
    [
        ("a.b", ("a", "b")),
        ("my-app.resources", ("my-app", "resources")),
        ('"my.app".resources', ("my.app", "resources")),
        ("'my.app'.resources", ("my.app", "resources")),
        ('["my.app"].resources', ("my.app", "resources")),
        ("a['b.c'].d", ("a", "b.c", "d")),
        ("'it''s'", ("it's",)),
        ('"say \\"hi\\""', ('say "hi"',)),
        ('"caf\\u00e9"', ("caf\u00e9",)),
    ],
)
def test_values_path_syntax(path: str, keys: tuple[str, ...]) -> None:
    assert values.split_path(path) == keys
    assert values.split_path(values.join_path(keys)) == keys


def test_values_path_top_level() -> None:
    assert values.split_path("", root=True) == values.split_path(".", root=True) == ()
    assert values.child_path(".", "resources") == "resources"
    assert values.child_path('"my.app"', "resources") == '"my.app".resources'
    for top in ("", "."):
        with pytest.raises(errors.FieldError, match="top level"):
            values.split_path(top)


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("a..b", "empty key at character 3"),
        ("a.", "missing at the end"),
        (".a", "empty key at character 1"),
        ('"a.b', "unterminated or invalid quoted key at character 1"),
        ('["a"', "missing ] after the key"),
        ("[a]", "not plain"),
        ("a b", "unexpected ' ' at character 2"),
        ('a"b"', "unexpected '\"' at character 2"),
        ('a.""', "is empty"),
        ('"\\u0007"', "control character"),
        ("a.b/c", "unexpected '/'"),
        ('"' + "k" * 1025 + '"', "longer than 1024"),
        ('"a\\u2028b"', "control character"),
    ],
)
def test_values_path_errors_name_the_place(path: str, reason: str) -> None:
    with pytest.raises(errors.FieldError, match=re.escape(reason)):
        values.split_path(path)


def test_values_one_key_two_spellings_is_refused() -> None:
    with pytest.raises(errors.PermanentError, match="name the same key"):
        values.edit_values('"a":\n  b: 1\n', {"a.b": "2", '"a".b': "3"})


def test_values_missing_key_that_needs_quoting_is_inserted_quoted() -> None:
    source = "global:\n  x: 1\n"
    result = values.edit_values(source, {'global."svc.v2".resources.requests.cpu': "100m",
                                         "global.on.replicas": 2,
                                         "global.'my app'.replicas": 1})
    # A dotted key reads as itself plain (as files write `app.kubernetes.io/name:`); `on`
    # would read as true and `my app` is not one token: those are quoted.
    assert result.text == ('global:\n  x: 1\n  svc.v2:\n    resources:\n      requests:\n'
                           '        cpu: 100m\n  "on":\n    replicas: 2\n'
                           '  "my app":\n    replicas: 1\n')
    data = yaml.safe_load(result.text)["global"]
    assert data["on"] == {"replicas": 2} and data["my app"] == {"replicas": 1}
    assert data["svc.v2"] == {"resources": {"requests": {"cpu": "100m"}}}
    assert [c.path for c in result.changes] == ['global."svc.v2".resources.requests.cpu',
                                                "global.on.replicas", "global.'my app'.replicas"]
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
