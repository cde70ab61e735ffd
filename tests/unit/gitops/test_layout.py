"""Locating a target's source of truth and rendering the edit there (reconciler.config.layout,
reconciler.gitops.index, reconciler.gitops.render).

Cases covered (the repositories are copies of tests/golden/layout/{kustomize,helm,plain,
nodegroups}: the real microservices-demo Kustomize base with a prod overlay (namespace
prod, a resources patch for cartservice, a replicas-only patch for checkoutservice, a
`replicas:` entry for frontend) and a staging overlay sharing the base; the real Helm
values file; the real cartservice manifests; Cluster API MachineDeployments):
- golden scenarios (expected files under tests/golden/layout/expected/<scenario>): each
  plan comes from the planner run on ``Index.observed``; rendered texts are byte-exact,
  every diff line is a changed or inserted value, and re-indexing the rendered repository
  shows the new values in ``observed`` (the edit really takes effect) while the staging
  overlay and the base stay untouched:
  kustomize (existing patch edited, new patch file + kustomization entry, `replicas:`
  field, a replicas-only patch gaining a container), helm values, plain multi-document
  files (namespace disambiguation), node groups (MachineDeployment and FILE#path);
- kustomize rules: the namespace transformer decides the namespace (staging vs prod),
  editBase edits the base manifest only when no overlay patch sets the value, a manifest
  the overlay lists itself is edited in place, of two own patches setting resources the
  later (winning) one is edited, a shared patch (target without a name) is never edited
  but overridden by a new patch, also when it runs after the workload's own patch, a
  JSON 6902 patch setting resources is refused, a patch holding a value YAML cannot build
  (2001-13-45) is refused naming it, patchesStrategicMerge files are found,
  observed applies strategic merge, JSON 6902 and the replicas field;
- locate errors: not found names what was searched; ambiguity names both places; helm
  workloads without a values path name the keys looked for;
- Index.build parses only files that mention a target (files_parsed < files_seen);
- render_many isolates a failing recommendation and still renders the others; render
  of an empty plan is an empty dict; with editBase and a `replicas:` entry, resources go
  to the base manifest and the count to the overlay's field;
- a missing overlay or values file is a ConfigError;
- route(): Argo CD tracking-id (also "<ns>_<app>"), app.kubernetes.io/instance, Flux
  kustomize/helm labels, unmapped or untracked objects -> None;
- load_layout / parse_layout: None -> plain; every example in examples/layouts parses;
  errors name the offending key (table).
"""

from __future__ import annotations

import dataclasses
import difflib
import pathlib
import re
import shutil
from typing import Any

import pytest

from reconciler.config import layout
from reconciler.domain import decision, errors, planner, validation
from reconciler.gitops import index as repo_index
from reconciler.gitops import render
from reconciler.yamledit import splice

GOLDEN = pathlib.Path(__file__).resolve().parents[2] / "golden" / "layout"
EXAMPLES = pathlib.Path(__file__).resolve().parents[3] / "examples" / "layouts"
ALLOW = decision.Decision(allow=True, mode="gitops")
KEY_ONLY = re.compile(r"^\s*(?:-\s+)?[A-Za-z][\w-]*:\s*(?:#.*)?$")

KUSTOMIZE = layout.parse_layout({"kind": "kustomize", "overlay": "overlays/prod"})
HELM = layout.parse_layout({
    "kind": "helm", "valuesFile": "helm/values.yaml",
    "valuesPaths": {"cartservice": "cartService", "shop/Deployment/frontend": "frontend",
                    "loadgenerator": {"prefix": "loadGenerator", "container": "main"}},
})  # fmt: skip
NODES = layout.parse_layout({"nodeGroups": {
    "default-pool": "infra/pools.yaml#pools.default-pool.size",
    "gpu-pool": "infra/pools.yaml#pools.gpu-pool.size",
}})


def _repo(tmp_path: pathlib.Path, name: str) -> pathlib.Path:
    root = tmp_path / name
    src = GOLDEN / name
    if name == "helm":
        (root / "helm").mkdir(parents=True)
        shutil.copy(src / "values.yaml", root / "helm" / "values.yaml")
    else:
        shutil.copytree(src, root)
    return root


def _plan(index: repo_index.Index, target: tuple[str, str, str], rec_id: str,
          containers: list[dict[str, Any]] | None = None,
          replicas: int | None = None) -> planner.Plan:
    """The planner's plan for a recommendation, against what the index observes."""
    ns, kind, name = target
    observed = index.observed(target)
    plans: list[planner.Plan] = []
    for action, field, value in (("Rightsizing", "containers", containers),
                                 ("ReplicaScaling", "replicas", replicas)):
        if value is None:
            continue
        rec = validation.parse({
            "apiVersion": "dakr.devzero.io/v1alpha1", "kind": "WorkloadRecommendation",
            "metadata": {"namespace": ns},
            "spec": {"recommendationId": rec_id, "action": action,
                     "targetRef": {"kind": kind, "name": name}, field: value}})
        plans.append(planner.plan(rec, ALLOW, observed))
    out = plans[0]
    for p in plans[1:]:
        out = dataclasses.replace(out, replicas=p.replicas)
    return out


def _c(name: str, requests: dict[str, str] | None = None,
       limits: dict[str, str] | None = None) -> dict[str, Any]:
    return {"name": name, "resources": {"requests": requests or {}, "limits": limits or {}}}


def _node_plan(index: repo_index.Index, group: str, count: int) -> planner.Plan:
    obs = index.observed(("", repo_index.NODE_GROUP, group)) or {}
    old = (obs.get("spec") or {}).get("replicas")
    return planner.Plan(f"ng-{group}", repo_index.NODE_GROUP, "", group, replicas=(old, count))


def _base_text(root: pathlib.Path) -> Any:
    def read(rel: str) -> str:
        try:
            return (root / rel).read_bytes().decode("utf-8")
        except FileNotFoundError as e:
            raise errors.NotFoundError(rel) from e
    return read


def _check_scenario(root: pathlib.Path, scenario: str, rendered: render.Rendered,
                    plans: list[planner.Plan]) -> None:
    assert rendered.errors == {}
    new_values = {e.new for p in plans for e in p.resources}
    new_values |= {str(p.replicas[1]) for p in plans if p.replicas}
    old_values = {e.old for p in plans for e in p.resources if e.old}
    old_values |= {str(p.replicas[0]) for p in plans if p.replicas and p.replicas[0]}
    expected_dir = GOLDEN / "expected" / scenario
    expected = {p.relative_to(expected_dir).as_posix(): p.read_bytes().decode("utf-8")
                for p in expected_dir.rglob("*") if p.is_file()}
    assert sorted(rendered.texts) == sorted(expected)
    for rel, text in rendered.texts.items():
        assert text == expected[rel], rel
        old = (root / rel).read_text(encoding="utf-8") if (root / rel).exists() else ""
        _check_diff(old, text, rel, new_values, old_values)
    # Every reported line is in a rendered file and shows changed text.
    for rec, places in rendered.lines.items():
        for rel, lines in places:
            assert rel in rendered.texts, (rec, rel)
            text_lines = rendered.texts[rel].splitlines()
            old_lines = set((root / rel).read_text().splitlines()) if (root / rel).exists() \
                else set()
            for ln in lines:
                assert text_lines[ln - 1] not in old_lines or KEY_ONLY.match(
                    text_lines[ln - 1]), (rec, rel, ln)


def _check_diff(old: str, new: str, rel: str, new_values: set[str],
                old_values: set[str]) -> None:
    """Added lines hold a new value, or open an inserted key, or name what an inserted
    block is about; removed lines held an old value."""
    diff = list(difflib.ndiff(old.splitlines(), new.splitlines()))
    added = [line[2:] for line in diff if line.startswith("+ ")]
    removed = [line[2:] for line in diff if line.startswith("- ")]
    if not old:
        return  # a new file: checked byte for byte against its golden
    for line in added:
        ok = (any(re.search(rf"[:{{,]\s*[\"']?{re.escape(v)}[\"']?\s*(?:[,}}#]|$)", line)
                  for v in new_values)
              or KEY_ONLY.match(line)
              or re.match(r"^\s*(?:- )?(?:name|kind|path): [a-z][-a-z0-9.]*$", line, re.I))
        assert ok, (rel, line)
    for line in removed:
        assert any(v in line for v in old_values), (rel, line)
    assert len(added) >= len(removed)


# --------------------------------------------------------------------------- kustomize


PROD_CART = ("prod", "Deployment", "cartservice")
PROD_FRONT = ("prod", "Deployment", "frontend")
PROD_CHECKOUT = ("prod", "Deployment", "checkoutservice")
PROD_AD = ("prod", "Deployment", "adservice")


def test_kustomize_scenario(tmp_path: pathlib.Path) -> None:
    root = _repo(tmp_path, "kustomize")
    targets = [PROD_CART, PROD_FRONT, PROD_CHECKOUT, PROD_AD]
    index = repo_index.Index.build(root, KUSTOMIZE, targets)
    kinds = {t: index.locate(t).kind for t in targets}
    assert kinds == {PROD_CART: "kustomize-patch", PROD_FRONT: "kustomize-replicas",
                     PROD_CHECKOUT: "kustomize-patch", PROD_AD: "kustomize-new-patch"}
    assert index.locate(PROD_CART).path == "overlays/prod/cartservice-resources.yaml"
    assert index.locate(PROD_CART).manifest_path == "base/cartservice.yaml"
    items = [
        (PROD_CART, _plan(index, PROD_CART, "r-cart", [_c("server", {"cpu": "250m",
                                                                     "memory": "100Mi"})])),
        (PROD_FRONT, _plan(index, PROD_FRONT, "r-front", [_c("server", limits={
            "memory": "200Mi"})], replicas=4)),
        (PROD_CHECKOUT, _plan(index, PROD_CHECKOUT, "r-checkout",
                              [_c("server", {"cpu": "50m"})], replicas=1)),
        (PROD_AD, _plan(index, PROD_AD, "r-ad", [_c("server", {"cpu": "120m"})])),
    ]
    # The planner saw the overlay's values, not the base's.
    assert items[0][1].resources[0].old == "300m"
    assert items[1][1].replicas == (3, 4)
    assert items[2][1].replicas == (2, 1)
    rendered = render.render_many(root, [(index.locate(t), p) for t, p in items],
                                  base_text=_base_text(root))
    _check_scenario(root, "kustomize_prod", rendered, [p for _, p in items])
    assert not any(p.startswith(("base/", "overlays/staging/")) for p in rendered.texts)
    assert set(rendered.lines) == {"r-cart", "r-front", "r-checkout", "r-ad"}

    # Write the result and look again: the cluster would now get the new values.
    for rel, text in rendered.texts.items():
        (root / rel).write_bytes(text.encode("utf-8"))
    staging = ("staging", "Deployment", "cartservice")
    after = repo_index.Index.build(root, KUSTOMIZE, targets)
    res = planner.current_resources
    assert res(after.observed(PROD_CART) or {})["server"]["requests"] == {
        "cpu": "250m", "memory": "100Mi"}
    assert res(after.observed(PROD_FRONT) or {})["server"]["limits"]["memory"] == "200Mi"
    assert (after.observed(PROD_FRONT) or {})["spec"]["replicas"] == 4
    assert (after.observed(PROD_CHECKOUT) or {})["spec"]["replicas"] == 1
    assert res(after.observed(PROD_AD) or {})["server"]["requests"]["cpu"] == "120m"
    stg = repo_index.Index.build(root, dataclasses.replace(KUSTOMIZE, overlay="overlays/staging"),
                                 [staging])
    assert res(stg.observed(staging) or {})["server"]["requests"]["cpu"] == "200m"
    # A rerun of the same plans against the new texts changes nothing more.
    again = render.render_many(root, [(after.locate(t), p) for t, p in items],
                               base_text=_base_text(root))
    assert again.texts == {}


def test_kustomize_namespace_transformer_and_observed(tmp_path: pathlib.Path) -> None:
    root = _repo(tmp_path, "kustomize")
    index = repo_index.Index.build(root, KUSTOMIZE, [PROD_CART, PROD_FRONT,
                                                     ("default", "Deployment", "cartservice")])
    obs = index.observed(PROD_CART)
    assert obs is not None and obs["metadata"]["namespace"] == "prod"
    server = planner.current_resources(obs)["server"]
    assert server == {"requests": {"cpu": "300m", "memory": "64Mi"},
                      "limits": {"cpu": "600m", "memory": "128Mi"}}
    assert (index.observed(PROD_FRONT) or {})["spec"]["replicas"] == 3
    with pytest.raises(errors.NotFoundError, match="overlays/prod"):
        index.locate(("default", "Deployment", "cartservice"))
    assert index.observed(("default", "Deployment", "cartservice")) is None


def test_kustomize_edit_base_only_when_allowed(tmp_path: pathlib.Path) -> None:
    root = _repo(tmp_path, "kustomize")
    allowed = dataclasses.replace(KUSTOMIZE, edit_base=True)
    index = repo_index.Index.build(root, allowed, [PROD_AD, PROD_CART])
    src = index.locate(PROD_AD)
    assert (src.kind, src.path) == ("manifest", "base/adservice.yaml")
    # An overlay patch that sets the value still wins over the base.
    assert index.locate(PROD_CART).kind == "kustomize-patch"
    plan = _plan(index, PROD_AD, "r1", [_c("server", {"cpu": "150m"})])
    out = render.render(root, src, plan, base_text=_base_text(root))
    assert list(out) == ["base/adservice.yaml"]
    old = (root / "base/adservice.yaml").read_text()
    assert out["base/adservice.yaml"] == old.replace("cpu: 200m", "cpu: 150m", 1)


def test_kustomize_overlay_own_manifest_is_edited_in_place(tmp_path: pathlib.Path) -> None:
    root = _repo(tmp_path, "kustomize")
    shutil.copy(root / "base" / "emailservice.yaml", root / "overlays/prod/emailservice.yaml")
    k = root / "overlays/prod/kustomization.yaml"
    k.write_text(k.read_text().replace("  - ../../base\n", "  - ../../base\n"
                                       "  - emailservice.yaml\n"))
    (root / "base/kustomization.yaml").write_text(
        (root / "base/kustomization.yaml").read_text().replace("- emailservice.yaml\n", ""))
    target = ("prod", "Deployment", "emailservice")
    index = repo_index.Index.build(root, KUSTOMIZE, [target])
    src = index.locate(target)
    assert (src.kind, src.path) == ("manifest", "overlays/prod/emailservice.yaml")
    plan = _plan(index, target, "r1", [_c("server", {"memory": "96Mi"})])
    out = render.render(root, src, plan, base_text=_base_text(root))
    assert list(out) == ["overlays/prod/emailservice.yaml"]


def test_kustomize_two_own_patches_the_later_one_is_edited(tmp_path: pathlib.Path) -> None:
    root = _repo(tmp_path, "kustomize")
    (root / "overlays/prod/cart-more.yaml").write_text(
        (root / "overlays/prod/cartservice-resources.yaml").read_text().replace('"300m"',
                                                                                '"350m"'))
    k = root / "overlays/prod/kustomization.yaml"
    k.write_text(k.read_text().replace("replicas:\n", "  - path: cart-more.yaml\nreplicas:\n"))
    index = repo_index.Index.build(root, KUSTOMIZE, [PROD_CART])
    assert planner.current_resources(index.observed(PROD_CART) or {})["server"]["requests"][
        "cpu"] == "350m"
    assert index.locate(PROD_CART).path == "overlays/prod/cart-more.yaml"


def test_kustomize_patch_with_a_value_yaml_cannot_build_is_refused(
        tmp_path: pathlib.Path) -> None:
    """``2001-13-45`` reads as a date PyYAML cannot build (a ValueError escaped the index
    once): the target is refused with the patch named, like invalid YAML."""
    root = _repo(tmp_path, "kustomize")
    patch = root / "overlays/prod/cartservice-resources.yaml"
    patch.write_text(patch.read_text().replace('"300m"', "2001-13-45"))
    index = repo_index.Index.build(root, KUSTOMIZE, [PROD_CART])
    with pytest.raises(errors.PermanentError, match=r"cartservice-resources\.yaml"):
        index.locate(PROD_CART)


def test_kustomize_json6902_patch_setting_resources_is_refused(tmp_path: pathlib.Path) -> None:
    root = _repo(tmp_path, "kustomize")
    (root / "overlays/prod/ad.json-patch.yaml").write_text(
        "- op: replace\n  path: /spec/template/spec/containers/0/resources/requests/cpu\n"
        "  value: 333m\n")
    k = root / "overlays/prod/kustomization.yaml"
    k.write_text(k.read_text().replace(
        "patches:\n", "patches:\n  - path: ad.json-patch.yaml\n    target:\n"
        "      kind: Deployment\n      name: adservice\n"))
    index = repo_index.Index.build(root, KUSTOMIZE, [PROD_AD])
    obs = index.observed(PROD_AD)  # observed still applies it
    assert obs is None or planner.current_resources(obs)["server"]["requests"]["cpu"] == "333m"
    with pytest.raises(errors.PermanentError, match="JSON 6902"):
        index.locate(PROD_AD)


def test_kustomize_patches_strategic_merge_field(tmp_path: pathlib.Path) -> None:
    root = _repo(tmp_path, "kustomize")
    k = root / "overlays/prod/kustomization.yaml"
    k.write_text(k.read_text().replace("  - path: cartservice-resources.yaml\n", "")
                 + "patchesStrategicMerge:\n- cartservice-resources.yaml\n")
    index = repo_index.Index.build(root, KUSTOMIZE, [PROD_CART])
    assert index.locate(PROD_CART).path == "overlays/prod/cartservice-resources.yaml"
    obs = index.observed(PROD_CART) or {}
    assert planner.current_resources(obs)["server"]["limits"]["cpu"] == "600m"


# --------------------------------------------------------------------------- helm


def test_helm_scenario(tmp_path: pathlib.Path) -> None:
    root = _repo(tmp_path, "helm")
    cart, lg = ("shop", "Deployment", "cartservice"), ("shop", "Deployment", "loadgenerator")
    front = ("shop", "Deployment", "frontend")
    index = repo_index.Index.build(root, HELM, [cart, lg, front])
    assert index.stats.files_parsed == 1
    src = index.locate(cart)
    assert (src.kind, src.path, src.values_prefix) == ("helm-values", "helm/values.yaml",
                                                       "cartService")
    assert planner.current_resources(index.observed(lg) or {}) == {"main": {
        "requests": {"cpu": "300m", "memory": "256Mi"},
        "limits": {"cpu": "500m", "memory": "512Mi"}}}
    items = [
        (cart, _plan(index, cart, "r-cart", [_c("server", {"cpu": "150m"})], replicas=2)),
        (lg, _plan(index, lg, "r-lg", [_c("main", limits={"memory": "1Gi"})])),
        (front, _plan(index, front, "r-front", [_c("server", {"memory": "48Mi"})])),
    ]
    rendered = render.render_many(root, [(index.locate(t), p) for t, p in items],
                                  base_text=_base_text(root))
    _check_scenario(root, "helm", rendered, [p for _, p in items])
    (root / "helm/values.yaml").write_text(rendered.texts["helm/values.yaml"])
    after = repo_index.Index.build(root, HELM, [cart])
    obs = after.observed(cart) or {}
    assert obs["spec"]["replicas"] == 2
    assert planner.current_resources(obs)["server"]["requests"]["cpu"] == "150m"


def test_helm_missing_values_path(tmp_path: pathlib.Path) -> None:
    root = _repo(tmp_path, "helm")
    other = ("shop", "Deployment", "adservice")
    wrong_ns = ("prod", "Deployment", "frontend")
    index = repo_index.Index.build(root, HELM, [other, wrong_ns])
    with pytest.raises(errors.NotFoundError, match="'adservice'"):
        index.locate(other)
    with pytest.raises(errors.NotFoundError, match="prod/Deployment/frontend"):
        index.locate(wrong_ns)
    bad = dataclasses.replace(HELM, values_paths={"adservice": layout.ValuesPath(
        "adsService", {"server": "adsService.resources"}, "adsService.replicas")})
    with pytest.raises(errors.NotFoundError, match="adsService"):
        repo_index.Index.build(root, bad, [other]).locate(other)


# --------------------------------------------------------------------------- plain


def test_plain_scenario(tmp_path: pathlib.Path) -> None:
    root = _repo(tmp_path, "plain")
    cart = ("default", "Deployment", "cartservice")
    redis = ("default", "Deployment", "redis-cart")
    web_ns = ("web", "Deployment", "web")
    web_default = ("default", "Deployment", "web")
    index = repo_index.Index.build(root, layout.Layout(), [cart, redis, web_ns, web_default])
    assert index.stats.files_seen == 3 and index.stats.files_parsed == 2
    assert index.locate(web_ns).doc_index == 0 and index.locate(web_default).doc_index == 1
    items = [
        (cart, _plan(index, cart, "r-cart", [_c("server", {"cpu": "180m"},
                                                {"memory": "192Mi"})])),
        (redis, _plan(index, redis, "r-redis", [_c("redis", {"cpu": "60m"})], replicas=2)),
        (web_ns, _plan(index, web_ns, "r-web", [_c("nginx", {"cpu": "50m"},
                                                   {"memory": "128Mi"})])),
        (web_default, _plan(index, web_default, "r-web2", [_c("nginx", {"cpu": "20m"})])),
    ]
    rendered = render.render_many(root, [(index.locate(t), p) for t, p in items],
                                  base_text=_base_text(root))
    _check_scenario(root, "plain", rendered, [p for _, p in items])
    lines = dict(rendered.lines["r-web"])
    assert lines == {"apps/web.yaml": [15, 17]}
    assert all(ln > 17 for ln in dict(rendered.lines["r-web2"])["apps/web.yaml"])


def test_plain_ambiguity_names_both_places(tmp_path: pathlib.Path) -> None:
    root = _repo(tmp_path, "plain")
    shutil.copy(root / "apps/cartservice.yaml", root / "docs/copy.yaml")
    cart = ("default", "Deployment", "cartservice")
    index = repo_index.Index.build(root, layout.Layout(), [cart])
    with pytest.raises(splice.AmbiguousTargetError) as info:
        index.locate(cart)
    assert "apps/cartservice.yaml" in str(info.value) and "docs/copy.yaml" in str(info.value)
    assert index.observed(cart) is None


def test_plain_not_found_names_the_search(tmp_path: pathlib.Path) -> None:
    root = _repo(tmp_path, "plain")
    target = ("default", "StatefulSet", "cartservice")
    scoped = dataclasses.replace(layout.Layout(), paths=("docs",))
    for lay, where in ((layout.Layout(), "the repository"), (scoped, "docs")):
        index = repo_index.Index.build(root, lay, [target])
        with pytest.raises(errors.NotFoundError, match=f"StatefulSet/cartservice.*{where}"):
            index.locate(target)
    with pytest.raises(errors.NotFoundError, match="not part of this batch"):
        index.locate(("default", "Deployment", "other"))


def test_render_many_isolates_a_failing_recommendation(tmp_path: pathlib.Path) -> None:
    root = _repo(tmp_path, "plain")
    cart = ("default", "Deployment", "cartservice")
    redis = ("default", "Deployment", "redis-cart")
    index = repo_index.Index.build(root, layout.Layout(), [cart, redis])
    good = _plan(index, cart, "good", [_c("server", {"cpu": "180m"})])
    bad = planner.Plan("bad", "Deployment", "default", "redis-cart",
                       (planner.ValueEdit("nope", "requests", "cpu", None, "1"),))
    out = render.render_many(root, [(index.locate(cart), good), (index.locate(redis), bad)],
                             base_text=_base_text(root))
    assert set(out.errors) == {"bad"} and "nope" in out.errors["bad"]
    assert list(out.texts) == ["apps/cartservice.yaml"] and "cpu: 180m" in out.texts[
        "apps/cartservice.yaml"]
    with pytest.raises(errors.PermanentError):
        render.render(root, index.locate(redis), bad, base_text=_base_text(root))
    empty = planner.Plan("noop", "Deployment", "default", "cartservice")
    assert render.render(root, index.locate(cart), empty, base_text=_base_text(root)) == {}


# --------------------------------------------------------------------------- node groups


def test_node_groups_scenario(tmp_path: pathlib.Path) -> None:
    root = _repo(tmp_path, "nodegroups")
    groups = ["workers-a", "workers-b", "default-pool", "gpu-pool"]
    targets = [("", repo_index.NODE_GROUP, g) for g in groups]
    index = repo_index.Index.build(root, NODES, targets)
    assert index.locate(targets[0]).path == "capi/machinedeployments.yaml"
    assert index.locate(targets[1]).doc_index == 1
    assert index.locate(targets[2]).values_prefix == "pools.default-pool.size"
    assert (index.observed(targets[0]) or {})["spec"]["replicas"] == 5
    assert (index.observed(targets[2]) or {})["spec"]["replicas"] == 5
    assert (index.observed(targets[3]) or {})["spec"]["replicas"] is None
    counts = {"workers-a": 3, "workers-b": 2, "default-pool": 4, "gpu-pool": 1}
    items = [(index.locate(t), _node_plan(index, t[2], counts[t[2]])) for t in targets]
    rendered = render.render_many(root, items, base_text=_base_text(root))
    _check_scenario(root, "nodegroups", rendered, [p for _, p in items])
    with pytest.raises(errors.NotFoundError, match="MachineDeployment named workers-z"):
        repo_index.Index.build(root, NODES, [("", repo_index.NODE_GROUP, "workers-z")]).locate(
            ("", repo_index.NODE_GROUP, "workers-z"))


# --------------------------------------------------------------------------- route


@pytest.mark.parametrize(
    ("meta", "expected"),
    [
        ({"annotations": {"argocd.argoproj.io/tracking-id":
                          "shop-prod:apps/Deployment:prod/cartservice"}},
         ("https://git.example/shop.git", "overlays/prod")),
        ({"annotations": {"argocd.argoproj.io/tracking-id":
                          "team-a_shop-prod:apps/Deployment:prod/cartservice"}},
         ("https://git.example/shop.git", "overlays/prod")),
        ({"labels": {"app.kubernetes.io/instance": "shop-staging"}},
         ("https://git.example/shop.git", "overlays/staging")),
        ({"labels": {"kustomize.toolkit.fluxcd.io/name": "apps",
                     "kustomize.toolkit.fluxcd.io/namespace": "flux-system"}},
         ("ssh://git@git.example/fleet.git", "clusters/prod")),
        ({"labels": {"helm.toolkit.fluxcd.io/name": "podinfo",
                     "helm.toolkit.fluxcd.io/namespace": "apps"}},
         ("ssh://git@git.example/fleet.git", "charts/podinfo")),
        ({"labels": {"kustomize.toolkit.fluxcd.io/name": "unknown",
                     "kustomize.toolkit.fluxcd.io/namespace": "flux-system"}}, None),
        ({"labels": {"app": "cartservice"}}, None),
        ({}, None),
    ],
)  # fmt: skip
def test_route(meta: dict[str, Any], expected: tuple[str, str] | None) -> None:
    lay = layout.parse_layout({"repos": {
        "shop-prod": {"repo": "https://git.example/shop.git", "path": "overlays/prod"},
        "shop-staging": {"repo": "https://git.example/shop.git", "path": "overlays/staging"},
        "flux-system/apps": {"repo": "ssh://git@git.example/fleet.git",
                             "path": "clusters/prod"},
        "apps/podinfo": {"repo": "ssh://git@git.example/fleet.git", "path": "charts/podinfo",
                         "layout": "layouts/podinfo.yaml"},
    }})  # fmt: skip
    obj = {"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "cartservice", "namespace": "prod", **meta}}
    assert repo_index.route(lay, obj) == expected
    assert repo_index.route(lay, None) is None


def test_tracking_id_wins_over_instance_label() -> None:
    lay = layout.parse_layout({"repos": {"a": {"repo": "r1"}, "b": {"repo": "r2"}}})
    obj = {"metadata": {"annotations": {"argocd.argoproj.io/tracking-id": "a:apps/Deployment:x/y"},
                        "labels": {"app.kubernetes.io/instance": "b"}}}
    assert repo_index.route(lay, obj) == ("r1", "")


# --------------------------------------------------------------------------- load_layout


def test_load_layout_defaults_and_examples(tmp_path: pathlib.Path) -> None:
    assert layout.load_layout(None) == layout.Layout()
    assert layout.load_layout(None).kind == "plain"
    examples = sorted(EXAMPLES.glob("*.yaml"))
    assert {p.stem for p in examples} >= {"plain", "kustomize", "helm", "argocd-flux"}
    kinds = {layout.load_layout(p).kind for p in examples}
    assert kinds == set(layout.KINDS)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert layout.load_layout(empty) == layout.Layout()


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ("kind: ansible\n", "kind"),
        ("kind: kustomize\n", "overlay"),
        ("kind: helm\n", "valuesFile"),
        ("overlay: ../outside\n", "overlay"),
        ("paths: [/etc]\n", "paths"),
        ("paths: {a: 1}\n", "paths"),
        ("editBase: yes please\n", "editBase"),
        ("valuesPaths: {cart: [a]}\n", "valuesPaths.cart"),
        ("valuesPaths: {cart: 'a..b'}\n", "valuesPaths.cart"),
        ("valuesPaths: {cart: {prefix: a, colour: b}}\n", "colour"),
        ("valuesPaths: {cart: {prefix: a, containers: {}}}\n", "valuesPaths.cart.containers"),
        ("nodeGroups: {pool: pools.yaml}\n", "nodeGroups.pool"),
        ("nodeGroups: {pool: '#a.b'}\n", "nodeGroups.pool"),
        ("repos: {app: {path: x}}\n", "repos.app.repo"),
        ("repos: {app: {repo: r, branch: main}}\n", "branch"),
        ("defaultNamespace: ''\n", "defaultNamespace"),
        ("overlays: prod\n", "overlays"),
        ("- a\n", "mapping"),
        ("kind: [\n", "invalid YAML"),
    ],
)
def test_load_layout_errors_name_the_key(tmp_path: pathlib.Path, data: str, key: str) -> None:
    path = tmp_path / "layout.yaml"
    path.write_text(data)
    with pytest.raises(errors.ConfigError, match=re.escape(key)):
        layout.load_layout(path)


def test_load_layout_missing_file(tmp_path: pathlib.Path) -> None:
    with pytest.raises(errors.ConfigError, match="cannot read"):
        layout.load_layout(tmp_path / "nope.yaml")


def test_values_path_forms() -> None:
    lay = layout.parse_layout({"kind": "helm", "valuesFile": "v.yaml", "defaultContainer": "app",
                               "valuesPaths": {
                                   "a": "a",
                                   "b": {"prefix": "b", "container": "main",
                                         "replicas": "b.replicaCount"},
                                   "c": {"prefix": "c", "containers": {
                                       "x": "c.x.resources", "y": "c.y.resources"}}}})
    assert lay.values_paths["a"] == layout.ValuesPath("a", {"app": "a.resources"}, "a.replicas",
                                                      replicas_default=True)
    assert lay.values_paths["b"] == layout.ValuesPath("b", {"main": "b.resources"},
                                                      "b.replicaCount")
    assert dict(lay.values_paths["c"].containers) == {"x": "c.x.resources",
                                                      "y": "c.y.resources"}


def test_kustomize_shared_patch_is_overridden_not_edited(tmp_path: pathlib.Path) -> None:
    root = _repo(tmp_path, "kustomize")
    (root / "overlays/prod/all-servers.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: any\nspec:\n  template:\n"
        "    spec:\n      containers:\n      - name: server\n        resources:\n"
        "          requests:\n            cpu: 111m\n")
    k = root / "overlays/prod/kustomization.yaml"
    k.write_text(k.read_text().replace(
        "patches:\n",
        "patches:\n  - path: all-servers.yaml\n    target:\n      kind: Deployment\n"))
    index = repo_index.Index.build(root, KUSTOMIZE, [PROD_AD, PROD_CART])
    obs = index.observed(PROD_AD) or {}
    assert planner.current_resources(obs)["server"]["requests"]["cpu"] == "111m"
    src = index.locate(PROD_AD)
    assert src.kind == "kustomize-new-patch"
    plan = _plan(index, PROD_AD, "r1", [_c("server", {"cpu": "99m"})])
    out = render.render(root, src, plan, base_text=_base_text(root))
    assert "overlays/prod/all-servers.yaml" not in out
    for rel, text in out.items():
        (root / rel).write_text(text)
    after = repo_index.Index.build(root, KUSTOMIZE, [PROD_AD, PROD_CART])
    assert planner.current_resources(after.observed(PROD_AD) or {})["server"]["requests"][
        "cpu"] == "99m"
    # cartservice's own patch comes before the shared one in the list: still its own file.
    assert after.locate(PROD_CART).path == "overlays/prod/cartservice-resources.yaml"


def test_kustomize_own_patch_followed_by_a_shared_one_gets_an_override(
        tmp_path: pathlib.Path) -> None:
    root = _repo(tmp_path, "kustomize")
    (root / "overlays/prod/all-servers.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: any\nspec:\n  template:\n"
        "    spec:\n      containers:\n      - name: server\n        resources:\n"
        "          requests:\n            cpu: 111m\n")
    k = root / "overlays/prod/kustomization.yaml"
    k.write_text(k.read_text().replace(
        "replicas:\n", "  - path: all-servers.yaml\n    target:\n      kind: Deployment\n"
        "replicas:\n"))
    index = repo_index.Index.build(root, KUSTOMIZE, [PROD_CART])
    assert planner.current_resources(index.observed(PROD_CART) or {})["server"]["requests"][
        "cpu"] == "111m"
    src = index.locate(PROD_CART)
    assert (src.kind, src.path) == ("kustomize-new-patch",
                                    "overlays/prod/dakr-cartservice-resources.yaml")
    plan = _plan(index, PROD_CART, "r1", [_c("server", {"cpu": "99m"})])
    for rel, text in render.render(root, src, plan, base_text=_base_text(root)).items():
        (root / rel).write_text(text)
    after = repo_index.Index.build(root, KUSTOMIZE, [PROD_CART])
    assert planner.current_resources(after.observed(PROD_CART) or {})["server"]["requests"][
        "cpu"] == "99m"


def test_edit_base_with_replicas_field_splits_the_edit(tmp_path: pathlib.Path) -> None:
    root = _repo(tmp_path, "kustomize")
    index = repo_index.Index.build(root, dataclasses.replace(KUSTOMIZE, edit_base=True),
                                   [PROD_FRONT])
    src = index.locate(PROD_FRONT)
    assert (src.kind, src.path, src.replicas_in_kustomization) == (
        "manifest", "base/frontend.yaml", True)
    plan = _plan(index, PROD_FRONT, "r1", [_c("server", {"cpu": "90m"})], replicas=5)
    out = render.render(root, src, plan, base_text=_base_text(root))
    assert sorted(out) == ["base/frontend.yaml", "overlays/prod/kustomization.yaml"]
    assert "replicas" not in "".join(difflib.ndiff(
        (root / "base/frontend.yaml").read_text().splitlines(),
        out["base/frontend.yaml"].splitlines()))
    assert "count: 5 # peak traffic" in out["overlays/prod/kustomization.yaml"]


@pytest.mark.parametrize(
    ("lay", "match"),
    [
        (dataclasses.replace(KUSTOMIZE, overlay="overlays/qa"), "overlays/qa"),
        (dataclasses.replace(HELM, values_file="chart/values.yaml"), "chart/values.yaml"),
    ],
)
def test_missing_overlay_or_values_file_is_a_config_error(
        tmp_path: pathlib.Path, lay: layout.Layout, match: str) -> None:
    root = _repo(tmp_path, "kustomize")
    with pytest.raises(errors.ConfigError, match=match):
        repo_index.Index.build(root, lay, [PROD_CART])


def test_json_and_flow_style_manifests_are_found(tmp_path: pathlib.Path) -> None:
    root = tmp_path / "repo"
    (root / "json").mkdir(parents=True)
    (root / "json/api.yaml").write_text(
        '{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api"},\n'
        ' "spec": {"template": {"spec": {"containers": [{"name": "app",\n'
        '  "resources": {"requests": {"cpu": "100m"}}}]}}}}\n')
    (root / "json/web.yaml").write_text(
        "kind: Deployment\nmetadata: {name: web, namespace: default}\nspec:\n  template:\n"
        "    spec:\n      containers: [{name: app}]\n")
    targets = [("default", "Deployment", "api"), ("default", "Deployment", "web")]
    index = repo_index.Index.build(root, layout.Layout(), targets)
    assert [index.locate(t).path for t in targets] == ["json/api.yaml", "json/web.yaml"]
    plan = _plan(index, targets[0], "r1", [_c("app", {"cpu": "50m"})])
    out = render.render(root, index.locate(targets[0]), plan, base_text=_base_text(root))
    assert out["json/api.yaml"] == (root / "json/api.yaml").read_text().replace(
        '"100m"', '"50m"')
