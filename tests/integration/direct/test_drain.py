"""reconciler.drain against the test Kubernetes API server (cordon, Eviction API, PDBs, RBAC).

Cases:
- a node with two ReplicaSet pods and no PDB drains completely: cordoned by us and left
  cordoned, both pods evicted and gone, one eviction request per pod, one node patch;
- a PDB allowing 1 of 2: the first eviction succeeds, the second gets 429 and is retried
  until the budget frees (a Ready replacement appears on another node), one eviction per
  pod plus one per 429;
- a PDB that never frees: the drain times out, incomplete, the pod remaining with the
  budget's message, the node still cordoned (one pod was evicted);
- a Retry-After on a 429 is honoured (fake clock: the next attempt waits that long);
- DaemonSet and mirror pods are skipped and never get an eviction request;
- a bare pod blocks the drain up front: nothing evicted, nothing written to the node; when
  it appears only after the cordon, the node is uncordoned again;
- emptyDir blocks unless delete_emptydir_data (table);
- cordon on an already-cordoned node writes nothing; uncordon is idempotent; a 409 on the
  node patch is re-read and retried;
- a pod replaced under the same name is not evicted (uid precondition, 409), both through
  Kube.evict and inside a drain;
- evicted pods that linger while terminating are waited for, and a pod already terminating
  is waited for without a second eviction;
- drain_nodes stops at the first incomplete node (the next one is not cordoned) and says so;
- RBAC: with the rules we document the drain works as a service account; without
  pods/eviction it ends with a message naming pods/eviction, and the node is uncordoned;
- a stop event ends the drain early as incomplete; a missing node is reported;
- a LIST failing (503) while pods terminate is tolerated and polled again;
- two PDBs selecting a pod (500) end the drain, nothing evicted, node uncordoned;
- a pod annotated dakr.devzero.io/move: checkpoint is moved with its state (checkpointed,
  restored on the other node, then evicted) and the others evicted; where the cluster does
  not declare checkpoint/restore it is evicted like the rest.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import kubernetes
import pytest

from reconciler.adapters import kube
from reconciler.direct import drain, move
from tests.fakes.kubeapi.handle import KubeApi, typed_api

FAST = kube.Options(qps=1000, burst=1000, retries=2, backoff=0.01, backoff_max=0.02,
                    timeout=5.0)
OPTS = drain.DrainOptions(timeout=2.0, retry_interval=0.05, poll_interval=0.05)
JSON = dict[str, Any]


def make_kube(api: KubeApi, client: Any = None) -> kube.Kube:
    return kube.Kube(client or api.api_client(), FAST, limiter=kube.RateLimiter(1000, 1000))


def owner_ref(obj: JSON) -> JSON:
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"],
            "name": obj["metadata"]["name"], "uid": obj["metadata"]["uid"],
            "controller": True, "blockOwnerDeletion": True}


def setup(k: KubeApi, replicas: int = 2, node: str = "node-a") -> dict[str, Any]:
    k.seed(k.node("node-a"), k.node("node-b"))
    return k.seed_workload("web", replicas, node=node)


def names(pods: list[JSON]) -> list[str]:
    return [p["metadata"]["name"] for p in pods]


def unschedulable(k: KubeApi, node: str) -> bool:
    return bool(k.get("v1", "Node", node)["spec"].get("unschedulable"))


def evictions(k: KubeApi) -> int:
    return k.requests.count("create", "pods", "eviction")


def evicted_names(k: KubeApi) -> list[str]:
    return [i.name for i in k.requests.log if i.subresource == "eviction"]


def test_two_pods_no_pdb_drain_completely(kubeapi: KubeApi) -> None:
    pods = names(setup(kubeapi)["pods"])
    kubeapi.seed(kubeapi.pod("elsewhere", node="node-b", labels={"app": "web"}))
    got = drain.drain(make_kube(kubeapi), "node-a", OPTS)
    assert got.complete, got.message
    assert got.cordoned_by_us and unschedulable(kubeapi, "node-a")
    assert sorted(got.evicted) == sorted(("default", p) for p in pods)
    assert got.remaining == () and got.skipped == ()
    assert not any(kubeapi.exists("v1", "Pod", p) for p in pods)
    assert kubeapi.exists("v1", "Pod", "elsewhere")
    assert evictions(kubeapi) == 2 == got.eviction_requests
    assert sorted(evicted_names(kubeapi)) == sorted(pods)
    assert kubeapi.requests.count("patch", "nodes") == 1
    assert not unschedulable(kubeapi, "node-b")


def test_pdb_429_is_retried_until_the_budget_frees(kubeapi: KubeApi) -> None:
    work = setup(kubeapi)
    pods = names(work["pods"])
    kubeapi.seed(kubeapi.pdb("web-pdb", {"app": "web"}, min_available=1))
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        if not slept:  # the second eviction was refused: a replacement becomes Ready
            kubeapi.seed(kubeapi.pod("web-5d8f7c9b4-new", labels={"app": "web"},
                                     node="node-b", owner=owner_ref(work["replicaset"])))
        slept.append(seconds)
        threading.Event().wait(seconds)

    got = drain.drain(make_kube(kubeapi), "node-a", OPTS, sleep=sleep)
    assert got.complete, got.message
    assert sorted(got.evicted) == sorted(("default", p) for p in pods)
    # one eviction per pod, plus the retries after 429 (at least one: we slept for it)
    assert evictions(kubeapi) == got.eviction_requests >= 3
    assert slept and slept[0] <= OPTS.retry_interval + 0.01
    assert kubeapi.get("policy/v1", "PodDisruptionBudget", "web-pdb")["status"][
        "currentHealthy"] == 2  # at the last eviction: that pod and the replacement
    assert kubeapi.exists("v1", "Pod", "web-5d8f7c9b4-new")


def test_pdb_never_frees_times_out(kubeapi: KubeApi) -> None:
    pods = names(setup(kubeapi)["pods"])
    kubeapi.seed(kubeapi.pdb("web-pdb", {"app": "web"}, min_available=1))
    opts = drain.DrainOptions(timeout=0.5, retry_interval=0.05, poll_interval=0.05)
    got = drain.drain(make_kube(kubeapi), "node-a", opts)
    assert not got.complete
    assert got.evicted == (("default", pods[0]),)
    budget = "The disruption budget web-pdb needs 1 healthy pods and has 1 currently"
    assert got.remaining == (("default", pods[1], budget),)
    assert "timed out after 0.5s" in got.message and budget in got.message
    assert got.cordoned_by_us and unschedulable(kubeapi, "node-a")  # one pod was evicted
    assert kubeapi.exists("v1", "Pod", pods[1])
    assert evictions(kubeapi) == got.eviction_requests >= 3


def test_retry_after_is_honoured(kubeapi: KubeApi) -> None:
    setup(kubeapi, replicas=1)
    kubeapi.faults.fail_next(1, 429, verb="create", resource="pods", subresource="eviction",
                             retry_after=7)
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    opts = drain.DrainOptions(timeout=60, retry_interval=0.05, poll_interval=0.05)
    got = drain.drain(make_kube(kubeapi), "node-a", opts, clock=lambda: now[0], sleep=sleep)
    assert got.complete, got.message
    assert slept[0] == pytest.approx(7.0)
    assert evictions(kubeapi) == 2 == got.eviction_requests


def test_daemonset_and_mirror_pods_are_skipped(kubeapi: KubeApi) -> None:
    pods = names(setup(kubeapi, replicas=1)["pods"])
    ds = kubeapi.seed(kubeapi.deployment("agent", kind="DaemonSet"))[0]
    node = kubeapi.get("v1", "Node", "node-a")
    mirror = kubeapi.pod("kube-proxy-node-a", namespace="kube-system", node="node-a",
                         owner={**owner_ref(node), "controller": True})
    mirror["metadata"]["annotations"] = {drain.MIRROR_ANNOTATION: "0f1e2d"}
    kubeapi.seed(kubeapi.pod("agent-x7k2p", node="node-a", owner=owner_ref(ds)), mirror)
    got = drain.drain(make_kube(kubeapi), "node-a", OPTS)
    assert got.complete, got.message
    assert got.evicted == (("default", pods[0]),)
    assert {(ns, name) for ns, name, _ in got.skipped} == {
        ("default", "agent-x7k2p"), ("kube-system", "kube-proxy-node-a")}
    assert kubeapi.exists("v1", "Pod", "agent-x7k2p")
    assert kubeapi.exists("v1", "Pod", "kube-proxy-node-a", "kube-system")
    assert evicted_names(kubeapi) == pods


def test_bare_pod_blocks_up_front(kubeapi: KubeApi) -> None:
    pods = names(setup(kubeapi)["pods"])
    kubeapi.seed(kubeapi.pod("debug", node="node-a"))
    got = drain.drain(make_kube(kubeapi), "node-a", OPTS)
    assert not got.complete
    assert [(ns, name) for ns, name, _ in got.remaining] == [("default", "debug")]
    assert "no controller" in got.remaining[0][2] and "default/debug" in got.message
    assert got.evicted == () and not got.cordoned_by_us
    assert not unschedulable(kubeapi, "node-a")
    assert kubeapi.requests.count("patch", "nodes") == 0 and evictions(kubeapi) == 0
    assert all(kubeapi.exists("v1", "Pod", p) for p in pods)


def test_blocking_pod_after_cordon_uncordons(kubeapi: KubeApi) -> None:
    setup(kubeapi)

    class Racy(kube.Kube):
        """A bare pod is bound to the node just as it is cordoned."""

        def patch_node(self, name: str, ops: Any) -> JSON:
            out = super().patch_node(name, ops)
            if not kubeapi.exists("v1", "Pod", "late"):
                kubeapi.seed(kubeapi.pod("late", node="node-a"))
            return out

    api = Racy(kubeapi.api_client(), FAST, limiter=kube.RateLimiter(1000, 1000))
    got = drain.drain(api, "node-a", OPTS)
    assert not got.complete and "default/late" in got.message
    assert "uncordoned it again" in got.message
    assert not got.cordoned_by_us and not unschedulable(kubeapi, "node-a")
    assert kubeapi.requests.count("patch", "nodes") == 2 and evictions(kubeapi) == 0


@pytest.mark.parametrize("allow", [False, True])
def test_emptydir(kubeapi: KubeApi, allow: bool) -> None:
    work = setup(kubeapi, replicas=1)
    pod = kubeapi.pod("cache-0", node="node-a", owner=owner_ref(work["replicaset"]))
    pod["spec"]["volumes"] = [{"name": "scratch", "emptyDir": {}}]
    kubeapi.seed(pod)
    opts = drain.DrainOptions(timeout=2.0, retry_interval=0.05, poll_interval=0.05,
                              delete_emptydir_data=allow)
    got = drain.drain(make_kube(kubeapi), "node-a", opts)
    assert got.complete == allow, got.message
    assert kubeapi.exists("v1", "Pod", "cache-0") == (not allow)
    if not allow:
        assert got.remaining == (("default", "cache-0", got.remaining[0][2]),)
        assert "emptyDir volume(s) scratch" in got.remaining[0][2]
        assert evictions(kubeapi) == 0 and not unschedulable(kubeapi, "node-a")
    else:
        assert ("default", "cache-0") in got.evicted and evictions(kubeapi) == 2


def test_cordon_and_uncordon_are_idempotent(kubeapi: KubeApi) -> None:
    kubeapi.seed(kubeapi.node("node-a", unschedulable=True), kubeapi.node("node-b"))
    api = make_kube(kubeapi)
    assert drain.cordon(api, "node-a") is False
    assert kubeapi.requests.count("patch", "nodes") == 0
    assert drain.uncordon(api, "node-a") is True
    assert "unschedulable" not in kubeapi.get("v1", "Node", "node-a")["spec"]
    assert drain.uncordon(api, "node-a") is False
    assert kubeapi.requests.count("patch", "nodes") == 1
    kubeapi.faults.fail_next(1, 409, verb="patch", resource="nodes")  # someone wrote first
    assert drain.cordon(api, "node-b") is True and unschedulable(kubeapi, "node-b")
    assert drain.cordon(api, "node-b") is False
    assert kubeapi.requests.count("patch", "nodes") == 3  # 1 + the 409 + its retry


def test_drain_of_a_cordoned_node_is_not_cordoned_by_us(kubeapi: KubeApi) -> None:
    kubeapi.seed(kubeapi.node("node-a", unschedulable=True))
    kubeapi.seed_workload("web", 1, node="node-a")
    got = drain.drain(make_kube(kubeapi), "node-a", OPTS)
    assert got.complete and not got.cordoned_by_us
    assert kubeapi.requests.count("patch", "nodes") == 0


def recreate(k: KubeApi, name: str, node: str) -> JSON:
    """Delete a pod and create another under the same name (a new uid), as a StatefulSet
    controller would."""
    old = k.get("v1", "Pod", name)
    core = typed_api(kubernetes.client.CoreV1Api, k.api_client())
    core.delete_namespaced_pod(name, "default", grace_period_seconds=0)
    new = k.pod(name, labels={"app": "web"}, node=node,
                owner=old["metadata"]["ownerReferences"][0])
    return k.seed(new)[0]


def test_evict_with_a_stale_uid_leaves_the_new_pod(kubeapi: KubeApi) -> None:
    (pod,) = names(setup(kubeapi, replicas=1)["pods"])
    old_uid = kubeapi.get("v1", "Pod", pod)["metadata"]["uid"]
    new_uid = recreate(kubeapi, pod, "node-a")["metadata"]["uid"]
    assert new_uid != old_uid
    got = make_kube(kubeapi).evict("default", pod, old_uid)
    assert got.outcome == kube.EVICTION_REPLACED
    assert kubeapi.get("v1", "Pod", pod)["metadata"]["uid"] == new_uid
    assert make_kube(kubeapi).evict("default", "ghost", "x").outcome == kube.EVICTION_GONE


def test_drain_does_not_evict_a_replaced_pod(kubeapi: KubeApi) -> None:
    pods = names(setup(kubeapi)["pods"])

    class Replacing(kube.Kube):
        """The first pod is recreated (on node-b) just before its eviction is sent."""

        def evict(self, namespace: str, name: str, uid: str | None, **kw: Any) -> kube.Eviction:
            if name == pods[0] and kubeapi.get("v1", "Pod", name)["metadata"]["uid"] == uid:
                recreate(kubeapi, name, "node-b")
            return super().evict(namespace, name, uid, **kw)

    api = Replacing(kubeapi.api_client(), FAST, limiter=kube.RateLimiter(1000, 1000))
    got = drain.drain(api, "node-a", OPTS)
    assert got.complete, got.message
    assert got.evicted == (("default", pods[1]),)
    assert kubeapi.get("v1", "Pod", pods[0])["spec"]["nodeName"] == "node-b"
    # the eviction of the old uid was sent and refused (409): the new pod is still there
    assert evictions(kubeapi) == 2 and sorted(evicted_names(kubeapi)) == sorted(pods)


def test_terminating_pods_are_waited_for(kubeapi_factory: Callable[..., KubeApi]) -> None:
    k = kubeapi_factory(pod_grace_seconds=0.3)
    pods = names(setup(k, replicas=3)["pods"])
    core = typed_api(kubernetes.client.CoreV1Api, k.api_client())
    core.delete_namespaced_pod(pods[2], "default")  # already terminating before the drain
    assert k.get("v1", "Pod", pods[2])["metadata"]["deletionTimestamp"]
    got = drain.drain(make_kube(k), "node-a", OPTS)
    assert got.complete, got.message
    assert sorted(got.evicted) == sorted(("default", p) for p in pods[:2])
    assert not any(k.exists("v1", "Pod", p) for p in pods)
    assert sorted(evicted_names(k)) == sorted(pods[:2])
    assert k.requests.count("list", "pods") >= 3  # polled until the pods were gone


def test_drain_nodes_stops_at_the_first_incomplete_node(kubeapi: KubeApi) -> None:
    setup(kubeapi, replicas=1, node="node-b")
    kubeapi.seed(kubeapi.pod("debug", node="node-a"))
    results = drain.drain_nodes(make_kube(kubeapi), ["node-a", "node-b"], OPTS)
    assert [r.node for r in results] == ["node-a"]
    assert not results[0].complete
    assert "not draining the remaining node(s): node-b" in results[0].message
    assert not unschedulable(kubeapi, "node-b") and evictions(kubeapi) == 0
    results = drain.drain_nodes(make_kube(kubeapi), ["node-b", "node-a"], OPTS)
    assert [(r.node, r.complete) for r in results] == [("node-b", True), ("node-a", False)]
    assert unschedulable(kubeapi, "node-b") and not unschedulable(kubeapi, "node-a")


ROLE = """
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: dakr-drain}
rules:
- apiGroups: [""]
  resources: [nodes]
  verbs: [get, patch]
- apiGroups: [""]
  resources: [pods]
  verbs: [list]
- apiGroups: [""]
  resources: [pods/eviction]
  verbs: [create]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: dakr-drain}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: dakr-drain}
subjects: [{kind: ServiceAccount, name: dakr-reconciler, namespace: dakr-operator}]
"""


@pytest.mark.parametrize("can_evict", [True, False])
def test_rbac(kubeapi: KubeApi, can_evict: bool) -> None:
    pods = names(setup(kubeapi)["pods"])
    role = ROLE if can_evict else ROLE.replace("[pods/eviction]", "[pods/log]")
    kubeapi.enable_rbac(role)
    sa = kubeapi.service_account_client("dakr-operator", "dakr-reconciler")
    got = drain.drain(make_kube(kubeapi, sa), "node-a", OPTS)
    if can_evict:
        assert got.complete, got.message
        assert not any(kubeapi.exists("v1", "Pod", p) for p in pods)
        return
    assert not got.complete
    assert "'create' on 'pods/eviction'" in got.message
    assert 'cannot create resource "pods/eviction"' in got.message
    assert got.evicted == () and not got.cordoned_by_us
    assert not unschedulable(kubeapi, "node-a") and "uncordoned it again" in got.message
    assert evictions(kubeapi) == 1  # not retried
    assert all(kubeapi.exists("v1", "Pod", p) for p in pods)


def test_rbac_without_node_patch(kubeapi: KubeApi) -> None:
    setup(kubeapi)
    kubeapi.enable_rbac(ROLE.replace("[get, patch]", "[get]"))
    sa = kubeapi.service_account_client("dakr-operator", "dakr-reconciler")
    got = drain.drain(make_kube(kubeapi, sa), "node-a", OPTS)
    assert not got.complete and "'patch' on 'nodes'" in got.message
    assert evictions(kubeapi) == 0


def test_stop_event_ends_the_drain(kubeapi: KubeApi) -> None:
    setup(kubeapi)
    kubeapi.seed(kubeapi.pdb("web-pdb", {"app": "web"}, max_unavailable=0))
    stop = threading.Event()
    stop.set()
    got = drain.drain(make_kube(kubeapi), "node-a", OPTS, stop=stop)
    assert not got.complete and "stopped" in got.message
    assert evictions(kubeapi) == 0 and len(got.remaining) == 2
    # nothing was evicted, so the node is given back as it was
    assert not got.cordoned_by_us and not unschedulable(kubeapi, "node-a")


def test_missing_node(kubeapi: KubeApi) -> None:
    got = drain.drain(make_kube(kubeapi), "node-z", OPTS)
    assert not got.complete and not got.node_found and "node-z not found" in got.message


def test_a_failing_list_while_waiting_is_retried(kubeapi_factory: Callable[..., KubeApi]) -> None:
    k = kubeapi_factory(pod_grace_seconds=0.3)
    (pod,) = names(setup(k, replicas=1)["pods"])
    faults: list[Any] = []

    def sleep(seconds: float) -> None:
        if not faults:  # the pod is terminating: the next re-list fails, retries included
            faults.append(k.faults.fail_next(1 + FAST.retries, 503, verb="list",
                                             resource="pods"))
        threading.Event().wait(seconds)

    got = drain.drain(make_kube(k), "node-a", OPTS, sleep=sleep)
    assert got.complete, got.message
    assert faults[0].hits == 1 + FAST.retries and not k.exists("v1", "Pod", pod)


def test_two_pdbs_end_the_drain(kubeapi: KubeApi) -> None:
    pods = names(setup(kubeapi)["pods"])
    kubeapi.seed(kubeapi.pdb("a", {"app": "web"}, max_unavailable=1),
                 kubeapi.pdb("b", {"app": "web"}, max_unavailable=1))
    got = drain.drain(make_kube(kubeapi), "node-a", OPTS)
    assert not got.complete and "more than one PodDisruptionBudget" in got.message
    assert evictions(kubeapi) == 1 and got.evicted == ()
    assert not unschedulable(kubeapi, "node-a")
    assert all(kubeapi.exists("v1", "Pod", p) for p in pods)


MOVING = drain.DrainOptions(timeout=10.0, retry_interval=0.05, poll_interval=0.05,
                            moving=move.MoveOptions(
                                checkpoint_restore=True, registry="registry.example/ckpt",
                                registry_secret="push", job_namespace="default",
                                checkpoint_timeout=5, restore_timeout=10, ready_timeout=10,
                                eviction_timeout=2, retry_interval=0.05, cleanup_timeout=10))


def test_opted_in_pod_moves_with_its_state(kubeapi: KubeApi) -> None:
    pods = setup(kubeapi)["pods"]
    kubeapi.modify("v1", "Pod", pods[0]["metadata"]["name"], lambda p: p["metadata"].setdefault(
        "annotations", {}).update({drain.MOVE_ANNOTATION: drain.MOVE_CHECKPOINT}))
    kubeapi.kubelet.run_pods = True
    got = drain.drain(make_kube(kubeapi), "node-a", MOVING)
    assert got.complete and "1 of them moved with their state" in got.message, got.message
    assert len(kubeapi.kubelet.checkpoints) == 1  # only the pod that asked
    left = kubeapi.items("v1", "Pod", "default")
    assert [p["spec"]["nodeName"] for p in left] == ["node-b"]  # the restored replacement
    assert sorted(evicted_names(kubeapi)) == sorted(names(pods))


def test_opted_in_pod_evicted_where_the_cluster_cannot_restore(kubeapi: KubeApi) -> None:
    pods = setup(kubeapi)["pods"]
    kubeapi.modify("v1", "Pod", pods[0]["metadata"]["name"], lambda p: p["metadata"].setdefault(
        "annotations", {}).update({drain.MOVE_ANNOTATION: drain.MOVE_CHECKPOINT}))
    off = drain.DrainOptions(timeout=2.0, retry_interval=0.05, poll_interval=0.05,
                             moving=move.MoveOptions())
    got = drain.drain(make_kube(kubeapi), "node-a", off)
    assert got.complete and "moved" not in got.message
    assert kubeapi.kubelet.checkpoints == [] and evictions(kubeapi) == 2
