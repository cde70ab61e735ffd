"""Helm edits verified by a render (reconciler.gitops.verify), the layout keys it reads
(reconciler.config.layout: chart, releaseName, namespace), where the index finds the chart
(reconciler.gitops.index) and the Helm adapter's pure parts (reconciler.adapters.helm).

Cases:
- the comparison of two renders (``verify._compare`` on objects as ``verify._objects``
  reads them from rendered manifests), table:
  - the target carries the recommended requests and replicas: accepted; the same quantity
    spelled otherwise by the template (``0.05`` for ``50m``): accepted;
  - a value that does not arrive (the render is unchanged): refused, naming the chart, the
    key and the container;
  - a replica count that does not arrive: refused naming the replicas key;
  - another object changes too (a Service): refused, naming that object;
  - the target changes beyond the recommendation (its limits too): refused, naming where;
  - a `checksum/...` pod annotation that changes with the values: accepted;
  - the target missing from the render: refused, pointing at releaseName/namespace;
- two recommendations on one chart, one at fault: each is judged on its own target;
- ``_objects``: NOTES.txt is skipped, objects are keyed by kind, namespace (the release's
  when the manifest sets none) and name, a second object of the same name is kept apart;
- layout: `chart`, `releaseName` and `namespace` parse; a release name Helm refuses, a
  namespace that is not a name, a chart path leaving the repository: ConfigError naming
  the key;
- index: the chart is the nearest directory above the values file holding a Chart.yaml
  (the values file is then its defaults, not a `-f` file); a values file outside the chart
  named by `chart` is a `-f` file; the release defaults to the chart's name; no
  Chart.yaml anywhere: no chart; the layout's namespace wins over the target's;
- adapter: ``merge_values`` merges mappings key by key and lets the later file win
  (``helm -f a -f b``); with the library loaded (skipped otherwise), ``parse_values``
  reads a tab after a value and turns bad YAML into a PermanentError naming the file,
  chained to the library's error.
"""

from __future__ import annotations

import copy
import pathlib
from typing import Any

import pytest
import yaml

from reconciler.adapters import helm
from reconciler.config import layout
from reconciler.domain import errors, planner
from reconciler.gitops import index as repo_index
from reconciler.gitops import verify

GROUP = verify._Group("myapp", (), "myapp", "default")
TARGET = ("default", "Deployment", "myapp")


def _deployment(requests: dict[str, Any] | None = None, replicas: int = 1,
                annotations: dict[str, str] | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "app", "image": "nginx"}
    if requests is not None:
        container["resources"] = {"requests": requests}
    template: dict[str, Any] = {"spec": {"containers": [container]}}
    if annotations:
        template["metadata"] = {"annotations": annotations}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "myapp"},
            "spec": {"replicas": replicas, "template": template}}


SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "myapp"},
           "spec": {"ports": [{"port": 80}]}}


def _objects(*docs: dict[str, Any]) -> dict[verify._Key, Any]:
    return verify._objects({"myapp/templates/all.yaml": yaml.safe_dump_all(docs)}, "default")


def _item(rec: str = "r1", cpu: str | None = "50m", replicas: int | None = None,
          name: str = "myapp") -> verify.Item:
    source = repo_index.Source(("default", "Deployment", name), "helm-values", "values.yaml",
                               values_containers=(("app", "resources"),),
                               values_replicas="replicaCount", chart="myapp",
                               release="myapp", release_namespace="default")
    edits = (planner.ValueEdit("app", "requests", "cpu", None, cpu),) if cpu else ()
    return source, planner.Plan(rec, "Deployment", "default", name, resources=edits,
                                replicas=(1, replicas) if replicas is not None else None)


CASES = [
    ("arrives", _deployment(), _deployment({"cpu": "50m"}), [SERVICE], [SERVICE], {}, ""),
    ("other spelling", _deployment(), _deployment({"cpu": 0.05}), [], [], {}, ""),
    ("does not arrive", _deployment(), _deployment(), [], [], {},
     "values key resources.requests.cpu does not reach Deployment/myapp (container app"),
    ("replicas do not arrive", _deployment(), _deployment({"cpu": "50m"}), [], [],
     {"replicas": 3}, "values key replicaCount does not reach Deployment/myapp"),
    ("another object changes", _deployment(), _deployment({"cpu": "50m"}), [SERVICE],
     [{**SERVICE, "spec": {"ports": [{"port": 81}]}}], {}, "also changes Service/myapp"),
    ("beyond the recommendation", _deployment(),
     _deployment({"cpu": "50m"}) | {"spec": {"replicas": 2, "template": {"spec": {
         "containers": [{"name": "app", "image": "nginx",
                         "resources": {"requests": {"cpu": "50m"}}}]}}}}, [], [], {},
     "beyond the recommendation (at spec.replicas)"),
    ("checksum annotation", _deployment(annotations={"checksum/values": "a"}),
     _deployment({"cpu": "50m"}, annotations={"checksum/values": "b"}), [], [], {}, ""),
]


@pytest.mark.parametrize(("name", "old", "new", "old_rest", "new_rest", "plan", "problem"),
                         CASES, ids=[c[0] for c in CASES])
def test_compare(name: str, old: dict[str, Any], new: dict[str, Any],
                 old_rest: list[dict[str, Any]], new_rest: list[dict[str, Any]],
                 plan: dict[str, Any], problem: str) -> None:
    item = _item(replicas=plan.get("replicas"))
    before, after = _objects(old, *old_rest), _objects(new, *new_rest)
    found = verify._compare(GROUP, [item], before, after)
    if not problem:
        assert found == {}
    else:
        assert list(found) == ["r1"]
        assert problem in found["r1"] and "chart myapp" in found["r1"], found


def test_target_missing_from_the_render() -> None:
    found = verify._compare(GROUP, [_item()], _objects(SERVICE), _objects(SERVICE))
    assert "holds no Deployment/myapp" in found["r1"] and "releaseName" in found["r1"]


def test_each_recommendation_is_judged_on_its_own_target() -> None:
    other = copy.deepcopy(_deployment())
    other["metadata"]["name"] = "worker"
    good, bad = _item("good"), _item("bad", name="worker")
    before = _objects(_deployment(), other)
    after = _objects(_deployment({"cpu": "50m"}), other)
    found = verify._compare(GROUP, [good, bad], before, after)
    assert list(found) == ["bad"] and "Deployment/worker" in found["bad"]


def test_objects_keys() -> None:
    objs = verify._objects({
        "c/templates/NOTES.txt": "Thanks for installing",
        "c/templates/a.yaml": "kind: ConfigMap\nmetadata: {name: x}\n---\n"
                              "kind: ConfigMap\nmetadata: {name: x, namespace: other}\n",
        "c/templates/b.yaml": "kind: ConfigMap\nmetadata: {name: x}\n",
    }, "prod")
    assert sorted(objs) == [("ConfigMap", "other", "x", 0), ("ConfigMap", "prod", "x", 0),
                            ("ConfigMap", "prod", "x", 1)]


def test_layout_release_keys() -> None:
    lay = layout.parse_layout({"kind": "helm", "valuesFile": "envs/prod/values.yaml",
                               "chart": "charts/shop/", "releaseName": "shop-prod",
                               "namespace": "prod"})
    assert (lay.chart, lay.release_name, lay.namespace) == ("charts/shop", "shop-prod", "prod")
    assert layout.parse_layout({"kind": "helm", "valuesFile": "v.yaml"}).release_name == ""


@pytest.mark.parametrize(("data", "key"), [
    ({"releaseName": "Shop"}, "releaseName"),
    ({"releaseName": "a" * 54}, "releaseName"),
    ({"namespace": "Prod_1"}, "namespace"),
    ({"chart": "../elsewhere"}, "chart"),
])
def test_layout_release_key_errors(data: dict[str, Any], key: str) -> None:
    with pytest.raises(errors.ConfigError, match=key):
        layout.parse_layout({"kind": "helm", "valuesFile": "v.yaml", **data})


def _repo(tmp: pathlib.Path, files: dict[str, str]) -> pathlib.Path:
    for rel, text in files.items():
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).write_text(text)
    return tmp


VALUES = "web:\n  resources: {}\n"


@pytest.mark.parametrize(("files", "data", "expected"), [
    ({"charts/shop/Chart.yaml": "name: shop\nversion: 0.1.0\n", "charts/shop/values.yaml": VALUES},
     {"valuesFile": "charts/shop/values.yaml"}, ("charts/shop", (), "shop", "default")),
    ({"Chart.yaml": "name: root\n", "values.yaml": VALUES},
     {"valuesFile": "values.yaml", "namespace": "prod"}, (".", (), "root", "prod")),
    ({"charts/shop/Chart.yaml": "name: shop\n", "envs/prod.yaml": VALUES},
     {"valuesFile": "envs/prod.yaml", "chart": "charts/shop", "releaseName": "web"},
     ("charts/shop", ("envs/prod.yaml",), "web", "default")),
    ({"envs/prod.yaml": VALUES}, {"valuesFile": "envs/prod.yaml"},
     ("", ("envs/prod.yaml",), "", "default")),
])
def test_index_finds_the_chart(tmp_path: pathlib.Path, files: dict[str, str],
                               data: dict[str, Any],
                               expected: tuple[str, tuple[str, ...], str, str]) -> None:
    root = _repo(tmp_path, files)
    lay = layout.parse_layout({"kind": "helm", "valuesPaths": {"web": "web"}, **data})
    target = ("default", "Deployment", "web")
    src = repo_index.Index.build(root, lay, [target]).locate(target)
    assert (src.chart, src.values_files, src.release, src.release_namespace) == expected


def test_merge_values_is_helms_order() -> None:
    a = {"web": {"resources": {"requests": {"cpu": "1"}}, "replicas": 1}, "tags": [1]}
    b = {"web": {"resources": {"requests": {"memory": "1Gi"}}, "replicas": 2}, "tags": [2]}
    assert helm.merge_values([a, b]) == {
        "web": {"resources": {"requests": {"cpu": "1", "memory": "1Gi"}}, "replicas": 2},
        "tags": [2]}
    assert a["web"]["resources"] == {"requests": {"cpu": "1"}}  # the inputs stay


@pytest.mark.skipif(helm.available() is not None, reason=f"{helm.available()}")
def test_parse_values_with_the_library() -> None:
    assert helm.parse_values("replicaCount: 1\t\nresources: {}\n", "v.yaml") == {
        "replicaCount": 1, "resources": {}}
    with pytest.raises(errors.PermanentError, match=r"v\.yaml") as info:
        helm.parse_values("a: [\n", "v.yaml")
    assert info.value.__cause__ is not None
