"""The simulated kubelet running pods created through the API (`kubelet.run_pods`), via the
official client.

Cases:
- off (the default): a created pod stays Pending, as it always did;
- on: a pod naming its node becomes Running and Ready there, with container statuses
  (ready, started, running, resources and allocatedResources as in its spec), the
  conditions a kubelet sets, and a watch sees it created, then started;
- on: a pod naming no node is bound (a write of its own, then the start) to the first node
  by name that is Ready, not cordoned and allowed by its nodeSelector and required node
  affinity (`kubernetes.io/hostname` NotIn, In on a label); none fits -> Pending with
  PodScheduled False, Unschedulable;
- `fail_pods(pattern, reason)`: matching pods start but never become Ready
  (CrashLoopBackOff, restartCount 3, Ready False ContainersNotReady); an image-pull reason
  keeps the pod Pending; others still start;
- seeded pods and dry-run creates are never started; a started pod can be resized in place
  (its statuses report resources).
"""

from __future__ import annotations

from typing import Any

import kubernetes

from tests.fakes.kubeapi.handle import KubeApi, typed_api

JSON = dict[str, Any]


def _core(k: KubeApi) -> Any:
    return typed_api(kubernetes.client.CoreV1Api, k.api_client())


def _pod(name: str, node: str | None = None, **spec: Any) -> JSON:
    body: JSON = {"apiVersion": "v1", "kind": "Pod",
                  "metadata": {"name": name, "labels": {"app": "web"}},
                  "spec": {"containers": [KubeApi.container("app", cpu="100m", memory="64Mi",
                                                            memory_limit="64Mi")], **spec}}
    if node:
        body["spec"]["nodeName"] = node
    return body


def _nodes(k: KubeApi) -> None:
    not_ready = k.node("node-0")
    not_ready["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    k.seed(not_ready, k.node("node-a", unschedulable=True),
           k.node("node-b", labels={"pool": "small"}), k.node("node-c", labels={"pool": "big"}))


def _conditions(pod: JSON) -> dict[str, str]:
    return {c["type"]: c["status"] for c in pod["status"].get("conditions") or []}


def test_off_by_default_pods_stay_pending(kubeapi: KubeApi) -> None:
    _nodes(kubeapi)
    _core(kubeapi).create_namespaced_pod("default", _pod("web", node="node-b"))
    assert kubeapi.kubelet.settled()
    assert kubeapi.get("v1", "Pod", "web")["status"]["phase"] == "Pending"


def test_a_pod_with_a_node_starts_there(kubeapi: KubeApi) -> None:
    _nodes(kubeapi)
    kubeapi.kubelet.run_pods = True
    core = _core(kubeapi)
    rv = core.list_namespaced_pod("default").metadata.resource_version
    core.create_namespaced_pod("default", _pod("web", node="node-a"))  # cordoned: named
    assert kubeapi.kubelet.settled()
    pod = kubeapi.get("v1", "Pod", "web")
    assert pod["spec"]["nodeName"] == "node-a"
    assert pod["status"]["phase"] == "Running"
    assert _conditions(pod) == {"PodReadyToStartContainers": "True", "Initialized": "True",
                                "PodScheduled": "True", "ContainersReady": "True",
                                "Ready": "True"}
    (cs,) = pod["status"]["containerStatuses"]
    assert cs["ready"] and cs["started"] and "running" in cs["state"]
    assert cs["resources"] == {"requests": {"cpu": "100m", "memory": "64Mi"},
                               "limits": {"memory": "64Mi"}}
    assert cs["allocatedResources"] == {"cpu": "100m", "memory": "64Mi"}
    w = kubernetes.watch.Watch()  # type: ignore[no-untyped-call]
    seen = []
    for ev in w.stream(core.list_namespaced_pod, "default", resource_version=rv,
                       timeout_seconds=1):
        seen.append((ev["type"], ev["raw_object"]["status"]["phase"]))
    assert seen == [("ADDED", "Pending"), ("MODIFIED", "Running")]


def test_a_pod_without_a_node_is_placed(kubeapi: KubeApi) -> None:
    _nodes(kubeapi)
    kubeapi.kubelet.run_pods = True
    core = _core(kubeapi)
    core.create_namespaced_pod("default", _pod("any"))
    avoid = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "NotIn", "values": ["node-b"]}]}]}}}
    core.create_namespaced_pod("default", _pod("not-b", affinity=avoid))
    core.create_namespaced_pod("default", _pod("big", nodeSelector={"pool": "big"}))
    core.create_namespaced_pod("default", _pod("nowhere", nodeSelector={"pool": "huge"}))
    assert kubeapi.kubelet.settled()
    placed = {n: kubeapi.get("v1", "Pod", n)["spec"].get("nodeName")
              for n in ("any", "not-b", "big", "nowhere")}
    assert placed == {"any": "node-b", "not-b": "node-c", "big": "node-c", "nowhere": None}
    assert kubeapi.get("v1", "Pod", "any")["status"]["phase"] == "Running"
    nowhere = kubeapi.get("v1", "Pod", "nowhere")
    assert nowhere["status"]["phase"] == "Pending"
    (cond,) = nowhere["status"]["conditions"]
    assert (cond["type"], cond["status"], cond["reason"]) == (
        "PodScheduled", "False", "Unschedulable")


def test_failing_pods_never_become_ready(kubeapi: KubeApi) -> None:
    _nodes(kubeapi)
    kubeapi.kubelet.run_pods = True
    kubeapi.kubelet.fail_pods(r"-restored-")
    kubeapi.kubelet.fail_pods(r"^pull", "ImagePullBackOff", "Back-off pulling image")
    core = _core(kubeapi)
    for name in ("web-restored-1", "pull-me", "fine"):
        core.create_namespaced_pod("default", _pod(name, node="node-b"))
    assert kubeapi.kubelet.settled()
    crash = kubeapi.get("v1", "Pod", "web-restored-1")
    assert crash["status"]["phase"] == "Running"
    assert _conditions(crash)["Ready"] == "False"
    (cs,) = crash["status"]["containerStatuses"]
    assert cs["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert cs["restartCount"] == 3 and not cs["ready"]
    pull = kubeapi.get("v1", "Pod", "pull-me")
    assert pull["status"]["phase"] == "Pending"
    assert pull["status"]["containerStatuses"][0]["state"]["waiting"] == {
        "reason": "ImagePullBackOff", "message": "Back-off pulling image"}
    assert _conditions(kubeapi.get("v1", "Pod", "fine"))["Ready"] == "True"


def test_seeded_and_dry_run_pods_are_not_started_and_started_ones_resize(
        kubeapi: KubeApi) -> None:
    _nodes(kubeapi)
    kubeapi.kubelet.run_pods = True
    kubeapi.seed(kubeapi.pod("seeded", node="node-b", phase="Pending", ready=False))
    core = _core(kubeapi)
    core.create_namespaced_pod("default", _pod("rehearsal", node="node-b"), dry_run="All")
    core.create_namespaced_pod("default", _pod("web", node="node-b"))
    assert kubeapi.kubelet.settled()
    assert kubeapi.get("v1", "Pod", "seeded")["status"]["phase"] == "Pending"
    assert not kubeapi.exists("v1", "Pod", "rehearsal")
    core.patch_namespaced_pod_resize("web", "default", [
        {"op": "replace", "path": "/spec/containers/0/resources/requests/cpu",
         "value": "200m"}], _content_type="application/json-patch+json")
    assert kubeapi.kubelet.settled()
    (cs,) = kubeapi.get("v1", "Pod", "web")["status"]["containerStatuses"]
    assert cs["resources"]["requests"]["cpu"] == "200m"
