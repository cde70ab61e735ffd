"""Files with tabs that the cluster's tools read (reconciler.yamledit.bounded.tabs_as_spaces
and go_tolerant, used by every parse in splice and bounded).

Helm, Kustomize, Argo CD and kubectl read YAML with Go's parser, which (like libyaml) skips
a tab after a value, before a comment, and before or after a key's `:`; PyYAML's
pure-Python scanner refuses all of them. The editor then parses a copy with those tabs
made spaces (same length, so every position holds) and edits the original bytes.

Cases:
- tabs_as_spaces: the copy has the same length and differs only where a tab became a
  space; a text without tabs is returned as it is; a tab inside a value (`b<TAB>c`) and
  one at the start of a line are left alone;
- a table of texts with what Go reads (data, or refused): with the pure-Python loader
  the editor reads exactly what libyaml reads, and refuses what Go refuses; checked again
  against `kubectl kustomize` (Go) when kubectl is installed;
- a manifest edit with trailing tabs gives the same bytes under both loaders, and keeps
  the tabs of every line it does not change;
- the repository index does not skip a tabbed manifest under the pure-Python loader;
- the input limits still hold: an alias bomb hidden behind trailing tabs is refused under
  the pure-Python loader too (the limits walk reads the same copy the loader reads).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.config import layout
from reconciler.domain import errors
from reconciler.domain import limits as limits_mod
from reconciler.gitops import index as repo_index
from reconciler.yamledit import bounded, splice, workload

T = "\t"
CM = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n"
REFUSED = "refused"
# body under `data:` -> what Go's parser reads (checked with kubectl kustomize v5.5).
CASES: dict[str, tuple[str, Any]] = {
    "trailing tab": (f"data:\n  a: b{T}\n  c: d\n", {"a": "b", "c": "d"}),
    "trailing tabs and spaces": (f"data:\n  a: b {T} {T}\n", {"a": "b"}),
    "tab before a comment": (f"data:\n  a: b{T}# note\n", {"a": "b"}),
    "after a quoted value": (f'data:\n  a: "b"{T}\n', {"a": "b"}),
    "after a key's colon": (f"data:{T}\n  a:{T}b\n", {"a": "b"}),
    "before a key's colon": (f"data:\n  a{T}: b\n", {"a": "b"}),
    "after a flow mapping": (f"data: {{a: b}}{T}\n", {"a": "b"}),
    "inside a quoted value": (f'data:\n  a: "b{T}c"{T}\n', {"a": f"b{T}c"}),
    "trailing in a literal block": (f"data:\n  a: |\n    x{T}\n  c: d\n",
                                    {"a": f"x{T}\n", "c": "d"}),
    "a tab-only line after a value": (f"data:\n  a: b\n{T}\n  c: d\n", REFUSED),
    "a tab before a comment line": (f"data:\n  a: b\n{T}# x\n  c: d\n", REFUSED),
}


def _pure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(splice, "LOADER", yaml.SafeLoader)
    monkeypatch.setattr(bounded, "LOADER", yaml.SafeLoader)


def test_tabs_as_spaces_keeps_every_position() -> None:
    text = f"a:{T}1{T}\nb: x{T}y\n{T}# c\nd: 2 {T}# e{T}\r\n"
    same = bounded.tabs_as_spaces(text)
    assert len(same) == len(text)
    assert [i for i, (x, y) in enumerate(zip(text, same, strict=True)) if x != y] == [
        2, 4, 23, 27]
    assert all(text[i] == T and same[i] == " " for i in (2, 4, 23, 27))
    assert same[9:12] == f"x{T}y" and same[13] == T  # content and indentation stay
    plain = "a: 1\n"
    assert bounded.tabs_as_spaces(plain) is plain


@pytest.mark.parametrize("name", sorted(CASES))
def test_pure_python_loader_reads_what_go_reads(name: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    body, go = CASES[name]
    text = CM + body
    _pure(monkeypatch)
    if go == REFUSED:
        with pytest.raises(yaml.YAMLError):
            yaml.load(text, Loader=yaml.CSafeLoader)
        with pytest.raises(errors.PermanentError):
            splice.compose(text, 0, splice.split_documents(text)[0])
        return
    assert yaml.load(text, Loader=yaml.CSafeLoader)["data"] == go  # libyaml reads as Go
    assert splice.load_data(text)["data"] == go
    assert bounded.load_yaml(text, limits_mod.DEFAULT, "t")[0]["data"] == go


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (Go's YAML) not here")
@pytest.mark.parametrize("name", sorted(CASES))
def test_the_table_is_what_go_reads(name: str, tmp_path: Path) -> None:
    body, go = CASES[name]
    (tmp_path / "cm.yaml").write_text(CM + body)
    (tmp_path / "kustomization.yaml").write_text("resources:\n- cm.yaml\n")
    run = subprocess.run(["kubectl", "kustomize", str(tmp_path)], capture_output=True,
                         text=True, timeout=60)
    if go == REFUSED:
        assert run.returncode != 0, run.stdout
    else:
        assert run.returncode == 0, run.stderr
        assert yaml.safe_load(run.stdout)["data"] == go


DEPLOYMENT = (
    "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web{T}\nspec:\n"
    "  replicas: 2{T}# peak\n  template:\n    spec:\n      containers:\n      - name: server\n"
    "        image: web:1.0{T}\n        resources:\n          requests:\n"
    "            cpu: 100m{T}{T}\n            memory:{T}64Mi\n          limits: {}{T}\n"
).replace("{T}", T)


def test_manifest_edit_is_the_same_under_both_loaders(monkeypatch: pytest.MonkeyPatch) -> None:
    change = workload.WorkloadChange(
        "Deployment", "web", None,
        (workload.ContainerChange("server", {"cpu": "50m", "memory": "96Mi"},
                                  {"memory": "128Mi"}),), replicas=3)
    fast = workload.edit_many(DEPLOYMENT, [change]).text
    _pure(monkeypatch)
    assert workload.edit_many(DEPLOYMENT, [change]).text == fast
    assert fast == DEPLOYMENT.replace(f"replicas: 2{T}", f"replicas: 3{T}").replace(
        f"cpu: 100m{T}{T}", f"cpu: 50m{T}{T}").replace(f"memory:{T}64Mi", f"memory:{T}96Mi"
    ).replace(f"limits: {{}}{T}\n", f"limits:{T}\n            memory: 128Mi\n")


def test_index_does_not_skip_a_tabbed_manifest(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "web.yaml").write_text(DEPLOYMENT)
    _pure(monkeypatch)
    target = ("default", "Deployment", "web")
    index = repo_index.Index.build(tmp_path, layout.Layout(), [target])
    assert index.locate(target).path == "web.yaml"
    observed = index.observed(target) or {}
    assert observed["spec"]["replicas"] == 2


def test_limits_hold_behind_trailing_tabs(monkeypatch: pytest.MonkeyPatch) -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{k}: &{k} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]{T}\n"
        for p, k in zip("abcdefg", "bcdefgh", strict=True))
    _pure(monkeypatch)
    with pytest.raises(errors.InputLimitError):
        bounded.load_yaml(bomb, limits_mod.InputLimits(nodes=100_000), "bomb")
