"""Byte-exact edits of Kustomize patches and kustomizations (reconciler.yamledit.kustomize).

Cases covered:
- golden files in tests/golden/layout/{patch,kustomization} (NAME.in.yaml + the change ->
  NAME.out.yaml): byte-for-byte output; every changed diff line holds a new value or an
  inserted key (or is the old line of a replaced value); the reported lines show the new
  values; the output parses (independently, yaml.safe_load) to the input plus exactly the
  requested values; re-applying is a no-op. Patch cases: an existing container (quoted,
  indented sequences), a container added to the list, a replicas-only patch that gains the
  pod template, a metadata-only CRLF StatefulSet patch with 4-space indentation, a
  two-document patchesStrategicMerge file. Kustomization cases: the real base
  kustomization (no patches key yet), an indented list with an already listed entry,
  `patches: []` with a comment and CRLF;
- every golden case again with LF and CRLF line endings;
- edit_kustomize_replicas: count changed in place, comment kept, missing entry refused;
- new_patch: parses to a partial object with only the changed values; hostile names refused;
- errors: a patch that does not define the workload, two patches for one workload, a
  hostile container name, an empty containers list; a kustomization whose patches are not
  a block list, hostile patch paths.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from reconciler.domain import errors
from reconciler.yamledit import kustomize, splice, workload
from tests.unit.yamledit.test_values import GOLDEN, _cases, _read, check_minimal_diff, golden


def _change(raw: dict[str, Any]) -> workload.WorkloadChange:
    return workload.WorkloadChange(
        raw["kind"], raw["name"], raw.get("namespace"),
        tuple(workload.ContainerChange(c["name"], c.get("requests", {}), c.get("limits", {}))
              for c in raw.get("containers", [])),
        raw.get("replicas"),
    )  # fmt: skip



# --------------------------------------------------------------------------- patches


def _container(doc: dict[str, Any], kind: str, name: str) -> dict[str, Any]:
    pod = doc["spec"]["template"]["spec"]
    (found,) = [c for c in pod.get("containers", []) if c["name"] == name]
    assert isinstance(found, dict)
    return found


@pytest.mark.parametrize("eol", ["", "\n", "\r\n"])
@pytest.mark.parametrize("name", _cases("patch"))
def test_patch_golden(name: str, eol: str) -> None:
    source, expected, raw = golden("patch", name, eol, "change")
    change = _change(raw)
    result = kustomize.edit_patch(source, change)
    assert result.text == expected
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
    again = kustomize.edit_patch(result.text, change)
    assert again.text == result.text and again.changes == ()


def test_patch_golden_set_covers_the_brief() -> None:
    assert {"existing_container", "add_container", "replicas_only", "metadata_only_crlf",
            "multidoc"} <= set(_cases("patch"))  # fmt: skip


@pytest.mark.parametrize(
    ("text", "change", "error"),
    [
        ("kind: Deployment\nmetadata:\n  name: a\n",
         workload.WorkloadChange("Deployment", "b", None, (), 2), errors.NotFoundError),
        ("kind: Deployment\nmetadata:\n  name: a\n---\nkind: Deployment\nmetadata:\n  name: a\n",
         workload.WorkloadChange("Deployment", "a", None, (), 2),
         splice.AmbiguousTargetError),
        ("kind: Deployment\nmetadata:\n  name: a\n",
         workload.WorkloadChange("Deployment", "a", None,
                                 (workload.ContainerChange("Bad_Name", {"cpu": "1"}),)),
         errors.FieldError),
        ("kind: Deployment\nmetadata:\n  name: a\nspec:\n  template:\n    spec:\n"
         "      containers: []\n",
         workload.WorkloadChange("Deployment", "a", None,
                                 (workload.ContainerChange("c", {"cpu": "1"}),)),
         errors.PermanentError),
    ],
)  # fmt: skip
def test_patch_errors(text: str, change: workload.WorkloadChange, error: type[Exception]) -> None:
    with pytest.raises(error):
        kustomize.edit_patch(text, change)


def test_new_patch_holds_only_the_changed_values() -> None:
    change = workload.WorkloadChange(
        "Deployment", "cartservice", "prod",
        (workload.ContainerChange("server", {"cpu": "150m"}, {"memory": "1Gi"}),), replicas=2)
    text = kustomize.new_patch("apps/v1", change, header="made by a test")
    assert text.startswith("# made by a test\n")
    assert yaml.safe_load(text) == {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "cartservice"},
        "spec": {"replicas": 2, "template": {"spec": {"containers": [
            {"name": "server", "resources": {"requests": {"cpu": "150m"},
                                             "limits": {"memory": "1Gi"}}}]}}},
    }  # fmt: skip
    crlf = kustomize.new_patch("apps/v1", change, eol="\r\n")
    assert crlf.count("\n") == crlf.count("\r\n")


@pytest.mark.parametrize(
    ("api", "kind", "name", "container"),
    [("apps/v1\nx: 1", "Deployment", "a", "c"), ("apps/v1", "Deploy ment", "a", "c"),
     ("apps/v1", "Deployment", "a: b", "c"), ("apps/v1", "Deployment", "a", "C!")],
)
def test_new_patch_refuses_hostile_identity(api: str, kind: str, name: str, container: str) -> None:
    change = workload.WorkloadChange(kind, name, None,
                                     (workload.ContainerChange(container, {"cpu": "1"}),))
    with pytest.raises(errors.FieldError):
        kustomize.new_patch(api, change)


# --------------------------------------------------------------------------- kustomization


@pytest.mark.parametrize("eol", ["", "\n", "\r\n"])
@pytest.mark.parametrize("name", _cases("kustomization"))
def test_kustomization_golden(name: str, eol: str) -> None:
    source, expected, entries = golden("kustomization", name, eol, "entries")
    result = kustomize.add_kustomize_patches(source, entries)
    assert result.text == expected
    targets = {str(v) for e in entries for v in (e.get("target") or {}).values()}
    check_minimal_diff(source, result, lambda line: any(
        line.strip().endswith(f": {t}") for t in targets))
    old, new = yaml.safe_load(source), yaml.safe_load(result.text)
    listed = [p["path"] for p in old.get("patches") or []]
    assert [p["path"] for p in new["patches"]] == listed + [
        e["path"] for e in entries if e["path"] not in listed]
    assert {k: v for k, v in new.items() if k != "patches"} == {
        k: v for k, v in old.items() if k != "patches"}
    again = kustomize.add_kustomize_patches(result.text, entries)
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
        kustomize.add_kustomize_patches(text, entries)


def test_kustomize_replicas_edit_in_place() -> None:
    source = _read(GOLDEN / "kustomize" / "overlays" / "prod" / "kustomization.yaml")
    assert kustomize.kustomize_replicas(source) == {"frontend": 3}
    result = kustomize.edit_kustomize_replicas(source, {"frontend": 5})
    assert result.text == source.replace("count: 3 # peak traffic", "count: 5 # peak traffic")
    assert [(c.path, c.old, c.new) for c in result.changes] == [
        ("replicas[frontend].count", "3", "5")]
    check_minimal_diff(source, result)
    assert kustomize.edit_kustomize_replicas(source, {"frontend": 3}).text == source
    with pytest.raises(errors.NotFoundError):
        kustomize.edit_kustomize_replicas(source, {"cartservice": 2})
    with pytest.raises(errors.NotFoundError):
        kustomize.edit_kustomize_replicas("resources: []\n", {"a": 1})
