"""Live migration against a real cluster (Kubernetes 1.33+): runs only when KUBECONFIG is
set (skipped otherwise), and skips itself on a cluster older than 1.33.

    KUBECONFIG=~/.kube/config .venv/bin/python -m pytest tests/e2e/test_live_e2e.py

Everything is created in a fresh `dakr-live-<random>` namespace, removed at the end (the
chart's CRDs are installed when missing and left in place). Pods use the pause image.

Cases:
- a Deployment's running pods are resized in place by a LiveMigration (the kubelet reports
  the new values in status.containerStatuses[].resources), their restartCount unchanged,
  the pod template unchanged; rolled back, they are resized back in place.
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
    reason="set KUBECONFIG to a test cluster (1.33+) to run the live-migration e2e tests")

import kubernetes  # noqa: E402

from reconciler.adapters import kube  # noqa: E402
from reconciler.adapters.opa import embedded  # noqa: E402
from reconciler.adapters.store import kube as kube_store  # noqa: E402
from reconciler.config import settings  # noqa: E402
from reconciler.direct import apply as direct  # noqa: E402
from reconciler.direct import rollback  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
GROUP, VERSION = "dakr.devzero.io", "v1alpha1"
POLICY = """
package dakr

import rego.v1

decision := {"allow": true, "mode": "direct", "deny": [], "warnings": []}
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str, Any]]:
    client = kube.load_client(os.environ["KUBECONFIG"])
    info = kubernetes.client.VersionApi(client).get_code()
    if (int(info.major), int(str(info.minor).rstrip("+"))) < (1, 33):
        pytest.skip(f"in-place resize needs Kubernetes 1.33+, the cluster is {info.git_version}")
    ext = kubernetes.client.ApiextensionsV1Api(client)
    for path in sorted((ROOT / "manifests" / "crds").glob("*.yaml")):
        try:
            ext.create_custom_resource_definition(yaml.safe_load(path.read_text()))
            time.sleep(2)
        except kubernetes.client.ApiException as e:
            if e.status != 409:
                raise
    ns = f"dakr-live-{uuid.uuid4().hex[:6]}"
    core = kubernetes.client.CoreV1Api(client)
    core.create_namespace(kubernetes.client.V1Namespace(
        metadata=kubernetes.client.V1ObjectMeta(name=ns)))
    pol = tmp_path_factory.mktemp("policies")
    (pol / "p.rego").write_text(POLICY)
    engine = embedded.EmbeddedEngine(pol)
    try:
        yield client, ns, engine
    finally:
        engine.close()
        custom = kubernetes.client.CustomObjectsApi(client)
        for obj in custom.list_namespaced_custom_object(
                GROUP, VERSION, ns, "workloadrecommendations")["items"]:
            custom.patch_namespaced_custom_object(
                GROUP, VERSION, ns, "workloadrecommendations", obj["metadata"]["name"],
                {"metadata": {"finalizers": None}})
        core.delete_namespace(ns)
        client.close()


def pods_cpu(core: Any, ns: str) -> list[tuple[str, str, int]]:
    out = []
    for p in core.list_namespaced_pod(ns, label_selector="app=live").items:
        st = p.status.container_statuses[0]
        out.append((p.spec.containers[0].resources.requests["cpu"],
                    (st.resources.requests or {}).get("cpu") if st.resources else None,
                    st.restart_count))
    return out


def wait(check: Any, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < end, "timed out"
        time.sleep(1)


def test_resize_in_place_and_back(env: tuple[Any, str, Any]) -> None:
    client, ns, engine = env
    apps, core = kubernetes.client.AppsV1Api(client), kubernetes.client.CoreV1Api(client)
    apps.create_namespaced_deployment(ns, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "live"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "live"}},
                 "template": {"metadata": {"labels": {"app": "live"}}, "spec": {"containers": [
                     {"name": "app", "image": "registry.k8s.io/pause:3.9",
                      "resources": {"requests": {"cpu": "10m", "memory": "16Mi"},
                                    "limits": {"memory": "64Mi"}}}]}}}})
    wait(lambda: (apps.read_namespaced_deployment("live", ns).status.ready_replicas or 0) == 2)
    wait(lambda: all(c[1] == "10m" for c in pods_cpu(core, ns)))
    doc = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "WorkloadRecommendation",
           "metadata": {"namespace": ns},
           "spec": {"recommendationId": "live-e2e", "action": "LiveMigration",
                    "targetRef": {"kind": "Deployment", "name": "live"},
                    "containers": [{"name": "app", "resources": {"requests": {"cpu": "20m"}}}]}}
    adapter = kube.Kube(client, kube.Options(qps=20, burst=40))
    cfg = settings.Settings(mode="direct", live=settings.LiveSettings(webhook=False))
    (item,) = direct.run([doc], cfg, kube_store.KubeStore(adapter, namespace=ns), engine,
                         adapter).items
    assert item.phase == "Applied", item.message
    assert pods_cpu(core, ns) and all(c == ("20m", "20m", 0) for c in pods_cpu(core, ns))
    template = apps.read_namespaced_deployment("live", ns).spec.template.spec.containers[0]
    assert template.resources.requests["cpu"] == "10m"
    back = rollback.rollback("live-e2e", kube_store.KubeStore(adapter, namespace=ns), adapter)
    assert back.phase == "RolledBack", back.message
    wait(lambda: all(c == ("10m", "10m", 0) for c in pods_cpu(core, ns)))
