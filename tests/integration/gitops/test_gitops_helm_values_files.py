"""Several Helm values files in the order the cluster uses them (issue 15, item 2):
`reconciler apply --layout FILE` on a real git repository holding the `helm create` chart
(tests/golden/layout/helm_create_chart/myapp) with a production file beside its
values.yaml and the Argo CD Application that deploys it to namespace `production`
(tests/golden/layout/helm_envs: `helm.valueFiles: [values.yaml, values-production.yaml]`,
`releaseName: myapp`).

Cases:
- the Application read by the layout (`application:`): every change goes to the
  environment's own file, values-production.yaml, whether that file sets the key
  (`replicaCount: 3`, `resources.limits.memory`, `cache.replicaCount`: edited in place,
  the comment kept) or only values.yaml does (`resources: {}`, `cache.resources: {}`:
  added to the production file, which wins); values.yaml is not touched; the diff holds
  only those lines; the edit was verified by rendering with both files in order as
  release `myapp` in `production` (the Helm library; skipped when it cannot load), and the
  rendered Deployments carry the recommended values and keep the others (the memory
  limit from the production file);
- the same with the files listed in the layout (`valuesFiles`, `releaseName`,
  `namespace`): the same diff;
- the same with the Flux HelmRelease read by the layout (`helmRelease:`;
  tests/golden/layout/helm_envs/helmrelease.yaml: `spec.chart.spec.valuesFiles` from the
  repository root, no releaseName, so the release is its name, `myapp`, in its namespace):
  the same diff, verified the same way;
- Flux `valuesFrom` and `values` come after the files: a key the HelmRelease sets inline
  (`spec.values`, the layer that wins) is edited there, in the HelmRelease, verified by
  the render with the edited HelmRelease; a key a `valuesFrom` Secret may set (its
  `targetPath`) is Failed naming the Secret and saying it is not read from the repository;
  a ConfigMap whose manifest is beside the HelmRelease is read, and a key it sets is
  Failed naming that manifest; the replica count, which none of them sets, goes to the
  production file; nothing else is written;
- the environment's own file named before a file that sets the key (`valuesFile:
  myapp/values.yaml`): the replica change is Failed naming values-production.yaml and
  saying the value would change nothing; a value the Application sets inline in
  `helm.valuesObject` (the layer that wins) is edited there, in the Application, and
  only that line changes (verified by the render with the edited Application);
- a value set inline in the Application's `helm.values` string is Failed naming it and
  saying to change it by hand; nothing is committed;
- inline values reach the verifying render: an Application turning `autoscaling.enabled`
  on (the chart then renders no `replicas`) makes a replica change Failed, the render
  giving nothing for `replicaCount` (needs the Helm library);
- a multi-source Application (the chart's path and a `ref: values` source in this
  repository, `$values/myapp/values-production.yaml`): the same diff as the single
  source, verified by the render;
- a multi-source Application whose chart comes from a Helm repository: with
  verification Failed saying the chart is not in this repository and naming
  --no-verify-render, nothing pushed; with --no-verify-render the replica change goes to
  the `$values` production file.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from reconciler.adapters import helm
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

CHART = GOLDEN / "helm_create_chart" / "myapp"
ENVS = GOLDEN / "helm_envs"
PROD = "myapp/values-production.yaml"
PATHS = ("defaultContainer: myapp\nvaluesPaths:\n  myapp: '.'\n"
         "  myapp-cache: {prefix: cache, container: cache}\n")
RECS = (wrec("e-size", "production", "myapp",
             "  action: Rightsizing\n  containers:\n  - name: myapp\n    resources:\n"
             "      requests: {cpu: 50m}\n      limits: {memory: 320Mi}\n")
        + wrec("e-scale", "production", "myapp", "  action: ReplicaScaling\n  replicas: 4\n")
        + wrec("e-cache", "production", "myapp-cache", rightsize("cache", "{cpu: 20m}"))
        + wrec("e-cache-scale", "production", "myapp-cache",
               "  action: ReplicaScaling\n  replicas: 5\n"))
EXPECTED_DIFF = sorted([
    "-replicaCount: 3   # peak traffic", "+replicaCount: 4   # peak traffic",
    "+  requests:", "+    cpu: 50m",
    "-    memory: 256Mi", "+    memory: 320Mi",
    "-  replicaCount: 2", "+  replicaCount: 5",
    "+  resources:", "+    requests:", "+      cpu: 20m",
])
LAYOUTS = {
    "application": "kind: helm\napplication: apps/myapp-production.yaml\n" + PATHS,
    "helmRelease": "kind: helm\nhelmRelease: clusters/production/myapp.yaml\n" + PATHS,
    "valuesFiles": ("kind: helm\nvaluesFiles: [myapp/values.yaml, myapp/values-production.yaml]\n"
                    "releaseName: myapp\nnamespace: production\n" + PATHS),
}


def _origin(tmp: Path, app: str | None = None, release: str | None = None,
            extra: dict[str, str] | None = None) -> Path:
    seed = tmp / "content"
    shutil.copytree(CHART, seed / "myapp")
    shutil.copy(ENVS / "values-production.yaml", seed / PROD)
    (seed / "apps").mkdir()
    (seed / "apps" / "myapp-production.yaml").write_text(
        app if app is not None else (ENVS / "application.yaml").read_text())
    (seed / "clusters" / "production").mkdir(parents=True)
    (seed / "clusters" / "production" / "myapp.yaml").write_text(
        release if release is not None else (ENVS / "helmrelease.yaml").read_text())
    for rel, text in (extra or {}).items():
        (seed / rel).write_text(text)
    return make_origin(tmp, {"": seed})


def _apply(tmp: Path, origin: Path, recs: str, layout: str,
           capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, object]]:
    (tmp / "layout.yaml").write_text(layout)
    return apply(tmp, origin, recs, tmp / "layout.yaml", capsys,
                 *([] if helm.available() is None else ["--no-verify-render"]))


@pytest.mark.parametrize("how", sorted(LAYOUTS))
def test_the_environments_file_wins(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    how: str) -> None:
    origin = _origin(tmp_path)
    results = _apply(tmp_path, origin, RECS, LAYOUTS[how], capsys)
    for rid in ("e-size", "e-scale", "e-cache", "e-cache-scale"):
        assert results[rid]["phase"] == "Applying", results[rid]
    branch = str(results["e-size"]["branch"])
    assert changed_files(origin, branch) == [PROD]
    assert sorted(diff_lines(origin, branch)) == EXPECTED_DIFF

    if helm.available() is not None:
        return
    checkout = tmp_path / "checkout"
    sh("git", "clone", "-q", "-b", branch, str(origin), str(checkout))
    prod = helm.parse_values((checkout / PROD).read_text(), PROD)
    manifests = helm.render(checkout / "myapp", values=prod, release="myapp",
                            namespace="production")
    deployments = {d["metadata"]["name"]: d["spec"] for k, text in manifests.items()
                   if k.endswith("deployment.yaml") for d in [yaml.safe_load(text)]}
    web, cache = deployments["myapp"], deployments["myapp-cache"]
    assert web["replicas"] == 4 and cache["replicas"] == 5
    assert web["template"]["spec"]["containers"][0]["resources"] == {
        "requests": {"cpu": "50m"}, "limits": {"memory": "320Mi"}}
    assert cache["template"]["spec"]["containers"][0]["resources"] == {
        "requests": {"cpu": "20m"}}


def test_a_key_a_later_layer_sets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    app = (ENVS / "application.yaml").read_text().replace("      releaseName: myapp\n",
                      "      releaseName: myapp\n      valuesObject:\n        cache:\n"
                      "          replicaCount: 3\n")
    origin = _origin(tmp_path, app)
    layout = ("kind: helm\napplication: apps/myapp-production.yaml\n"
              "valuesFile: myapp/values.yaml\n" + PATHS)
    recs = (wrec("l-scale", "production", "myapp", "  action: ReplicaScaling\n  replicas: 4\n")
            + wrec("l-cache-scale", "production", "myapp-cache",
                   "  action: ReplicaScaling\n  replicas: 5\n"))
    results = _apply(tmp_path, origin, recs, layout, capsys)
    scale = str(results["l-scale"]["message"])
    assert results["l-scale"]["phase"] == "Failed", results["l-scale"]
    assert "replicaCount" in scale and PROD in scale and "change nothing" in scale, scale
    # The Application's own valuesObject wins for the cache's count: edited there.
    assert results["l-cache-scale"]["phase"] == "Applying", results["l-cache-scale"]
    branch = str(results["l-cache-scale"]["branch"])
    assert changed_files(origin, branch) == ["apps/myapp-production.yaml"]
    assert sorted(diff_lines(origin, branch)) == ["+          replicaCount: 5",
                                                  "-          replicaCount: 3"]


def test_a_key_set_in_an_inline_string_is_refused(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    app = (ENVS / "application.yaml").read_text().replace("      releaseName: myapp\n",
                      "      releaseName: myapp\n      values: |\n        cache:\n"
                      "          replicaCount: 3\n")
    origin = _origin(tmp_path, app)
    recs = wrec("l-cache-scale", "production", "myapp-cache",
                "  action: ReplicaScaling\n  replicas: 5\n")
    results = _apply(tmp_path, origin, recs, LAYOUTS["application"], capsys)
    cache = str(results["l-cache-scale"]["message"])
    assert results["l-cache-scale"]["phase"] == "Failed", results["l-cache-scale"]
    assert "apps/myapp-production.yaml (helm.values)" in cache and "by hand" in cache, cache
    assert sh("git", "--git-dir", str(origin), "for-each-ref", "--format=%(refname:short)",
              "refs/heads").split() == ["main"]


@pytest.mark.skipif(helm.available() is not None, reason=f"{helm.available()}")
def test_inline_values_reach_the_render(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    app = (ENVS / "application.yaml").read_text().replace(
        "      releaseName: myapp\n",
        "      releaseName: myapp\n      values: |\n        autoscaling:\n"
        "          enabled: true\n")
    origin = _origin(tmp_path, app)
    recs = wrec("i-scale", "production", "myapp", "  action: ReplicaScaling\n  replicas: 4\n")
    results = _apply(tmp_path, origin, recs, LAYOUTS["application"], capsys)
    message = str(results["i-scale"]["message"])
    assert results["i-scale"]["phase"] == "Failed", results["i-scale"]
    assert "replicaCount does not reach Deployment/myapp" in message, message
    assert "the render gives nothing" in message, message


FLUX_FROM = """\
  valuesFrom:
    - kind: ConfigMap
      name: myapp-cache
    - kind: Secret
      name: myapp-limits
      valuesKey: memory
      targetPath: resources.limits.memory
  values:
    cache:
      resources:
        requests:
          cpu: 10m
"""
CACHE_CM = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: myapp-cache
  namespace: production
data:
  values.yaml: |
    cache:
      replicaCount: 2
"""


def test_flux_values_from_and_values(tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    release = (ENVS / "helmrelease.yaml").read_text() + FLUX_FROM
    origin = _origin(tmp_path, release=release,
                     extra={"clusters/production/myapp-cache.yaml": CACHE_CM})
    recs = (wrec("e-scale", "production", "myapp", "  action: ReplicaScaling\n  replicas: 4\n")
            + wrec("e-cache", "production", "myapp-cache", rightsize("cache", "{cpu: 20m}"))
            + wrec("e-cache-scale", "production", "myapp-cache",
                   "  action: ReplicaScaling\n  replicas: 5\n")
            + wrec("f-size", "production", "myapp",
                   "  action: Rightsizing\n  containers:\n  - name: myapp\n    resources:\n"
                   "      requests: {cpu: 50m}\n      limits: {memory: 320Mi}\n"))
    results = _apply(tmp_path, origin, recs, LAYOUTS["helmRelease"], capsys)
    messages = {rid: str(r.get("message", "")) for rid, r in results.items()}
    assert results["e-scale"]["phase"] == "Applying", results["e-scale"]
    # spec.values sets the cache's CPU request and wins: edited there, in the HelmRelease.
    assert results["e-cache"]["phase"] == "Applying", results["e-cache"]
    assert results["e-cache"]["branch"] == results["e-scale"]["branch"]
    assert results["e-cache-scale"]["phase"] == "Failed", results["e-cache-scale"]
    assert ("clusters/production/myapp-cache.yaml (ConfigMap/myapp-cache"
            in messages["e-cache-scale"]), messages["e-cache-scale"]
    assert results["f-size"]["phase"] == "Failed", messages["f-size"]
    assert "Secret/myapp-limits" in messages["f-size"], messages["f-size"]
    assert "not read from the repository" in messages["f-size"], messages["f-size"]
    branch = str(results["e-scale"]["branch"])
    assert changed_files(origin, branch) == ["clusters/production/myapp.yaml", PROD]
    assert sorted(diff_lines(origin, branch)) == [
        "+          cpu: 20m", "+replicaCount: 4   # peak traffic",
        "-          cpu: 10m", "-replicaCount: 3   # peak traffic"]


MULTI_SOURCE = """\
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: myapp-production
  namespace: argocd
spec:
  sources:
    - repoURL: {chart_source}
      helm:
        releaseName: myapp
        valueFiles:
          - {first}
          - $values/myapp/values-production.yaml
    - repoURL: https://git.example.com/platform/gitops.git
      targetRevision: main
      ref: values
  destination:
    server: https://kubernetes.default.svc
    namespace: production
"""


def test_multi_source_application(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    app = MULTI_SOURCE.format(chart_source="https://git.example.com/platform/gitops.git\n"
                                           "      path: myapp", first="values.yaml")
    origin = _origin(tmp_path, app)
    results = _apply(tmp_path, origin, RECS, LAYOUTS["application"], capsys)
    for rid in ("e-size", "e-scale", "e-cache", "e-cache-scale"):
        assert results[rid]["phase"] == "Applying", results[rid]
    branch = str(results["e-size"]["branch"])
    assert changed_files(origin, branch) == [PROD]
    assert sorted(diff_lines(origin, branch)) == EXPECTED_DIFF


def test_multi_source_chart_from_a_helm_repository(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    app = MULTI_SOURCE.format(chart_source="https://charts.example.com\n      chart: myapp\n"
                                           "      targetRevision: 0.1.0",
                              first="$values/myapp/values.yaml")
    origin = _origin(tmp_path, app)
    recs = wrec("e-scale", "production", "myapp", "  action: ReplicaScaling\n  replicas: 4\n")
    (tmp_path / "layout.yaml").write_text(LAYOUTS["application"])
    if helm.available() is None:
        refused = apply(tmp_path / "verified", origin, recs, tmp_path / "layout.yaml", capsys)
        message = str(refused["e-scale"]["message"])
        assert refused["e-scale"]["phase"] == "Failed", refused
        assert "not in this repository" in message and "--no-verify-render" in message
        assert sh("git", "--git-dir", str(origin), "for-each-ref",
                  "--format=%(refname:short)", "refs/heads").split() == ["main"]
    results = apply(tmp_path / "unverified", origin, recs, tmp_path / "layout.yaml", capsys,
                    "--no-verify-render")
    assert results["e-scale"]["phase"] == "Applying", results
    branch = str(results["e-scale"]["branch"])
    assert changed_files(origin, branch) == [PROD]
    assert sorted(diff_lines(origin, branch)) == ["+replicaCount: 4   # peak traffic",
                                                  "-replicaCount: 3   # peak traffic"]
