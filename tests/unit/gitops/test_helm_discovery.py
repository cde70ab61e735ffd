"""Values paths found, not configured (reconciler.gitops.index ``Index._discover``) on the
`helm create` chart with a subchart (tests/golden/layout/helm_create_chart).

Cases:
- no `valuesPaths`: the top-level Deployment is located at `resources` (container myapp)
  and `replicaCount`, the subchart's at `cache.resources` (container cache) and
  `cache.replicaCount`; ``observed`` reads them; one render for the batch
  (``stats.discovery_renders``), none for a second index on the same chart (kept by
  digest), one again after ``forget_discoveries``;
- a changed values file is another chart state: discovered again;
- a DaemonSet (a kind recommendations target, without replicas) is probed too: its
  container is located at `agent.resources`;
- `valuesPaths` stays the override: a configured workload renders nothing;
- a workload no probe reaches: NotFoundError naming the chart and valuesPaths.

Skipped when the Helm library cannot load here.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from reconciler.adapters import helm
from reconciler.config import layout
from reconciler.domain import errors
from reconciler.gitops import index as repo_index

pytestmark = pytest.mark.skipif(helm.available() is not None,
                                reason="the Helm library cannot load here")

CHART = Path(__file__).resolve().parents[2] / "golden" / "layout" / "helm_create_chart"
WEB = ("default", "Deployment", "myapp")
CACHE = ("default", "Deployment", "myapp-cache")


def _index(root: Path, **extra: object) -> repo_index.Index:
    lay = layout.parse_layout({"kind": "helm", "valuesFile": "myapp/values.yaml", **extra})
    return repo_index.Index.build(root, lay, [WEB, CACHE, ("default", "Deployment", "nope")])


def _copy(tmp: Path) -> Path:
    shutil.copytree(CHART, tmp / "repo")
    return tmp / "repo"


def test_found_and_cached(tmp_path: Path) -> None:
    repo_index.forget_discoveries()
    root = _copy(tmp_path)
    idx = _index(root)
    web, cache = idx.locate(WEB), idx.locate(CACHE)
    assert (web.values_containers, web.values_replicas) == ((("myapp", "resources"),),
                                                            "replicaCount")
    assert (cache.values_containers, cache.values_replicas) == (
        (("cache", "cache.resources"),), "cache.replicaCount")
    assert cache.values_prefix == "cache" and web.values_prefix == ""
    observed = idx.observed(CACHE)
    assert observed is not None and observed["spec"]["replicas"] == 1
    assert idx.stats.discovery_renders == 1

    again = _index(root)
    assert again.locate(CACHE) == cache and again.stats.discovery_renders == 0
    repo_index.forget_discoveries()
    third = _index(root)
    third.locate(WEB)
    assert third.stats.discovery_renders == 1

    values = root / "myapp" / "values.yaml"
    values.write_text(values.read_text() + "\nextra: 1\n")
    fourth = _index(root)
    assert fourth.locate(WEB) == web and fourth.stats.discovery_renders == 1


DAEMONSET = """apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: {{ .Release.Name }}-agent
spec:
  selector:
    matchLabels: {app: agent}
  template:
    metadata:
      labels: {app: agent}
    spec:
      containers:
        - name: agent
          image: agent:1
          resources:
            {{- toYaml .Values.agent.resources | nindent 12 }}
"""


def test_a_daemonset_is_probed(tmp_path: Path) -> None:
    repo_index.forget_discoveries()
    root = _copy(tmp_path)
    (root / "myapp" / "templates" / "agent.yaml").write_text(DAEMONSET)
    values = root / "myapp" / "values.yaml"
    values.write_text(values.read_text() + "\nagent:\n  resources: {}\n")
    target = ("default", "DaemonSet", "myapp-agent")
    lay = layout.parse_layout({"kind": "helm", "valuesFile": "myapp/values.yaml"})
    idx = repo_index.Index.build(root, lay, [target])
    assert idx.locate(target).values_containers == (("agent", "agent.resources"),)
    assert idx.stats.discovery_renders == 1


def test_values_paths_stay_the_override(tmp_path: Path) -> None:
    repo_index.forget_discoveries()
    idx = _index(CHART, valuesPaths={"myapp": ".", "myapp-cache": {
        "prefix": "cache", "container": "cache"}})
    assert idx.locate(CACHE).values_containers == (("cache", "cache.resources"),)
    assert idx.stats.discovery_renders == 0


def test_a_workload_no_probe_reaches(tmp_path: Path) -> None:
    idx = _index(CHART)
    with pytest.raises(errors.NotFoundError, match=r"chart myapp.*set valuesPaths"):
        idx.locate(("default", "Deployment", "nope"))
