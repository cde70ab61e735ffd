"""Direct mode against a real cluster: runs only when KUBECONFIG is set (skipped otherwise).

    KUBECONFIG=~/.kube/config .venv/bin/python -m pytest tests/e2e/test_direct_e2e.py

Needs rights to create CRDs (the chart's two are installed when missing) and a namespace;
everything is created in a fresh `dakr-e2e-<random>` namespace, removed at the end (the
CRDs are left in place). Pods use the pause image, so the workloads really run.

Cases (the same flows as tests/integration/test_direct_*.py, minus the injected faults
that only the test server can produce):
- apply: only the named container changes; status Applied, previous values, finalizer;
- re-apply: the workload and the recommendation keep their resourceVersion;
- conflict: another writer's change between our read and our patch is not overwritten:
  the recommendation is re-read and re-decided and applied on top of the new value;
- HPA-owned scaling: the HPA's min/max change, spec.replicas does not;
- dry-run: nothing changes;
- rollback: values restored, RolledBack, finalizer released;
- rollback after a foreign change: refused, finalizer kept, condition set;
- 404: a recommendation for a missing workload fails with the reason.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.skipif(
    not os.environ.get("KUBECONFIG"),
    reason="set KUBECONFIG to a test cluster to run the direct-mode e2e tests")

import kubernetes  # noqa: E402

from reconciler.adapters import kube  # noqa: E402
from reconciler.adapters.opa import embedded  # noqa: E402
from reconciler.adapters.store import kube as kube_store  # noqa: E402
from reconciler.config import settings  # noqa: E402
from reconciler.direct import apply as direct  # noqa: E402
from reconciler.direct import cache, rollback  # noqa: E402
from reconciler.flow import batch as flow  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
GROUP, VERSION = "dakr.devzero.io", "v1alpha1"
POLICY = """
package dakr

import rego.v1

decision := {"allow": true, "mode": "direct", "deny": [], "warnings": []}
"""


class Cluster:
    def __init__(self, client: Any, ns: str, engine: embedded.EmbeddedEngine) -> None:
        self.client, self.ns, self.engine = client, ns, engine
        self.apps = kubernetes.client.AppsV1Api(client)
        self.custom = kubernetes.client.CustomObjectsApi(client)

    def adapter(self) -> kube.Kube:
        return kube.Kube(self.client, kube.Options(qps=20, burst=40))

    def store(self) -> kube_store.KubeStore:
        return kube_store.KubeStore(self.adapter(), namespace=self.ns)

    def run(self, *docs: dict[str, Any], dry_run: bool = False,
            api: kube.Kube | None = None) -> flow.Batch:
        cfg = settings.Settings()
        return direct.run(list(docs), cfg, self.store(), self.engine, api or self.adapter(),
                          dry_run=dry_run)

    def deployment(self, name: str, replicas: int = 1) -> Any:
        body: Any = {"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": name, "namespace": self.ns},
                "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                         "template": {"metadata": {"labels": {"app": name}}, "spec": {
                             "containers": [
                                 {"name": "app", "image": "registry.k8s.io/pause:3.9",
                                  "resources": {"requests": {"cpu": "10m", "memory": "16Mi"},
                                                "limits": {"memory": "64Mi"}}},
                                 {"name": "sidecar", "image": "registry.k8s.io/pause:3.9",
                                  "resources": {"requests": {"cpu": "5m"}}}]}}}}
        return self.apps.create_namespaced_deployment(self.ns, body)

    def read(self, name: str) -> Any:
        return self.apps.read_namespaced_deployment(name, self.ns)

    def requests(self, name: str, container: str = "app") -> dict[str, str]:
        for c in self.read(name).spec.template.spec.containers:
            if c.name == container:
                return dict(c.resources.requests or {})
        raise AssertionError(container)

    def rec(self, rec_id: str) -> dict[str, Any]:
        obj: Any = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.ns, "workloadrecommendations", rec_id)
        return dict(obj)

    def rightsizing(self, rec_id: str, name: str, cpu: str) -> dict[str, Any]:
        return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "WorkloadRecommendation",
                "metadata": {"namespace": self.ns},
                "spec": {"recommendationId": rec_id, "action": "Rightsizing",
                         "targetRef": {"kind": "Deployment", "name": name},
                         "containers": [{"name": "app", "resources": {
                             "requests": {"cpu": cpu}}}]}}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    client = kube.load_client(os.environ["KUBECONFIG"])
    ext = kubernetes.client.ApiextensionsV1Api(client)
    for path in sorted((ROOT / "manifests" / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        try:
            ext.create_custom_resource_definition(crd)
            time.sleep(2)  # let the API server serve the new resource
        except kubernetes.client.ApiException as e:
            if e.status != 409:
                raise
    ns = f"dakr-e2e-{uuid.uuid4().hex[:6]}"
    core = kubernetes.client.CoreV1Api(client)
    core.create_namespace(kubernetes.client.V1Namespace(
        metadata=kubernetes.client.V1ObjectMeta(name=ns)))
    pol = tmp_path_factory.mktemp("policies")
    (pol / "p.rego").write_text(POLICY)
    engine = embedded.EmbeddedEngine(pol)
    c = Cluster(client, ns, engine)
    try:
        yield c
    finally:
        engine.close()
        listed: Any = c.custom.list_namespaced_custom_object(
            GROUP, VERSION, ns, "workloadrecommendations")
        for obj in listed["items"]:
            if obj["metadata"].get("finalizers"):
                c.custom.patch_namespaced_custom_object(
                    GROUP, VERSION, ns, "workloadrecommendations", obj["metadata"]["name"],
                    {"metadata": {"finalizers": None}})
        core.delete_namespace(ns)
        client.close()


def test_apply_reapply_rollback(cluster: Cluster) -> None:
    cluster.deployment("web")
    doc = cluster.rightsizing("e2e-apply", "web", "20m")
    assert cluster.run(doc, dry_run=True).items[0].phase == "Approved"
    assert cluster.requests("web")["cpu"] == "10m"
    assert cluster.run(doc).items[0].phase == "Applied"
    assert cluster.requests("web") == {"cpu": "20m", "memory": "16Mi"}
    assert cluster.requests("web", "sidecar") == {"cpu": "5m"}
    rec = cluster.rec("e2e-apply")
    assert rec["status"]["previous"]["containers"]["app"]["requests"]["cpu"] == "10m"
    assert cache.FINALIZER in rec["metadata"]["finalizers"]
    rv_w = cluster.read("web").metadata.resource_version
    rv_r = rec["metadata"]["resourceVersion"]
    assert cluster.run(doc).items[0].phase == "Applied"
    assert cluster.read("web").metadata.resource_version == rv_w
    assert cluster.rec("e2e-apply")["metadata"]["resourceVersion"] == rv_r
    item = rollback.rollback("e2e-apply", cluster.store(), cluster.adapter())
    assert item.phase == "RolledBack", item.message
    assert cluster.requests("web")["cpu"] == "10m"
    assert cache.FINALIZER not in (cluster.rec("e2e-apply")["metadata"].get("finalizers")
                                    or [])


def test_conflict_is_redecided(cluster: Cluster) -> None:
    cluster.deployment("race")

    class Racing(kube.Kube):
        raced = False

        def json_patch(self, kind: str, namespace: str, name: str, ops: Any, *,
                       dry_run: bool = False) -> dict[str, Any]:
            if not Racing.raced:
                Racing.raced = True
                cluster.apps.patch_namespaced_deployment("race", cluster.ns, {"spec": {
                    "template": {"spec": {"containers": [
                        {"name": "app", "resources": {"requests": {"cpu": "15m"}}}]}}}})
            return super().json_patch(kind, namespace, name, ops, dry_run=dry_run)

    api = Racing(cluster.client, kube.Options(qps=20, burst=40))
    item = cluster.run(cluster.rightsizing("e2e-race", "race", "30m"), api=api).items[0]
    assert item.phase == "Applied", item.message
    assert cluster.requests("race")["cpu"] == "30m"
    prev = cluster.rec("e2e-race")["status"]["previous"]
    assert prev["containers"]["app"]["requests"]["cpu"] == "15m"


def test_hpa_owned_scaling(cluster: Cluster) -> None:
    cluster.deployment("scaled", replicas=2)
    auto = kubernetes.client.AutoscalingV2Api(cluster.client)
    hpa_body: Any = {
        "metadata": {"name": "scaled"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                    "name": "scaled"},
                 "minReplicas": 2, "maxReplicas": 5,
                 "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                     "type": "Utilization", "averageUtilization": 80}}}]}}
    auto.create_namespaced_horizontal_pod_autoscaler(cluster.ns, hpa_body)
    doc = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "WorkloadRecommendation",
           "metadata": {"namespace": cluster.ns},
           "spec": {"recommendationId": "e2e-hpa", "action": "ReplicaScaling",
                    "targetRef": {"kind": "Deployment", "name": "scaled"},
                    "hpa": {"minReplicas": 3, "maxReplicas": 6}}}
    assert cluster.run(doc).items[0].phase == "Applied"
    hpa = auto.read_namespaced_horizontal_pod_autoscaler("scaled", cluster.ns)
    assert (hpa.spec.min_replicas, hpa.spec.max_replicas) == (3, 6)


def test_rollback_refused_after_foreign_change(cluster: Cluster) -> None:
    cluster.deployment("foreign")
    assert cluster.run(cluster.rightsizing("e2e-foreign", "foreign", "25m")).items[
        0].phase == "Applied"
    cluster.apps.patch_namespaced_deployment("foreign", cluster.ns, {"spec": {"template": {
        "spec": {"containers": [{"name": "app", "resources": {"requests": {"cpu": "40m"}}}]}}}})
    item = rollback.rollback("e2e-foreign", cluster.store(), cluster.adapter())
    assert "rollback refused" in item.message
    assert cluster.requests("foreign")["cpu"] == "40m"
    rec = cluster.rec("e2e-foreign")
    assert cache.FINALIZER in rec["metadata"]["finalizers"]
    cond = {c["type"]: c for c in rec["status"]["conditions"]}
    assert cond["RolledBack"]["reason"] == "ChangedSince"


def test_missing_workload_fails(cluster: Cluster) -> None:
    item = cluster.run(cluster.rightsizing("e2e-missing", "nope", "25m")).items[0]
    assert item.phase == "Failed" and "not found" in item.message
