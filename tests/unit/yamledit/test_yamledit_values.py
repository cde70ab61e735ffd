"""Byte-exact edits of values files, Kustomize patches and kustomizations (yamledit additions).

Cases covered:
- golden files in tests/golden/layout/{values,patch,kustomization} (NAME.in.yaml + the
  change -> NAME.out.yaml): byte-for-byte output; every changed diff line holds a new value
  or an inserted key (or is the old line of a replaced value); the reported lines show the
  new values; the output parses (independently, yaml.safe_load) to the input plus exactly
  the requested values; re-applying is a no-op. Values cases: the real microservices-demo
  Helm values (replace, insert replicas, insert a limit), CRLF + 4-space indentation +
  double quotes, `key:`/`~`/`{}` placeholders with comments, flow mappings, numerically
  equal values (no-op) and a file without a final newline. Patch cases: an existing
  container (quoted, indented sequences), a container added to the list, a replicas-only
  patch that gains the pod template, a metadata-only CRLF StatefulSet patch with 4-space
  indentation, a two-document patchesStrategicMerge file. Kustomization cases: the real
  base kustomization (no patches key yet), an indented list with an already listed entry,
  `patches: []` with a comment and CRLF;
- every golden case again with LF and CRLF line endings;
- edit_kustomize_replicas: count changed in place, comment kept, missing entry refused;
- new_patch: parses to a partial object with only the changed values; hostile names refused;
- errors: a path through a sequence or a scalar, a value that is also a parent, hostile
  values and keys, a leaf that is a mapping, a multi-document values file, a patch that
  does not define the workload, two patches for one workload;
- read_document / document_lines agree with PyYAML on a multi-document stream;
- construct (the fast constructor) builds exactly what yaml.safe_load builds, types
  included: YAML 1.1 ints (octal, hex, signs, underscores), booleans, nulls, floats,
  timestamps, anchors and merge keys, non-string keys, explicit tags, binary;
- scan_documents returns only the named documents, with their data.
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
from reconciler.yamledit import splice as yamledit

GOLDEN = pathlib.Path(__file__).resolve().parents[2] / "golden" / "layout"
KEY_ONLY = re.compile(r"^\s*(?:-\s+)?[A-Za-z][\w-]*:\s*(?:#.*)?$")


def _read(path: pathlib.Path) -> str:
    return path.read_bytes().decode("utf-8")


def _cases(sub: str) -> list[str]:
    return sorted(p.name[: -len(".in.yaml")] for p in (GOLDEN / sub).glob("*.in.yaml"))


def _change(raw: dict[str, Any]) -> yamledit.WorkloadChange:
    return yamledit.WorkloadChange(
        raw["kind"], raw["name"], raw.get("namespace"),
        tuple(yamledit.ContainerChange(c["name"], c.get("requests", {}), c.get("limits", {}))
              for c in raw.get("containers", [])),
        raw.get("replicas"),
    )  # fmt: skip


def check_minimal_diff(
    source: str, result: yamledit.EditResult, extra_ok: Callable[[str], bool] = lambda _: False
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
    def convert(text: str) -> str:
        return text if not eol else text.replace("\r\n", "\n").replace("\n", eol)

    source = convert(_read(GOLDEN / "values" / f"{name}.in.yaml"))
    changes = json.loads(_read(GOLDEN / "values" / f"{name}.changes.json"))
    result = yamledit.edit_values(source, changes)
    assert result.text == convert(_read(GOLDEN / "values" / f"{name}.out.yaml"))
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
    again = yamledit.edit_values(result.text, changes)
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
        yamledit.edit_values(text, changes)


def test_values_empty_changes_return_the_text_unchanged() -> None:
    assert yamledit.edit_values("a: 1\n", {}) == yamledit.EditResult("a: 1\n", ())


# --------------------------------------------------------------------------- patches


def _container(doc: dict[str, Any], kind: str, name: str) -> dict[str, Any]:
    pod = doc["spec"]["template"]["spec"]
    (found,) = [c for c in pod.get("containers", []) if c["name"] == name]
    assert isinstance(found, dict)
    return found


@pytest.mark.parametrize("eol", ["", "\n", "\r\n"])
@pytest.mark.parametrize("name", _cases("patch"))
def test_patch_golden(name: str, eol: str) -> None:
    def convert(text: str) -> str:
        return text if not eol else text.replace("\r\n", "\n").replace("\n", eol)

    source = convert(_read(GOLDEN / "patch" / f"{name}.in.yaml"))
    raw = json.loads(_read(GOLDEN / "patch" / f"{name}.change.json"))
    change = _change(raw)
    result = yamledit.edit_patch(source, change)
    assert result.text == convert(_read(GOLDEN / "patch" / f"{name}.out.yaml"))
    names = {c.name for c in change.containers}
    check_minimal_diff(source, result, lambda line: any(
        line.strip() == f"- name: {n}" for n in names))
    docs = [d for d in yaml.safe_load_all(result.text) if d]
    (doc,) = [d for d in docs if d["kind"] == change.kind and d["metadata"]["name"] == change.name]
    if change.replicas is not None:
        assert doc["spec"]["replicas"] == change.replicas
    for cc in change.containers:
        res = _container(doc, change.kind, cc.name)["resources"]
        for section, values in (("requests", cc.requests), ("limits", cc.limits)):
            for key, qty in values.items():
                assert str(res[section][key]) == qty
    again = yamledit.edit_patch(result.text, change)
    assert again.text == result.text and again.changes == ()


def test_patch_golden_set_covers_the_brief() -> None:
    assert {"existing_container", "add_container", "replicas_only", "metadata_only_crlf",
            "multidoc"} <= set(_cases("patch"))  # fmt: skip


@pytest.mark.parametrize(
    ("text", "change", "error"),
    [
        ("kind: Deployment\nmetadata:\n  name: a\n",
         yamledit.WorkloadChange("Deployment", "b", None, (), 2), errors.NotFoundError),
        ("kind: Deployment\nmetadata:\n  name: a\n---\nkind: Deployment\nmetadata:\n  name: a\n",
         yamledit.WorkloadChange("Deployment", "a", None, (), 2),
         yamledit.AmbiguousTargetError),
        ("kind: Deployment\nmetadata:\n  name: a\n",
         yamledit.WorkloadChange("Deployment", "a", None,
                                 (yamledit.ContainerChange("Bad_Name", {"cpu": "1"}),)),
         errors.FieldError),
        ("kind: Deployment\nmetadata:\n  name: a\nspec:\n  template:\n    spec:\n"
         "      containers: []\n",
         yamledit.WorkloadChange("Deployment", "a", None,
                                 (yamledit.ContainerChange("c", {"cpu": "1"}),)),
         errors.PermanentError),
    ],
)  # fmt: skip
def test_patch_errors(text: str, change: yamledit.WorkloadChange, error: type[Exception]) -> None:
    with pytest.raises(error):
        yamledit.edit_patch(text, change)


def test_new_patch_holds_only_the_changed_values() -> None:
    change = yamledit.WorkloadChange(
        "Deployment", "cartservice", "prod",
        (yamledit.ContainerChange("server", {"cpu": "150m"}, {"memory": "1Gi"}),), replicas=2)
    text = yamledit.new_patch("apps/v1", change, header="made by a test")
    assert text.startswith("# made by a test\n")
    assert yaml.safe_load(text) == {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "cartservice"},
        "spec": {"replicas": 2, "template": {"spec": {"containers": [
            {"name": "server", "resources": {"requests": {"cpu": "150m"},
                                             "limits": {"memory": "1Gi"}}}]}}},
    }  # fmt: skip
    crlf = yamledit.new_patch("apps/v1", change, eol="\r\n")
    assert crlf.count("\n") == crlf.count("\r\n")


@pytest.mark.parametrize(
    ("api", "kind", "name", "container"),
    [("apps/v1\nx: 1", "Deployment", "a", "c"), ("apps/v1", "Deploy ment", "a", "c"),
     ("apps/v1", "Deployment", "a: b", "c"), ("apps/v1", "Deployment", "a", "C!")],
)
def test_new_patch_refuses_hostile_identity(api: str, kind: str, name: str, container: str) -> None:
    change = yamledit.WorkloadChange(kind, name, None,
                                     (yamledit.ContainerChange(container, {"cpu": "1"}),))
    with pytest.raises(errors.FieldError):
        yamledit.new_patch(api, change)


# --------------------------------------------------------------------------- kustomization


@pytest.mark.parametrize("eol", ["", "\n", "\r\n"])
@pytest.mark.parametrize("name", _cases("kustomization"))
def test_kustomization_golden(name: str, eol: str) -> None:
    def convert(text: str) -> str:
        return text if not eol else text.replace("\r\n", "\n").replace("\n", eol)

    source = convert(_read(GOLDEN / "kustomization" / f"{name}.in.yaml"))
    entries = json.loads(_read(GOLDEN / "kustomization" / f"{name}.entries.json"))
    result = yamledit.add_kustomize_patches(source, entries)
    assert result.text == convert(_read(GOLDEN / "kustomization" / f"{name}.out.yaml"))
    targets = {str(v) for e in entries for v in (e.get("target") or {}).values()}
    check_minimal_diff(source, result, lambda line: any(
        line.strip().endswith(f": {t}") for t in targets))
    old, new = yaml.safe_load(source), yaml.safe_load(result.text)
    listed = [p["path"] for p in old.get("patches") or []]
    assert [p["path"] for p in new["patches"]] == listed + [
        e["path"] for e in entries if e["path"] not in listed]
    assert {k: v for k, v in new.items() if k != "patches"} == {
        k: v for k, v in old.items() if k != "patches"}
    again = yamledit.add_kustomize_patches(result.text, entries)
    assert again.text == result.text and again.changes == ()


@pytest.mark.parametrize(
    ("text", "entries"),
    [
        ("patches: {a: 1}\n", [{"path": "x.yaml"}]),
        ("patches: [{path: a.yaml}]\n", [{"path": "x.yaml"}]),
        ("resources: []\n", [{"path": "../../etc/passwd\nx"}]),
        ("resources: []\n", [{"path": "/abs.yaml"}]),
    ],
)
def test_kustomization_errors(text: str, entries: list[dict[str, Any]]) -> None:
    with pytest.raises(errors.PermanentError):
        yamledit.add_kustomize_patches(text, entries)


def test_kustomize_replicas_edit_in_place() -> None:
    source = _read(GOLDEN / "kustomize" / "overlays" / "prod" / "kustomization.yaml")
    assert yamledit.kustomize_replicas(source) == {"frontend": 3}
    result = yamledit.edit_kustomize_replicas(source, {"frontend": 5})
    assert result.text == source.replace("count: 3 # peak traffic", "count: 5 # peak traffic")
    assert [(c.path, c.old, c.new) for c in result.changes] == [
        ("replicas[frontend].count", "3", "5")]
    check_minimal_diff(source, result)
    assert yamledit.edit_kustomize_replicas(source, {"frontend": 3}).text == source
    with pytest.raises(errors.NotFoundError):
        yamledit.edit_kustomize_replicas(source, {"cartservice": 2})
    with pytest.raises(errors.NotFoundError):
        yamledit.edit_kustomize_replicas("resources: []\n", {"a": 1})


# --------------------------------------------------------------------------- helpers


def test_read_document_and_document_lines_agree_with_pyyaml() -> None:
    text = "# header\n---\na: 1\n---\n# c\nb:\n  - 2\n...\n---\nc: 3"
    docs = list(yaml.safe_load_all(text))
    assert [yamledit.read_document(text, i) for i in range(len(docs))] == docs
    spans = yamledit.document_lines(text)
    assert len(spans) == 3
    lines = text.split("\n")
    assert "a: 1" in lines[spans[0][0] - 1 : spans[0][1]]
    assert "b:" in lines[spans[1][0] - 1 : spans[1][1]]
    assert lines[spans[2][1] - 1] == "c: 3"
    with pytest.raises(errors.NotFoundError):
        yamledit.read_document(text, 3)


@pytest.mark.parametrize(
    "text",
    [
        "a: 1\nb: '1'\nc: 0777\nd: 0x1f\ne: -3\nf: +4\ng: 1_000\nh: 0\n",
        "a: yes\nb: No\nc: on\nd: ~\ne: null\nf:\ng: true\nh: 'true'\n",
        "a: 1.5\nb: .inf\nc: 1e3\nd: 2026-11-24\ne: 2026-11-24T10:00:00Z\n",
        "a: &x {k: 1}\nb: *x\nc:\n  <<: *x\n  j: 2\n",
        "1: int key\n2.5: float key\nnull: null key\n",
        "a: !!str 12\nb: !!int '7'\nc: !!binary aGVsbG8=\nd: [1, {e: f}, [g]]\n",
        "apiVersion: apps/v1\nkind: Deployment\nspec:\n  template:\n    spec:\n"
        "      containers:\n      - name: s\n        resources: {requests: {cpu: 100m}}\n",
    ],
)
def test_construct_builds_what_safe_load_builds(text: str) -> None:
    expected = yaml.safe_load(text)
    node = yaml.compose(text, Loader=yamledit._LOADER)
    assert node is not None
    got = yamledit.construct(node)
    assert got == expected
    assert {k: type(v) for k, v in got.items()} == {k: type(v) for k, v in expected.items()}


def test_scan_documents_returns_only_named_documents_with_data() -> None:
    text = _read(GOLDEN / "plain" / "apps" / "cartservice.yaml")
    found = yamledit.scan_documents(text, ["Deployment"], {"redis-cart", "nope"})
    docs = list(yaml.safe_load_all(text))
    (index,) = [i for i, d in enumerate(docs) if d["metadata"]["name"] == "redis-cart"
                and d["kind"] == "Deployment"]
    assert [(r.kind, r.name, r.doc_index) for r, _ in found] == [("Deployment", "redis-cart",
                                                                   index)]
    assert found[0][1] == docs[index]
    assert yamledit.scan_documents(text, ["Deployment"], set()) == []
