"""Several Helm values files in the cluster's order (reconciler.config.layout `valuesFiles`,
`application`; reconciler.gitops.index: the layers, the winning file; reconciler.gitops.render:
a key a later file sets is refused).

Cases:
- layout: `valuesFiles` alone makes the last one the environment's own file; a
  `valuesFile` outside the list, a list that is not a list, a path leaving the repository:
  ConfigError naming the key; `application` alone is enough for kind helm; neither file
  nor application names valuesFile;
- the Argo CD Application (``index._argo_helm``): chart path, value files relative to it,
  `helm.releaseName`, else the Application's name, the destination namespace, inline
  `helm.values` (a string) as the last layer; not an Application, a `$values/...` file
  of a single source: ConfigError naming the Application;
- an Application with `spec.sources`: one source in a list reads as `spec.source`; the
  chart here with `$values/...` from the same repository (by the one Git URL, or by the
  writer's clone URL in another spelling); a chart from a Helm repository with values
  from this repository named by owner/name (chart elsewhere); refused naming it: two
  chart sources or none, a `$ref` to another repository, two Git repositories none of
  which is named, a chart-relative file of a chart elsewhere, no sources at all; repository
  URLs compared in one spelling (`_repo_key`); inline values edited in the manifest
  (`inline_at`) only for a single source's `helm.valuesObject`, not a `helm.values`
  string nor a source in `spec.sources`; the names of this repository (`names`):
  a remote clone URL and the forge's owner/name, never a local path;
- the index over [values.yaml, values-production.yaml]: ``observed`` sees the merged
  values (the production limit over the base's requests); the source is the production
  file with values.yaml as the chart's defaults (not a `-f` file); with values.yaml as the
  own file, the keys the production file sets are shadowed, and render refuses a change
  to one of them naming the production file, while a key no later file sets renders;
- a values file of the list that is missing: ConfigError at index time naming it;
- layout `helmRelease`: enough for kind helm; with `application`: ConfigError;
- the Flux HelmRelease (``index._flux_helm``): chart path and valuesFiles from the
  repository root (a v2beta1 `valuesFile` before them), release `[targetNamespace-]name`
  else `spec.releaseName`, namespace `targetNamespace` else the HelmRelease's own; layers
  in helm-controller's order: each `valuesFrom` (a ConfigMap read from its manifest, with
  `valuesKey` and `targetPath`; a Secret or a ConfigMap not found: opaque, under its
  targetPath), then `spec.values`; malformed (not a HelmRelease, `chartRef`, a
  HelmRepository source, no chart path, valuesFiles not a list, valuesFrom not naming a
  ConfigMap or Secret, values not a mapping): ConfigError naming the HelmRelease and the
  field;
- the index over a HelmRelease: valuesFiles without the chart's values.yaml: ConfigError
  (Flux drops the chart's defaults); an opaque Secret with `targetPath` shadows only the
  keys under that path, one without shadows every key.
"""

from __future__ import annotations

import pathlib
from typing import Any

import pytest

from reconciler.config import layout
from reconciler.domain import errors, planner
from reconciler.gitops import index as repo_index
from reconciler.gitops import render

TARGET = ("production", "Deployment", "web")
BASE = "web:\n  resources:\n    requests: {cpu: 100m}\n  replicas: 1\n"
PROD = "web:\n  resources:\n    limits: {memory: 256Mi}\n  replicas: 3\n"


def _layout(**extra: Any) -> layout.Layout:
    return layout.parse_layout({"kind": "helm", "valuesPaths": {"web": "web"}, **extra})


def test_values_files_make_the_last_the_own() -> None:
    lay = _layout(valuesFiles=["c/values.yaml", "c/values-prod.yaml"])
    assert lay.values_file == "c/values-prod.yaml"
    assert lay.values_files == ("c/values.yaml", "c/values-prod.yaml")
    assert _layout(application="apps/web.yaml").values_file == ""


@pytest.mark.parametrize(("data", "key"), [
    ({"valuesFiles": ["a.yaml"], "valuesFile": "b.yaml"}, "valuesFile must be one of"),
    ({"valuesFiles": "a.yaml"}, "valuesFiles must be a list"),
    ({"valuesFiles": ["../a.yaml"]}, "valuesFiles"),
    ({}, "valuesFile is required"),
])
def test_layout_errors(data: dict[str, Any], key: str) -> None:
    with pytest.raises(errors.ConfigError, match=key):
        layout.parse_layout({"kind": "helm", **data})


APP = """\
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: web-prod}
spec:
  source:
    path: charts/web
    helm:
      valueFiles: [values.yaml, ../../envs/prod.yaml]
      values: |
        web:
          replicas: 5
  destination: {namespace: prod}
"""


def test_argo_application() -> None:
    app = repo_index._argo_helm("apps/web.yaml", APP)
    assert (app.chart, app.files, app.release, app.namespace) == (
        "charts/web", ("charts/web/values.yaml", "envs/prod.yaml"), "web-prod", "prod")
    assert app.inline == (("apps/web.yaml (helm.values)", {"web": {"replicas": 5}}),)
    named = repo_index._argo_helm("a.yaml", APP.replace("    helm:\n",
                                                        "    helm:\n      releaseName: web\n"))
    assert named.release == "web"


@pytest.mark.parametrize("text", [
    APP.replace("kind: Application", "kind: ApplicationSet"),
    APP.replace("../../envs/prod.yaml", "$values/envs/prod.yaml"),
])
def test_argo_application_refused(text: str) -> None:
    with pytest.raises(errors.ConfigError, match=r"apps/web\.yaml"):
        repo_index._argo_helm("apps/web.yaml", text)


GITOPS = "https://git.example.com/platform/gitops.git"


def _sources(*sources: str) -> str:
    """An Application with ``spec.sources`` (each a YAML flow mapping)."""
    items = "".join(f"  - {src}\n" for src in sources)
    return (f"apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {{name: web}}\n"
            f"spec:\n  sources:\n{items}  destination: {{namespace: prod}}\n")


CHART_HERE = (f"{{repoURL: {GITOPS}, path: charts/web, helm: {{valueFiles: [values.yaml, "
              "$values/envs/prod.yaml]}}")
CHART_REPO = ("{repoURL: 'https://charts.example.com', chart: web, targetRevision: 1.2.0, "
              "helm: {valueFiles: [$values/envs/prod.yaml]}}")


@pytest.mark.parametrize(("text", "repository", "chart", "files", "elsewhere"), [
    # one source in a list: as spec.source
    (_sources("{path: charts/web, helm: {valueFiles: [values.yaml]}}"), (),
     "charts/web", ("charts/web/values.yaml",), False),
    # the chart here, $values from the same repository (none named: the one Git URL)
    (_sources(CHART_HERE, f"{{repoURL: {GITOPS}, ref: values}}"), (),
     "charts/web", ("charts/web/values.yaml", "envs/prod.yaml"), False),
    # named by the writer's clone URL in another spelling
    (_sources(CHART_HERE, f"{{repoURL: {GITOPS}, ref: values}}"),
     ("git@git.example.com:platform/gitops",),
     "charts/web", ("charts/web/values.yaml", "envs/prod.yaml"), False),
    # a chart from a Helm repository, values from this one (named by owner/name)
    (_sources(CHART_REPO, "{repoURL: 'git@github.com:acme/gitops.git', ref: values}",
              "{repoURL: 'https://github.com/acme/other', ref: other}"),
     ("acme/gitops",), "", ("envs/prod.yaml",), True),
])
def test_argo_sources(text: str, repository: tuple[str, ...], chart: str,
                      files: tuple[str, ...], elsewhere: bool) -> None:
    app = repo_index._argo_helm("apps/web.yaml", text, repository)
    assert (app.chart, app.files, app.chart_elsewhere) == (chart, files, elsewhere)
    assert (app.release, app.namespace) == ("web", "prod")


@pytest.mark.parametrize(("text", "at"), [
    # a single source's helm.valuesObject: edited in place
    (APP.replace("      values: |\n        web:\n          replicas: 5\n",
                 "      valuesObject:\n        web: {replicas: 5}\n"),
     (("apps/web.yaml (helm.values)", "apps/web.yaml",
       ("spec", "source", "helm", "valuesObject")),)),
    # helm.values is a string: not edited
    (APP, ()),
    # a source in spec.sources: the path would run through a list index, not edited
    (_sources("{path: charts/web, helm: {valuesObject: {web: {replicas: 5}}}}"), ()),
])
def test_argo_inline_values_editable(text: str, at: tuple[object, ...]) -> None:
    app = repo_index._argo_helm("apps/web.yaml", text)
    assert app.inline_at == at and len(app.inline) == 1


@pytest.mark.parametrize(("text", "repository", "why"), [
    (_sources(CHART_HERE, f"{{repoURL: {GITOPS}, ref: values}}", CHART_REPO), (),
     "2 of its sources render a Helm chart"),
    (_sources("{repoURL: x, ref: values}"), (), "0 of its sources"),
    (_sources(CHART_REPO, "{repoURL: 'https://github.com/acme/other', ref: values}"),
     ("acme/gitops",), "another repository"),
    # two Git repositories and neither named: which one is this is not known
    (_sources(CHART_REPO, "{repoURL: 'https://a.example/x', ref: values}",
              "{repoURL: 'https://b.example/y', ref: other}"), (), "another repository"),
    (_sources("{repoURL: 'https://charts.example.com', chart: web, "
              "helm: {valueFiles: [values-prod.yaml]}}"), (), "not a file of this repository"),
    (_sources(), (), "neither spec.source nor spec.sources"),
])
def test_argo_sources_refused(text: str, repository: tuple[str, ...], why: str) -> None:
    with pytest.raises(errors.ConfigError, match=rf"apps/web\.yaml.*{why}"):
        repo_index._argo_helm("apps/web.yaml", text, repository)


@pytest.mark.parametrize(("clone", "forge", "expected"), [
    ("https://github.com/acme/gitops.git", "", ("https://github.com/acme/gitops.git",)),
    ("git@github.com:acme/gitops.git", "acme/gitops",
     ("git@github.com:acme/gitops.git", "acme/gitops")),
    ("/srv/git/gitops.git", "", ()),
    ("file:///srv/git/gitops.git", "acme/gitops", ("acme/gitops",)),
])
def test_names(clone: str, forge: str, expected: tuple[str, ...]) -> None:
    assert repo_index.names(clone, forge) == expected


@pytest.mark.parametrize(("url", "key"), [
    ("https://GitHub.com/Acme/App.git", "github.com/acme/app"),
    ("git@github.com:acme/app.git", "github.com/acme/app"),
    ("ssh://git@github.com/acme/app/", "github.com/acme/app"),
    ("https://git.example.com:8443/acme/app", "git.example.com:8443/acme/app"),
    ("acme/app", "acme/app"),
])
def test_repo_key(url: str, key: str) -> None:
    assert repo_index._repo_key(url) == key


def _repo(tmp: pathlib.Path) -> pathlib.Path:
    (tmp / "c").mkdir()
    (tmp / "c" / "Chart.yaml").write_text("name: web\nversion: 0.1.0\n")
    (tmp / "c" / "values.yaml").write_text(BASE)
    (tmp / "c" / "values-prod.yaml").write_text(PROD)
    return tmp


def test_the_index_merges_and_picks_the_own_file(tmp_path: pathlib.Path) -> None:
    root = _repo(tmp_path)
    lay = _layout(valuesFiles=["c/values.yaml", "c/values-prod.yaml"], namespace="production")
    index = repo_index.Index.build(root, lay, [TARGET])
    obs = index.observed(TARGET) or {}
    assert planner.current_resources(obs)["server"] == {
        "requests": {"cpu": "100m"}, "limits": {"memory": "256Mi"}}
    assert obs["spec"]["replicas"] == 3
    src = index.locate(TARGET)
    assert (src.path, src.values_files, src.chart, src.values_shadowed) == (
        "c/values-prod.yaml", ("c/values-prod.yaml",), "c", ())


def test_a_key_a_later_file_sets_is_refused(tmp_path: pathlib.Path) -> None:
    root = _repo(tmp_path)
    lay = _layout(valuesFiles=["c/values.yaml", "c/values-prod.yaml"],
                  valuesFile="c/values.yaml")
    index = repo_index.Index.build(root, lay, [TARGET])
    src = index.locate(TARGET)
    assert dict(src.values_shadowed) == {"web.resources.limits.memory": "c/values-prod.yaml",
                                         "web.replicas": "c/values-prod.yaml"}

    def base_text(rel: str) -> str:
        return (root / rel).read_text()

    scale = planner.Plan("r1", "Deployment", "production", "web", replicas=(3, 4))
    cpu = planner.Plan("r2", "Deployment", "production", "web", resources=(
        planner.ValueEdit("server", "requests", "cpu", "100m", "50m"),))
    out = render.render_many(root, [(src, scale), (src, cpu)], base_text=base_text)
    assert "c/values-prod.yaml" in out.errors["r1"] and "change nothing" in out.errors["r1"]
    assert "r2" not in out.errors and "cpu: 50m" in out.texts["c/values.yaml"]


def test_a_missing_values_file(tmp_path: pathlib.Path) -> None:
    root = _repo(tmp_path)
    lay = _layout(valuesFiles=["c/values.yaml", "c/values-staging.yaml"])
    with pytest.raises(errors.ConfigError, match=r"values-staging\.yaml"):
        repo_index.Index.build(root, lay, [TARGET])


def test_layout_helm_release() -> None:
    assert _layout(helmRelease="clusters/web.yaml").helm_release == "clusters/web.yaml"
    with pytest.raises(errors.ConfigError, match="application and helmRelease"):
        _layout(helmRelease="a.yaml", application="b.yaml")


HR = """\
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata: {name: web, namespace: flux-system}
spec:
  targetNamespace: prod
  chart:
    spec:
      chart: ./charts/web
      sourceRef: {kind: GitRepository, name: repo}
      valuesFiles: [charts/web/values.yaml, envs/prod.yaml]
  valuesFrom:
  - {kind: ConfigMap, name: web-values}
  - {kind: ConfigMap, name: web-cpu, valuesKey: cpu, targetPath: web.resources.requests.cpu}
  - {kind: Secret, name: web-secret, targetPath: web.replicas}
  - {kind: ConfigMap, name: elsewhere}
  values:
    web: {replicas: 5}
"""
CMS = {"web-values": {"file": "clusters/cm.yaml", "data": {"values.yaml": "web: {a: 1}\n"}},
       "web-cpu": {"file": "clusters/cm.yaml", "data": {"cpu": "200m"}}}


def _cm(near: str, namespace: str, name: str) -> Any:
    assert (near, namespace) == ("clusters/web.yaml", "flux-system")
    return CMS.get(name)


def test_flux_helm_release() -> None:
    hr = repo_index._flux_helm("clusters/web.yaml", HR, _cm)
    assert (hr.chart, hr.files, hr.release, hr.namespace, hr.replaces_defaults) == (
        "charts/web", ("charts/web/values.yaml", "envs/prod.yaml"), "prod-web", "prod", True)
    assert [name for name, _ in hr.inline] == [
        "clusters/cm.yaml (ConfigMap/web-values, spec.valuesFrom[0] of clusters/web.yaml)",
        "clusters/cm.yaml (ConfigMap/web-cpu, spec.valuesFrom[1] of clusters/web.yaml)",
        "Secret/web-secret (spec.valuesFrom[2] of clusters/web.yaml: not read from the "
        "repository, so it may set any key under web.replicas)",
        "ConfigMap/elsewhere (spec.valuesFrom[3] of clusters/web.yaml: not read from the "
        "repository, so it may set any key)",
        "clusters/web.yaml (spec.values)"]
    data = [d for _, d in hr.inline]
    assert data[0] == {"web": {"a": 1}}
    assert data[1] == {"web": {"resources": {"requests": {"cpu": "200m"}}}}
    assert data[2] == repo_index._Opaque(("web", "replicas"))
    assert data[3] == repo_index._Opaque(None)
    # spec.values is the one layer edited in place, in the HelmRelease
    assert hr.inline_at == (("clusters/web.yaml (spec.values)", "clusters/web.yaml",
                             ("spec", "values")),)
    assert data[4] == {"web": {"replicas": 5}}
    plain = HR.replace("  targetNamespace: prod\n", "").replace(
        "      valuesFiles: [charts/web/values.yaml, envs/prod.yaml]\n",
        "      valuesFile: charts/web/values.yaml\n      valuesFiles: [envs/prod.yaml]\n")
    hr = repo_index._flux_helm("clusters/web.yaml", plain, _cm)
    assert (hr.files, hr.release, hr.namespace) == (
        ("charts/web/values.yaml", "envs/prod.yaml"), "web", "flux-system")
    named = plain.replace("spec:\n", "spec:\n  releaseName: web-live\n", 1)
    assert repo_index._flux_helm("clusters/web.yaml", named, _cm).release == "web-live"


@pytest.mark.parametrize(("old", "new", "field"), [
    ("kind: HelmRelease", "kind: Kustomization", "not a Flux HelmRelease"),
    ("apiVersion: helm.toolkit.fluxcd.io/v2", "apiVersion: example.com/v1",
     "not a Flux HelmRelease"),
    ("  chart:\n", "  chartRef: {kind: OCIRepository, name: web}\n  chart:\n",
     "spec.chartRef"),
    ("kind: GitRepository", "kind: HelmRepository", "spec.chart.spec.sourceRef.kind"),
    ("      chart: ./charts/web\n", "", "spec.chart.spec.chart"),
    ("valuesFiles: [charts/web/values.yaml, envs/prod.yaml]", "valuesFiles: envs/prod.yaml",
     "spec.chart.spec.valuesFiles"),
    ("  - {kind: ConfigMap, name: elsewhere}", "  - {kind: Volume, name: elsewhere}",
     r"spec.valuesFrom\[3\]"),
    ("targetPath: web.replicas", "targetPath: [web]", r"spec.valuesFrom\[2\].targetPath"),
    ("    web: {replicas: 5}\n", "    - web\n", "spec.values"),
])
def test_flux_helm_release_refused(old: str, new: str, field: str) -> None:
    assert old in HR
    with pytest.raises(errors.ConfigError, match=rf"clusters/web\.yaml.*{field}"):
        repo_index._flux_helm("clusters/web.yaml", HR.replace(old, new), _cm)


FLUX_REPO_HR = """\
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata: {name: web, namespace: production}
spec:
  chart:
    spec:
      chart: c
      sourceRef: {kind: GitRepository, name: repo}
      valuesFiles: [c/values.yaml, c/values-prod.yaml]
  valuesFrom:
  - {kind: Secret, name: web-secret, targetPath: web.replicas}
"""


def test_the_index_over_a_helm_release(tmp_path: pathlib.Path) -> None:
    root = _repo(tmp_path)
    (root / "hr.yaml").write_text(FLUX_REPO_HR)
    lay = _layout(helmRelease="hr.yaml")
    src = repo_index.Index.build(root, lay, [TARGET]).locate(TARGET)
    assert (src.path, src.values_files, src.chart, src.release, src.release_namespace) == (
        "c/values-prod.yaml", ("c/values-prod.yaml",), "c", "web", "production")
    assert [k for k, _ in src.values_shadowed] == ["web.replicas"]
    (root / "hr.yaml").write_text(FLUX_REPO_HR.replace(", targetPath: web.replicas", ""))
    src = repo_index.Index.build(root, lay, [TARGET]).locate(TARGET)
    assert len(src.values_shadowed) == 9 and all(
        "Secret/web-secret" in f for _, f in src.values_shadowed)
    (root / "hr.yaml").write_text(FLUX_REPO_HR.replace("c/values.yaml, ", ""))
    with pytest.raises(errors.ConfigError, match=r"does not list the chart's c/values\.yaml"):
        repo_index.Index.build(root, lay, [TARGET])
