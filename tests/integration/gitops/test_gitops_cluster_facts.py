"""GitOps mode with live cluster facts (`reconciler apply --cluster-facts`), end to end.

The real CLI, the demo repository (Online Boutique) behind a bare origin, the embedded OPA
engine with the default policy library, and the test Kubernetes API server reached through
its kubeconfig.

Cases:
- an HPA in the cluster owns `frontend`: a ReplicaScaling recommendation setting
  `replicas` is refused (HPAOwnsReplicas) with --cluster-facts, and nothing is committed;
  without the flag the policy cannot see the HPA and the change is proposed (the gap the
  facts close);
- a PodDisruptionBudget at zero covering `cartservice`'s pods (selected through the pod
  template labels of the manifest in the repository) shows up as a decision warning;
- fail closed: the HPA LIST failing with 500s leaves the recommendation Pending, not
  decided, with no status written and no commit; the next run, with the API back, decides
  it; a forbidden LIST (RBAC) fails it with the reason (ClusterFactsUnreadable);
- the chart's DAKR_CLUSTER_FACTS / DAKR_CLUSTER_FACTS_NODES turn the flags on for `run`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from reconciler.adapters.store import sqlite as sqlite_store
from reconciler.cli import main as cli
from reconciler.config import env as config_env
from reconciler.domain import model
from tests.fakes.kubeapi.handle import KubeApi

NOW = "2026-11-24T10:00:00Z"

SCALE_FRONTEND = """
apiVersion: dakr.devzero.io/v1alpha1
kind: WorkloadRecommendation
metadata: {namespace: default}
spec:
  recommendationId: rec-scale
  action: ReplicaScaling
  targetRef: {kind: Deployment, name: frontend}
  replicas: 2
  confidence: 0.9
"""

RIGHTSIZE_CART = """
apiVersion: dakr.devzero.io/v1alpha1
kind: WorkloadRecommendation
metadata: {namespace: default}
spec:
  recommendationId: rec-cart
  action: Rightsizing
  targetRef: {kind: Deployment, name: cartservice}
  containers:
  - name: server
    resources:
      requests: {cpu: 150m}
  confidence: 0.9
"""


def hpa(name: str, target: str) -> dict[str, Any]:
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                        "name": target},
                     "minReplicas": 1, "maxReplicas": 5}}


def apply(tmp: Path, origin: Path, api: KubeApi, doc: str, capsys: pytest.CaptureFixture[str],
          *extra: str) -> dict[str, Any]:
    tmp.mkdir(parents=True, exist_ok=True)
    f = tmp / "recs.yaml"
    f.write_text(doc)
    rc = cli.main(["apply", "-f", str(f), "--repo", str(origin), "--state-dir",
                   str(tmp / "state"), "--now", NOW, "--output", "json",
                   "--kubeconfig", api.kubeconfig_path, *extra])
    out = capsys.readouterr()
    assert rc == 0, out.err
    result: dict[str, Any] = json.loads(out.out)
    return result


def only(doc: dict[str, Any]) -> dict[str, Any]:
    (item,) = doc["results"]
    return dict(item)


def test_hpa_in_the_cluster_refuses_replicas(kubeapi: KubeApi, origin: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    kubeapi.seed(hpa("frontend", "frontend"), hpa("other", "cartservice"))
    with_facts = only(apply(tmp_path / "a", origin, kubeapi, SCALE_FRONTEND, capsys,
                            "--cluster-facts"))
    assert with_facts["phase"] == model.REJECTED
    assert any(r.startswith("HPAOwnsReplicas") for r in with_facts["decision"]["reasons"])
    without = only(apply(tmp_path / "b", origin, kubeapi, SCALE_FRONTEND, capsys))
    assert without["phase"] == model.APPLYING  # proposed: the policy could not know


def test_pdb_at_zero_is_a_warning(kubeapi: KubeApi, origin: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    kubeapi.seed({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                  "metadata": {"name": "cart-pdb", "namespace": "default"},
                  "spec": {"maxUnavailable": 0,
                           "selector": {"matchLabels": {"app": "cartservice"}}},
                  "status": {"disruptionsAllowed": 0, "currentHealthy": 1, "desiredHealthy": 1,
                             "expectedPods": 1, "observedGeneration": 1}})
    item = only(apply(tmp_path, origin, kubeapi, RIGHTSIZE_CART, capsys, "--cluster-facts"))
    assert item["phase"] == model.APPLYING
    assert any("cart-pdb" in w for w in item["decision"]["warnings"]), item


def test_unreadable_facts_fail_closed(kubeapi: KubeApi, origin: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    kubeapi.seed(hpa("frontend", "frontend"))
    rule = kubeapi.faults.fail_next(100, 500, verb="list", resource="horizontalpodautoscalers")
    item = only(apply(tmp_path, origin, kubeapi, SCALE_FRONTEND, capsys, "--cluster-facts"))
    assert item["phase"] == model.PENDING and item["decision"] is None
    assert "tried again" in item["message"] and item["retry"] == "ClusterFactsUnavailable"
    st = sqlite_store.SqliteStore(tmp_path / "state" / "reconciler.db")
    try:
        (rec,) = st.list()
        assert rec.phase == model.PENDING and not rec.status.get("decision")
    finally:
        st.close()
    assert not list((tmp_path / "state").glob("**/pull-request*.md"))
    kubeapi.faults.clear()
    del rule
    again = only(apply(tmp_path, origin, kubeapi, SCALE_FRONTEND, capsys, "--cluster-facts"))
    assert again["phase"] == model.REJECTED  # decided now, with the HPA seen


def test_forbidden_facts_fail_with_the_reason(kubeapi: KubeApi, origin: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    kubeapi.faults.fail_next(100, 403, verb="list", resource="poddisruptionbudgets")
    item = only(apply(tmp_path, origin, kubeapi, RIGHTSIZE_CART, capsys, "--cluster-facts"))
    assert item["phase"] == model.FAILED
    assert "PodDisruptionBudget" in item["message"] and "not decided" in item["message"]


@pytest.mark.parametrize(("env", "expected"), [
    ({"DAKR_CLUSTER_FACTS": "true"}, {"cluster_facts": True}),
    ({"DAKR_CLUSTER_FACTS": "true", "DAKR_CLUSTER_FACTS_NODES": "true"},
     {"cluster_facts": True, "node_facts": True}),
    ({"DAKR_CLUSTER_FACTS": "false", "DAKR_CLUSTER_FACTS_NODES": "false"}, {}),
])
def test_chart_environment_turns_facts_on(env: dict[str, str],
                                          expected: dict[str, object]) -> None:
    assert config_env.run_defaults(env) == expected
