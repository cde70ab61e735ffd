"""`reconciler apply --layout FILE` on Kustomize repositories whose overlays rename what they
deploy, end to end through the GitOps pipeline on a real git repository (validate,
locate, policy, plan, render, commit, push).

Cases:
- the Argo CD guestbook overlay (tests/golden/layout/guestbook: ``namePrefix: kustomize-``
  over ../guestbook/, shared with the plain guestbook application): a recommendation for
  the Deployment as the cluster names it, ``kustomize-guestbook-ui``, is Applying; the
  branch adds a patch naming ``guestbook-ui`` and lists it in the overlay's
  kustomization; ../guestbook/ is untouched; every changed line holds a changed value or
  an inserted key; where a Kustomize binary is found, building the branch's overlay gives
  the Deployment the recommended request;
- the transformers repository (tests/golden/layout/transformers: envs/prod with
  namePrefix, nameSuffix and namespace over apps/team over apps/base): a rightsizing of
  ``prod-team-web-v2`` in ``shop-prod`` edits the overlay's patch (which names it ``web``)
  and a replica change of ``prod-team-worker-v2`` goes to the `replicas:` entry
  ``worker``; the bases are untouched;
- the writer checks its edit with a build before committing (where a Kustomize binary is
  found): the overlay's `replacements:` copy the request from a ConfigMap after the
  patches, so the edited patch file would change nothing the cluster gets: Failed, naming
  the value the build shows, and no branch is pushed; with --kustomize off the same edit
  is committed.
"""

from __future__ import annotations

import pathlib
import subprocess

import pytest

from reconciler.adapters import kustomize
from tests.integration.gitops.test_gitops_layouts import (
    GOLDEN,
    apply,
    changed_files,
    diff_lines,
    make_origin,
    rightsize,
    sh,
    wrec,
)


def _layout(tmp: pathlib.Path, overlay: str) -> pathlib.Path:
    f = tmp / "layout.yaml"
    f.write_text(f"kind: kustomize\noverlay: {overlay}\n")
    return f


def test_guestbook_name_prefix(tmp_path: pathlib.Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    origin = make_origin(tmp_path, {"": GOLDEN / "guestbook"})
    recs = wrec("gb-ui", "default", "kustomize-guestbook-ui",
                rightsize("guestbook-ui", "{cpu: 50m, memory: 64Mi}"))
    results = apply(tmp_path, origin, recs, _layout(tmp_path, "kustomize-guestbook"), capsys)
    res = results["gb-ui"]
    assert res["phase"] == "Applying", res
    branch = str(res["branch"])
    assert changed_files(origin, branch) == [
        "kustomize-guestbook/dakr-guestbook-ui-resources.yaml",
        "kustomize-guestbook/kustomization.yaml"]
    patch = sh("git", "--git-dir", str(origin), "show",
               f"{branch}:kustomize-guestbook/dakr-guestbook-ui-resources.yaml")
    assert "  name: guestbook-ui\n" in patch and "cpu: 50m" in patch
    kust = sh("git", "--git-dir", str(origin), "show",
              f"{branch}:kustomize-guestbook/kustomization.yaml")
    assert kust.startswith("namePrefix: kustomize-\n")
    assert "    name: guestbook-ui\n" in kust
    for line in diff_lines(origin, branch):
        assert line.startswith("+"), line  # only additions: nothing of the files is lost

    builder = kustomize.find()
    if builder is None:
        return  # no Kustomize binary here: the golden bytes above are the check
    work = tmp_path / "checkout"
    subprocess.run(["git", "clone", "-q", "-b", branch, str(origin), str(work)], check=True,
                   capture_output=True)
    built = builder.build(work / "kustomize-guestbook")
    assert "name: kustomize-guestbook-ui" in built
    assert "cpu: 50m" in built and "memory: 64Mi" in built


def test_transformers_overlay(tmp_path: pathlib.Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    origin = make_origin(tmp_path, {"": GOLDEN / "transformers"})
    recs = (wrec("t-web", "shop-prod", "prod-team-web-v2", rightsize("app", "{cpu: 300m}"))
            + wrec("t-worker", "shop-prod", "prod-team-worker-v2",
                   "  action: ReplicaScaling\n  replicas: 4\n"))
    results = apply(tmp_path, origin, recs, _layout(tmp_path, "envs/prod"), capsys)
    for rid in ("t-web", "t-worker"):
        assert results[rid]["phase"] == "Applying", results[rid]
    assert results["t-web"]["changes"] == [{"container": "app", "field": "requests.cpu",
                                            "old": "400m", "new": "300m"}]
    branch = str(results["t-web"]["branch"])
    assert changed_files(origin, branch) == ["envs/prod/kustomization.yaml",
                                             "envs/prod/web-resources.yaml"]
    assert sorted(diff_lines(origin, branch)) == sorted([
        "-    count: 3 # queue backlog at peak", "+    count: 4 # queue backlog at peak",
        "-              cpu: 400m # black friday", "+              cpu: 300m # black friday"])


REPLACED_OVERLAY = {
    "base/kustomization.yaml": "resources: [deploy.yaml]\n",
    "base/deploy.yaml": (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n"
        "  replicas: 2\n  selector: {matchLabels: {app: web}}\n  template:\n"
        "    metadata: {labels: {app: web}}\n    spec:\n      containers:\n"
        "      - name: app\n        image: nginx:1.27\n"
        "        resources: {requests: {cpu: 100m}}\n"),
    "prod/kustomization.yaml": (
        "resources: [../base, sizing.yaml]\npatches:\n- path: web-resources.yaml\n"
        "replacements:\n- source: {kind: ConfigMap, name: sizing, fieldPath: data.cpu}\n"
        "  targets:\n  - select: {kind: Deployment, name: web}\n    fieldPaths:\n"
        "    - spec.template.spec.containers.[name=app].resources.requests.cpu\n"),
    "prod/sizing.yaml": ("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: sizing\n"
                         "data:\n  cpu: 200m\n"),
    "prod/web-resources.yaml": (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n"
        "  template:\n    spec:\n      containers:\n      - name: app\n"
        "        resources:\n          requests:\n            cpu: 150m\n"),
}


def test_the_build_refuses_an_edit_a_later_patch_undoes(
        tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    if kustomize.find() is None:
        pytest.skip("no kustomize or kubectl on PATH")
    seed = tmp_path / "files"
    for rel, text in REPLACED_OVERLAY.items():
        (seed / rel).parent.mkdir(parents=True, exist_ok=True)
        (seed / rel).write_text(text)
    origin = make_origin(tmp_path, {"": seed})
    recs = wrec("j-web", "default", "web", rightsize("app", "{cpu: 120m}"))
    res = apply(tmp_path / "a", origin, recs, _layout(tmp_path, "prod"), capsys)["j-web"]
    assert res["phase"] == "Failed", res
    assert "200m" in str(res["message"]) and "120m" in str(res["message"]), res
    heads = sh("git", "--git-dir", str(origin), "branch", "--format=%(refname:short)")
    assert heads.split() == ["main"]

    off = apply(tmp_path / "b", origin, recs, _layout(tmp_path, "prod"), capsys,
                "--kustomize", "off")["j-web"]
    assert off["phase"] == "Applying", off
