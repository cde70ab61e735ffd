"""Live migration end to end: the executor's own records drive the admission webhook.

A LiveMigration applied in direct mode (direct.run, the default policy library, the test
API server's simulated kubelet) next to `reconciler webhook` (runtime/webhook.py over real
TLS, its index fed by the custom resources through list and watch), registered in the test
API server as the chart registers it, so that the server calls it on pod creation.

Cases:
- after the in-place resize, a pod the ReplicaSet creates (a scale-up, a replaced pod) is
  stored with the recommended values although the pod template still holds the old ones;
- deleting the recommendation rolls back: the running pods are resized back in place, and
  a pod created afterwards keeps its template's values (the webhook stopped mutating);
- at no instant is the workload below its PodDisruptionBudget.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes
import trustme

from reconciler.adapters import kube
from reconciler.adapters.opa import embedded
from reconciler.adapters.store import kube as kube_store
from reconciler.config import settings
from reconciler.direct import apply as direct
from reconciler.direct import deletions
from reconciler.domain import model
from tests import crds, samples
from tests.fakes.kubeapi.admission import mutating_configuration, mutating_webhook
from tests.fakes.kubeapi.handle import KubeApi, typed_api
from tests.integration.runtime.operator_support import wait_for
from tests.integration.runtime.test_webhook import (  # noqa: F401
    Start,
    ca,
    start_webhook,
    url,
    volume,
)

NS = "shop"
HASH = "5d8f7c9b4"
FAST = kube.Options(qps=1000, burst=1000, retries=3, backoff=0.01, backoff_max=0.05,
                    timeout=5.0)


def live_rec() -> dict[str, Any]:
    return {"apiVersion": f"{model.GROUP}/{model.VERSION}", "kind": model.WORKLOAD,
            "metadata": {"namespace": NS},
            "spec": {"recommendationId": "lm-e2e", "action": "LiveMigration",
                     "targetRef": {"kind": "Deployment", "name": "web"},
                     "containers": [{"name": "app", "resources": {
                         "requests": {"cpu": "150m", "memory": "96Mi"}}}],
                     "confidence": 0.9}}


def new_pod(kubeapi: KubeApi, rs: dict[str, Any]) -> dict[str, Any]:
    """What the ReplicaSet controller would create from the (unchanged) template."""
    template = copy.deepcopy(rs["spec"]["template"])
    labels = {**template["metadata"]["labels"], "pod-template-hash": HASH}
    body = {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"generateName": f"web-{HASH}-", "labels": labels,
                         "ownerReferences": [{
                             "apiVersion": "apps/v1", "kind": "ReplicaSet",
                             "name": rs["metadata"]["name"], "uid": rs["metadata"]["uid"],
                             "controller": True, "blockOwnerDeletion": True}]},
            "spec": template["spec"]}
    core = typed_api(kubernetes.client.CoreV1Api, kubeapi.api_client())
    created = core.create_namespaced_pod(NS, body)
    return kubeapi.get("v1", "Pod", created.metadata.name, NS)


def requests_of(pod: dict[str, Any]) -> dict[str, Any]:
    return dict(pod["spec"]["containers"][0]["resources"]["requests"])


def test_new_pods_keep_the_values_until_rollback(start_webhook: Start,  # noqa: F811
                                                 kubeapi: KubeApi, ca: trustme.CA,  # noqa: F811
                                                 tmp_path: Path) -> None:
    crds.install_crds(kubeapi)
    kubeapi.ensure_namespace(NS)
    seeded = kubeapi.seed_workload("web", 3, namespace=NS, containers=[kubeapi.container(
        "app", cpu="100m", memory="128Mi", cpu_limit="1", memory_limit="512Mi")])
    kubeapi.seed(kubeapi.pdb("web", {"app": "web"}, namespace=NS, min_available=2))
    hook = start_webhook("kube", kube=settings.KubeSettings(
        kubeconfig=kubeapi.kubeconfig_path))
    typed_api(kubernetes.client.AdmissionregistrationV1Api,
              kubeapi.api_client()).create_mutating_webhook_configuration(
        mutating_configuration("dakr-live-migration", mutating_webhook(
            "live-migration.dakr.devzero.io", url(hook), ca.cert_pem.bytes(),
            failure_policy="Ignore", timeout_seconds=2, reinvocation_policy="Never")))

    client = kubeapi.api_client()

    def adapter() -> kube.Kube:
        return kube.Kube(client, FAST, limiter=kube.RateLimiter(1000, 1000))

    cfg = settings.Settings(now="2026-03-01T10:00:00Z", mode="direct",
                            live=settings.LiveSettings(webhook=True))
    engine = embedded.EmbeddedEngine(samples.POLICIES, samples.DATA_FILES)
    try:
        (item,) = direct.run([live_rec()], cfg, kube_store.KubeStore(adapter()), engine,
                             adapter()).items
    finally:
        engine.close()
    assert item.phase == "Applied", item.message
    template = kubeapi.get("apps/v1", "Deployment", "web", NS)["spec"]["template"]
    assert requests_of(template) == {"cpu": "100m", "memory": "128Mi"}  # no rollout

    rs = seeded["replicaset"]
    wait_for(lambda: (NS, "Deployment", "web") in hook.index.entries, timeout=20)
    fresh = new_pod(kubeapi, rs)
    assert requests_of(fresh) == {"cpu": "150m", "memory": "96Mi"}
    assert fresh["spec"]["containers"][0]["resources"]["limits"] == {
        "cpu": "1", "memory": "512Mi"}

    custom = typed_api(kubernetes.client.CustomObjectsApi, client)
    custom.delete_namespaced_custom_object(model.GROUP, model.VERSION, NS,
                                           "workloadrecommendations", "lm-e2e")
    (back,) = deletions.reconcile(kube_store.KubeStore(adapter()), adapter())
    assert back.phase == "RolledBack", back.message
    for p in seeded["pods"]:
        assert requests_of(kubeapi.get("v1", "Pod", p["metadata"]["name"], NS)) == {
            "cpu": "100m", "memory": "128Mi"}
    wait_for(lambda: (NS, "Deployment", "web") not in hook.index.entries, timeout=20)
    assert requests_of(new_pod(kubeapi, rs)) == {"cpu": "100m", "memory": "128Mi"}
    assert kubeapi.disruptions.breaches == []
    assert all(c.error is None for c in kubeapi.admission.calls)
