"""The pods/eviction subresource of the test API server, via PolicyV1/CoreV1 clients.

Cases:
- evicting a missing pod -> 404 NotFound;
- deleteOptions.preconditions.uid that does not match -> 409 Conflict, pod kept;
- no PDB: 201 with a Success Status, pod deleted;
- a PDB whose budget is spent -> 429 TooManyRequests, the real message and the
  DisruptionBudget cause ("needs N healthy pods and has M currently"), no Retry-After;
- budgets by minAvailable / maxUnavailable, as integers and percentages (rounded up),
  healthy = Running + Ready, expected = the owning Deployment's replicas (evicted pods are
  not replaced, so the budget runs out); table of cases;
- successive evictions stop when the budget is exhausted;
- an unhealthy pod may be evicted when the budget is met (IfHealthyBudget) or always
  (AlwaysAllow);
- two PDBs selecting the pod -> 500 with the real message;
- a pod with finalizers is only marked for deletion; dryRun evicts nothing;
- PDB status is refreshed (currentHealthy, desiredHealthy, disruptionsAllowed, expectedPods);
- with a pod grace period, an evicted pod lingers with a deletionTimestamp (and no longer
  counts as healthy), then disappears; gracePeriodSeconds=0 deletes at once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest

from tests.fakes.kubeapi.handle import KubeApi, serve, status_body, typed_api

ApiException = kubernetes.client.exceptions.ApiException


@pytest.fixture
def kubeapi_grace() -> Iterator[KubeApi]:
    """Pods take a second to terminate, as with a kubelet."""
    with serve(pod_grace_seconds=1) as handle:
        yield handle


def _evict(k: KubeApi, name: str, uid: str | None = None, dry_run: bool = False) -> Any:
    core = typed_api(kubernetes.client.CoreV1Api, k.api_client())
    body: dict[str, Any] = {"apiVersion": "policy/v1", "kind": "Eviction",
                            "metadata": {"name": name, "namespace": "default"}}
    options: dict[str, Any] = {}
    if uid:
        options["preconditions"] = {"uid": uid}
    if dry_run:
        options["dryRun"] = ["All"]
    if options:
        body["deleteOptions"] = options
    return core.create_namespaced_pod_eviction(name, "default", body)


def _pods(k: KubeApi, n: int, ready: int | None = None) -> list[str]:
    """A Deployment `web` with n pods (owner references set); returns the pod names."""
    return [p["metadata"]["name"] for p in k.seed_workload("web", n, ready=ready)["pods"]]


def test_missing_pod_is_404(kubeapi: KubeApi) -> None:
    with pytest.raises(ApiException) as e:
        _evict(kubeapi, "ghost")
    assert e.value.status == 404
    assert status_body(e.value)["message"] == 'pods "ghost" not found'


def test_uid_precondition_mismatch_is_409(kubeapi: KubeApi) -> None:
    (pod,) = _pods(kubeapi, 1)
    with pytest.raises(ApiException) as e:
        _evict(kubeapi, pod, uid="00000000-0000-0000-0000-000000000000")
    assert e.value.status == 409 and status_body(e.value)["reason"] == "Conflict"
    assert "does not match the UID in record" in status_body(e.value)["message"]
    assert kubeapi.exists("v1", "Pod", pod)
    uid = kubeapi.get("v1", "Pod", pod)["metadata"]["uid"]
    _evict(kubeapi, pod, uid=uid)
    assert not kubeapi.exists("v1", "Pod", pod)


def test_no_pdb_evicts_with_201(kubeapi: KubeApi) -> None:
    (pod,) = _pods(kubeapi, 1)
    core = typed_api(kubernetes.client.CoreV1Api, kubeapi.api_client())
    _data, code, _headers = core.create_namespaced_pod_eviction_with_http_info(pod, "default", {
        "apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod}})
    assert code == 201
    assert not kubeapi.exists("v1", "Pod", pod)
    assert kubeapi.requests.count("create", "pods", "eviction") == 1


def test_exhausted_budget_is_429_with_real_body(kubeapi: KubeApi) -> None:
    pods = _pods(kubeapi, 3)
    kubeapi.seed(kubeapi.pdb("web-pdb", {"app": "web"}, min_available=3))
    with pytest.raises(ApiException) as e:
        _evict(kubeapi, pods[0])
    assert e.value.status == 429
    assert status_body(e.value) == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "Cannot evict pod as it would violate the pod's disruption budget.",
        "reason": "TooManyRequests",
        "details": {"causes": [{"reason": "DisruptionBudget", "message":
                                "The disruption budget web-pdb needs 3 healthy pods and has 3 "
                                "currently"}]},
        "code": 429}
    headers: Any = e.value.headers
    assert "Retry-After" not in headers
    assert kubeapi.exists("v1", "Pod", pods[0])
    pdb = kubeapi.get("policy/v1", "PodDisruptionBudget", "web-pdb")
    assert pdb["status"]["disruptionsAllowed"] == 0
    assert pdb["status"]["expectedPods"] == 3


@pytest.mark.parametrize(
    ("pods", "ready", "budget", "evictable"),
    [
        (3, 3, {"min_available": 2}, 1),
        (3, 3, {"max_unavailable": 1}, 1),
        (4, 4, {"min_available": "50%"}, 2),
        (3, 3, {"min_available": "50%"}, 1),     # ceil(1.5) = 2 must stay
        (4, 4, {"max_unavailable": "25%"}, 1),
        (3, 3, {"max_unavailable": "10%"}, 1),   # 10% of 3 rounds up to 1
        (3, 2, {"min_available": 2}, 0),          # one pod not Ready: no headroom
        (5, 5, {"max_unavailable": 0}, 0),
    ],
)
def test_budget_arithmetic(kubeapi: KubeApi, pods: int, ready: int, budget: dict[str, Any],
                           evictable: int) -> None:
    names = _pods(kubeapi, pods, ready=ready)
    kubeapi.seed(kubeapi.pdb("budget", {"app": "web"}, **budget))
    evicted = 0
    for name in names[:ready]:  # only Ready pods spend budget
        try:
            _evict(kubeapi, name)
            evicted += 1
        except ApiException as e:
            assert e.status == 429
    assert evicted == evictable


def test_unhealthy_pods_and_policy(kubeapi: KubeApi) -> None:
    names = _pods(kubeapi, 3, ready=2)  # the last one is not Ready
    kubeapi.seed(kubeapi.pdb("budget", {"app": "web"}, min_available=2))
    _evict(kubeapi, names[2])  # budget met (2 healthy >= 2): an unhealthy pod may go
    assert not kubeapi.exists("v1", "Pod", names[2])
    kubeapi.seed(kubeapi.pod("sick", labels={"app": "web"}, ready=False))
    kubeapi.seed(kubeapi.pdb("budget", {"app": "web"}, min_available=3))
    with pytest.raises(ApiException) as e:
        _evict(kubeapi, "sick")  # 2 healthy < 3 desired: IfHealthyBudget refuses
    assert e.value.status == 429
    pdb = kubeapi.pdb("budget", {"app": "web"}, min_available=3)
    pdb["spec"]["unhealthyPodEvictionPolicy"] = "AlwaysAllow"
    kubeapi.seed(pdb)
    _evict(kubeapi, "sick")
    assert not kubeapi.exists("v1", "Pod", "sick")


def test_two_pdbs_is_500(kubeapi: KubeApi) -> None:
    names = _pods(kubeapi, 2)
    kubeapi.seed(kubeapi.pdb("a", {"app": "web"}, max_unavailable=1),
                 kubeapi.pdb("b", {"app": "web"}, max_unavailable=1))
    with pytest.raises(ApiException) as e:
        _evict(kubeapi, names[0])
    assert e.value.status == 500
    assert status_body(e.value)["message"] == (
        "This pod has more than one PodDisruptionBudget, which the eviction subresource does "
        "not support.")
    assert kubeapi.exists("v1", "Pod", names[0])


def test_finalizers_and_dry_run(kubeapi: KubeApi) -> None:
    pod = kubeapi.pod("held", labels={"app": "web"})
    pod["metadata"]["finalizers"] = ["example.com/wait"]
    kubeapi.seed(pod, kubeapi.pod("other"))
    _evict(kubeapi, "other", dry_run=True)
    assert kubeapi.exists("v1", "Pod", "other")
    _evict(kubeapi, "held")
    held = kubeapi.get("v1", "Pod", "held")
    assert held["metadata"]["deletionTimestamp"]
    # A pod already being deleted is not counted again, and evicting it again succeeds.
    _evict(kubeapi, "held")


def test_graceful_termination(kubeapi_grace: KubeApi) -> None:
    k = kubeapi_grace
    names = _pods(k, 3)
    k.seed(k.pdb("budget", {"app": "web"}, max_unavailable=1))
    _evict(k, names[0])
    lingering = k.get("v1", "Pod", names[0])
    assert lingering["metadata"]["deletionTimestamp"]
    assert lingering["metadata"]["deletionGracePeriodSeconds"] == 1
    with pytest.raises(ApiException) as e:  # the terminating pod spent the budget
        _evict(k, names[1])
    assert e.value.status == 429
    core = typed_api(kubernetes.client.CoreV1Api, k.api_client())
    core.delete_namespaced_pod(names[2], "default", grace_period_seconds=0)
    assert not k.exists("v1", "Pod", names[2])
    deadline = time.monotonic() + 5
    while k.exists("v1", "Pod", names[0]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not k.exists("v1", "Pod", names[0])
