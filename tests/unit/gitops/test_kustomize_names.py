"""Kustomize as Kustomize builds it: a live object (namespace, kind, name) mapped back to the
file and document that produce it through every level's name transformers
(reconciler.gitops.index, reconciler.gitops.render).

The rules asserted here were checked against ``kubectl kustomize`` (Kustomize v5.5.0):
names compose as outer prefix + inner prefix + name + inner suffix + outer suffix; the
outermost ``namespace:`` wins; a component's prefix sits between its kustomization's and
the inner levels'; a patch with a target finds the object by its original name or by its
name before its own level's prefix/suffix (patchesJson6902: after them); a strategic-merge
patch without a target by any earlier name; the `replicas:` field by any name.

Cases:
- golden (tests/golden/layout/transformers: envs/prod with namePrefix, nameSuffix and a
  namespace over apps/team, with its own namePrefix and namespace, over apps/base):
  the live names locate the base documents; observed carries the live name, the outer
  namespace, the overlay patch's values (a patch naming the object as written in the
  base) and the `replicas:` entry's count (an entry naming it as written); the rendered
  files (tests/golden/layout/expected/transformers_prod) are byte-exact, every diff line
  holds a changed value or an inserted key, the new patch targets the name the overlay
  sees (team-worker); re-indexing the result shows the new values; a rerun changes nothing;
- the same repository under the names the files hold, or under the inner namespace: not
  found, naming what was searched;
- three levels each with prefix and suffix: the composed name is found; the namespace is
  the outermost one set;
- an overlay patch naming the object by its live name matches nothing in Kustomize: it is
  not the workload's patch, and a new one is written;
- a patchesJson6902 entry whose target names the object after the overlay's own prefix and
  suffix (its live name) is
  the workload's (and, setting resources, refused as before);
- a component with namePrefix and a patch setting resources: the live name composes
  through it, observed shows the component's value, the component's files stay untouched
  and the overlay gains a new patch naming the object as the overlay sees it;
- the Argo CD guestbook overlay (namePrefix: kustomize-): a manifest in the overlay's own
  directory is edited in place under its written name; one taken from ../guestbook is
  shared and gets a new patch;
- where a Kustomize binary is found, the index is checked against a real build: the live
  names, namespaces and values it observes are the build's (golden, three levels, a patch
  on the live name, patchesJson6902, component), and the golden and the component edits
  pass the build check (kustomize_verify.check) with no refusal.
"""

from __future__ import annotations

import pathlib
import shutil
from typing import Any

import pytest
import yaml

from reconciler.adapters import kustomize
from reconciler.config import layout
from reconciler.domain import errors, planner
from reconciler.gitops import index as repo_index
from reconciler.gitops import kustomize_verify, render
from tests.unit.gitops.test_layout import GOLDEN, _base_text, _c, _check_scenario, _plan

PROD = layout.parse_layout({"kind": "kustomize", "overlay": "envs/prod"})
WEB = ("shop-prod", "Deployment", "prod-team-web-v2")
WORKER = ("shop-prod", "Deployment", "prod-team-worker-v2")
BUILDER = kustomize.find()
needs_kustomize = pytest.mark.skipif(BUILDER is None, reason="no kustomize or kubectl on PATH")


def _repo(tmp_path: pathlib.Path) -> pathlib.Path:
    root = tmp_path / "transformers"
    shutil.copytree(GOLDEN / "transformers", root)
    return root


def _items(index: repo_index.Index) -> list[tuple[repo_index.Source, planner.Plan]]:
    return [
        (index.locate(WEB), _plan(index, WEB, "r-web", [
            _c("app", {"cpu": "300m", "memory": "160Mi"}), _c("metrics", limits={
                "memory": "64Mi"})])),
        (index.locate(WORKER), _plan(index, WORKER, "r-worker", [_c("worker", {"cpu": "350m"})],
                                     replicas=4)),
    ]


def _built(root: pathlib.Path, overlay: str) -> dict[tuple[str, str, str], Any] | None:
    """What ``kubectl kustomize`` (or ``kustomize build``) makes of the overlay, by (kind,
    namespace, name); None where no binary is found. The index's reading of the name
    transformers is checked against it, never assumed."""
    if BUILDER is None:
        return None
    out = {}
    for d in yaml.safe_load_all(BUILDER.build(root / overlay)):
        meta = d["metadata"]
        out[(d["kind"], meta.get("namespace", ""), meta["name"])] = d
    return out


def _write(root: pathlib.Path, texts: dict[str, str]) -> None:
    for rel, text in texts.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(text.encode("utf-8"))


def test_transformers_golden(tmp_path: pathlib.Path) -> None:
    root = _repo(tmp_path)
    index = repo_index.Index.build(root, PROD, [WEB, WORKER])
    web, worker = index.locate(WEB), index.locate(WORKER)
    assert (web.kind, web.path, web.manifest_path, web.name_in_file) == (
        "kustomize-patch", "envs/prod/web-resources.yaml", "apps/base/web.yaml", "web")
    assert (worker.kind, worker.path, worker.name_in_file, worker.replicas_name) == (
        "kustomize-replicas", "envs/prod/dakr-team-worker-resources.yaml", "team-worker",
        "worker")
    obs = index.observed(WEB) or {}
    assert obs["metadata"] == {"name": "prod-team-web-v2", "namespace": "shop-prod",
                               "labels": {"app": "web"}}
    assert planner.current_resources(obs)["app"]["requests"] == {"cpu": "400m",
                                                                 "memory": "128Mi"}
    assert (index.observed(WORKER) or {})["spec"]["replicas"] == 3
    built = _built(root, "envs/prod")
    if built is not None:
        assert {k for k in built if k[0] == "Deployment"} == {
            ("Deployment", "shop-prod", "prod-team-web-v2"),
            ("Deployment", "shop-prod", "prod-team-worker-v2")}
        assert planner.current_resources(built[("Deployment", "shop-prod", WEB[2])]) == \
            planner.current_resources(index.observed(WEB) or {})
        assert built[("Deployment", "shop-prod", WORKER[2])]["spec"]["replicas"] == 3

    items = _items(index)
    rendered = render.render_many(root, items, base_text=_base_text(root))
    _check_scenario(root, "transformers_prod", rendered, [p for _, p in items])
    kust = rendered.texts["envs/prod/kustomization.yaml"]
    assert "      name: team-worker\n" in kust and "count: 4 # queue backlog" in kust
    assert not [p for p in rendered.texts if p.startswith("apps/")]

    _write(root, rendered.texts)
    after = repo_index.Index.build(root, PROD, [WEB, WORKER])
    assert planner.current_resources(after.observed(WEB) or {})["app"]["requests"] == {
        "cpu": "300m", "memory": "160Mi"}
    worker_obs = after.observed(WORKER) or {}
    assert worker_obs["spec"]["replicas"] == 4
    assert planner.current_resources(worker_obs)["worker"]["requests"]["cpu"] == "350m"
    again = render.render_many(root, [(after.locate(t), p) for (_, p), t in
                                      zip(items, (WEB, WORKER), strict=True)],
                               base_text=_base_text(root))
    assert again.texts == {}


@pytest.mark.parametrize("target", [
    ("shop-prod", "Deployment", "web"),  # the name the file holds
    ("shop-prod", "Deployment", "team-web"),  # the name the overlay's patches see
    ("team-shop", "Deployment", "prod-team-web-v2"),  # the inner namespace
])
def test_transformers_other_names_are_not_the_live_object(tmp_path: pathlib.Path,
                                                          target: tuple[str, str, str]) -> None:
    index = repo_index.Index.build(_repo(tmp_path), PROD, [target])
    with pytest.raises(errors.NotFoundError, match="envs/prod and its bases"):
        index.locate(target)


def _kust(root: pathlib.Path, rel: str, body: str) -> None:
    (root / rel).mkdir(parents=True, exist_ok=True)
    (root / rel / "kustomization.yaml").write_text(body)


DEPLOYMENT = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  template:
    spec:
      containers:
        - name: app
          image: nginx
          resources:
            requests:
              cpu: 100m
"""


def test_three_levels_compose_names_and_the_outermost_namespace_wins(
        tmp_path: pathlib.Path) -> None:
    root = tmp_path / "r"
    _kust(root, "base", "resources: [dep.yaml]\nnamePrefix: b-\nnameSuffix: -bs\n"
                        "namespace: basens\n")
    (root / "base/dep.yaml").write_text(DEPLOYMENT)
    _kust(root, "mid", "resources: [../base]\nnamePrefix: m-\nnameSuffix: -ms\n"
                       "namespace: midns\n")
    _kust(root, "top", "resources: [../mid]\nnamePrefix: t-\nnameSuffix: -ts\n")
    live = ("midns", "Deployment", "t-m-b-web-bs-ms-ts")
    lay = layout.parse_layout({"kind": "kustomize", "overlay": "top"})
    index = repo_index.Index.build(root, lay, [live, ("basens", "Deployment", live[2])])
    src = index.locate(live)
    assert (src.kind, src.path, src.name_in_file) == (
        "kustomize-new-patch", "top/dakr-m-b-web-bs-ms-resources.yaml", "m-b-web-bs-ms")
    assert (index.observed(live) or {})["metadata"]["name"] == live[2]
    built = _built(root, "top")
    assert built is None or list(built) == [("Deployment", "midns", live[2])]
    with pytest.raises(errors.NotFoundError):
        index.locate(("basens", "Deployment", live[2]))


def _prod_with(root: pathlib.Path, patches: str) -> None:
    k = root / "envs/prod/kustomization.yaml"
    k.write_text(k.read_text().replace("  - path: web-resources.yaml\n", patches))


def test_a_patch_naming_the_live_name_is_not_the_workloads(tmp_path: pathlib.Path) -> None:
    """Kustomize runs the overlay's patches before its own namePrefix: a target naming the
    live name matches nothing (``kubectl kustomize`` leaves the object as it was)."""
    root = _repo(tmp_path)
    _prod_with(root, "  - path: web-resources.yaml\n    target:\n      kind: Deployment\n"
                     "      name: prod-team-web-v2\n")
    index = repo_index.Index.build(root, PROD, [WEB])
    src = index.locate(WEB)
    assert (src.kind, src.path, src.name_in_file) == (
        "kustomize-new-patch", "envs/prod/dakr-team-web-resources.yaml", "team-web")
    # The base's value: the patch does not apply.
    assert planner.current_resources(index.observed(WEB) or {})["app"]["requests"][
        "cpu"] == "200m"
    built = _built(root, "envs/prod")
    assert built is None or planner.current_resources(
        built[("Deployment", "shop-prod", WEB[2])])["app"]["requests"]["cpu"] == "200m"


def test_a_json6902_target_names_the_object_after_the_overlays_prefix(
        tmp_path: pathlib.Path) -> None:
    root = _repo(tmp_path)
    ops = root / "envs/prod/ops.yaml"
    ops.write_text("- op: replace\n  path: /spec/replicas\n  value: 6\n")
    k = root / "envs/prod/kustomization.yaml"
    k.write_text(k.read_text() + "patchesJson6902:\n  - path: ops.yaml\n    target:\n"
                 "      group: apps\n      version: v1\n      kind: Deployment\n"
                 "      name: prod-team-web-v2\n")
    index = repo_index.Index.build(root, PROD, [WEB])
    assert (index.observed(WEB) or {})["spec"]["replicas"] == 6
    built = _built(root, "envs/prod")
    assert built is None or built[("Deployment", "shop-prod", WEB[2])]["spec"]["replicas"] == 6
    ops.write_text("- op: replace\n  path: /spec/template/spec/containers/0/resources/requests/"
                   "cpu\n  value: 450m\n")
    with pytest.raises(errors.PermanentError, match="JSON 6902"):
        repo_index.Index.build(root, PROD, [WEB]).locate(WEB)


COMPONENT = """apiVersion: kustomize.config.k8s.io/v1alpha1
kind: Component
namePrefix: blue-
patches:
  - path: tuning.yaml
    target:
      kind: Deployment
      name: team-web
"""
TUNING = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: team-web
spec:
  template:
    spec:
      containers:
        - name: app
          resources:
            requests:
              cpu: 250m
"""


def _with_component(tmp_path: pathlib.Path) -> pathlib.Path:
    root = _repo(tmp_path)
    _kust(root, "components/blue", COMPONENT)
    (root / "components/blue/tuning.yaml").write_text(TUNING)
    _prod_with(root, "")  # the component's patch is the only one for web
    k = root / "envs/prod/kustomization.yaml"
    k.write_text(k.read_text().replace("patches:\n", "components:\n  - ../../components/blue\n"
                                       "patches:\n"))
    return root


BLUE_WEB = ("shop-prod", "Deployment", "prod-blue-team-web-v2")


def test_component_prefix_and_patch(tmp_path: pathlib.Path) -> None:
    root = _with_component(tmp_path)
    index = repo_index.Index.build(root, PROD, [BLUE_WEB, WEB])
    with pytest.raises(errors.NotFoundError):
        index.locate(WEB)  # every object of the overlay passes through the component
    obs = index.observed(BLUE_WEB) or {}
    assert obs["metadata"]["name"] == BLUE_WEB[2]
    assert planner.current_resources(obs)["app"]["requests"]["cpu"] == "250m"
    built = _built(root, "envs/prod")
    if built is not None:
        assert planner.current_resources(built[("Deployment", "shop-prod", BLUE_WEB[2])]) == \
            planner.current_resources(obs)
    src = index.locate(BLUE_WEB)
    assert (src.kind, src.path, src.name_in_file) == (
        "kustomize-new-patch", "envs/prod/dakr-blue-team-web-resources.yaml", "blue-team-web")
    plan = _plan(index, BLUE_WEB, "r-blue", [_c("app", {"cpu": "180m"})])
    assert [(e.old, e.new) for e in plan.resources] == [("250m", "180m")]
    rendered = render.render_many(root, [(src, plan)], base_text=_base_text(root))
    assert rendered.errors == {}
    assert sorted(rendered.texts) == ["envs/prod/dakr-blue-team-web-resources.yaml",
                                      "envs/prod/kustomization.yaml"]
    assert "      name: blue-team-web\n" in rendered.texts["envs/prod/kustomization.yaml"]
    _write(root, rendered.texts)
    after = repo_index.Index.build(root, PROD, [BLUE_WEB])
    assert planner.current_resources(after.observed(BLUE_WEB) or {})["app"]["requests"][
        "cpu"] == "180m"


GUESTBOOK_KUST = "namePrefix: kustomize-\n\nresources:\n- {dir}guestbook-ui-deployment.yaml\n"


@pytest.mark.parametrize("where", ["own", "shared"])
def test_guestbook_name_prefix(tmp_path: pathlib.Path, where: str) -> None:
    root = tmp_path / "apps"
    src_dir = GOLDEN / "guestbook"
    (root / "kustomize-guestbook").mkdir(parents=True)
    if where == "own":
        shutil.copy(src_dir / "guestbook/guestbook-ui-deployment.yaml",
                    root / "kustomize-guestbook")
        (root / "kustomize-guestbook/kustomization.yaml").write_text(
            GUESTBOOK_KUST.format(dir=""))
    else:
        shutil.copytree(src_dir, root, dirs_exist_ok=True)
    live = ("default", "Deployment", "kustomize-guestbook-ui")
    lay = layout.parse_layout({"kind": "kustomize", "overlay": "kustomize-guestbook"})
    index = repo_index.Index.build(root, lay, [live])
    src = index.locate(live)
    plan = _plan(index, live, "r-gb", [_c("guestbook-ui", {"cpu": "50m"})])
    rendered = render.render_many(root, [(src, plan)], base_text=_base_text(root))
    assert rendered.errors == {}
    if where == "own":
        assert (src.kind, src.path) == ("manifest",
                                        "kustomize-guestbook/guestbook-ui-deployment.yaml")
        assert list(rendered.texts) == [src.path]
        assert "  name: guestbook-ui\n" in rendered.texts[src.path]
    else:
        assert (src.kind, src.path) == ("kustomize-new-patch",
                                        "kustomize-guestbook/dakr-guestbook-ui-resources.yaml")
        assert not [p for p in rendered.texts if p.startswith("guestbook/")]


@needs_kustomize
def test_golden_edits_pass_the_build_check(tmp_path: pathlib.Path) -> None:
    assert BUILDER is not None
    root = _repo(tmp_path)
    index = repo_index.Index.build(root, PROD, [WEB, WORKER])
    items = _items(index)
    rendered = render.render_many(root, items, base_text=_base_text(root))
    outcome = kustomize_verify.check(root, items, rendered, BUILDER)
    assert (outcome.failed, outcome.skipped, outcome.builds) == ({}, {}, 2)


@needs_kustomize
def test_component_edit_passes_the_build_check(tmp_path: pathlib.Path) -> None:
    assert BUILDER is not None
    root = _with_component(tmp_path)
    index = repo_index.Index.build(root, PROD, [BLUE_WEB])
    items = [(index.locate(BLUE_WEB), _plan(index, BLUE_WEB, "r-blue",
                                            [_c("app", {"cpu": "180m"})], replicas=5))]
    rendered = render.render_many(root, items, base_text=_base_text(root))
    outcome = kustomize_verify.check(root, items, rendered, BUILDER)
    assert (outcome.failed, outcome.skipped) == ({}, {})
