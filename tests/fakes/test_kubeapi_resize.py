"""In-place pod resize on the test API server: validation by version, and the simulated
kubelet carrying a resize out, driven through the official client and observed by watches.

Cases:
- the default kubelet ("actuate"): `PodResizeInProgress` (no reason, observedGeneration =
  the resize's generation) as one watch event, then the new resources in
  containerStatuses[].resources and allocatedResources and no resize condition;
- "defer": `PodResizePending` reason Deferred (with the given message) that stays once
  the kubelet has settled; `release()` actuates it; a new resize replaces a held one;
- "infeasible": `PodResizePending` reason Infeasible, never re-checked;
- "error": `PodResizeInProgress` then reason Error with the message; resources unapplied
  but allocated;
- "stall" (as the default mode for every pod): `PodResizeInProgress` with no reason forever;
- unknown modes are refused;
- a 1.32 server has no pods/resize: 404 NotFound with the real message, left out of
  discovery, /version says 1.32;
- a memory limit decrease under resizePolicy NotRequired: 422 (Forbidden on
  spec.containers[0].resources.limits[memory]) on 1.33, allowed on 1.33 with
  RestartContainer, allowed and applied on 1.34 (conditions carry observedGeneration on
  1.34 only);
- 1.34: a memory limit decrease below the pod's usage (annotation) ends in Error with the
  kubelet's message; above the usage it is applied;
- restartPolicy Never: resizePolicy RestartContainer is refused (422) on resize and on create;
- a running pod whose containerStatuses[].resources is unset cannot be resized (422);
- RestartContainer: the container restarts (not ready, pod not Ready, restartCount + 1, then
  Ready); with a PodDisruptionBudget allowing no disruption the dip is recorded as a breach
  (after the kubelet step), with one allowed it is not;
- a workload seeded below its budget is no breach; a DELETE (not an eviction) of a healthy
  pod is, and a terminating pod is not healthy;
- node allocatable: a resize above it is Infeasible with the kubelet's message; one that
  fits the node but not beside its other pods is Deferred, and actuated once room appears.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import kubernetes
import pytest

from tests.fakes.kubeapi.handle import KubeApi, status_body, typed_api

ApiException = kubernetes.client.exceptions.ApiException
JSON = dict[str, Any]
WAIT = 10  # seconds a watch may take to show the awaited state (never reached when passing)


def _core(k: KubeApi) -> Any:
    return typed_api(kubernetes.client.CoreV1Api, k.api_client())


def _container(cpu_policy: str | None = None, memory_policy: str | None = None) -> JSON:
    c = KubeApi.container("app", cpu="500m", memory="256Mi", cpu_limit="1",
                          memory_limit="512Mi")
    policies = [{"resourceName": r, "restartPolicy": p}
                for r, p in (("cpu", cpu_policy), ("memory", memory_policy)) if p]
    if policies:
        c["resizePolicy"] = policies
    return c


def _seed_pod(k: KubeApi, name: str = "p", node: str | None = None,
              memory_policy: str | None = None) -> JSON:
    return k.seed(k.pod(name, labels={"app": "web"}, node=node,
                        containers=[_container(memory_policy=memory_policy)]))[0]


def _resize(k: KubeApi, name: str, resources: JSON, **extra: Any) -> Any:
    return _core(k).patch_namespaced_pod_resize(name, "default", {"spec": {"containers": [
        {"name": "app", "resources": resources, **extra}]}})


def _cpu(value: str) -> JSON:
    return {"requests": {"cpu": value}}


def _condition(pod: JSON, kind: str) -> JSON | None:
    return next((c for c in pod["status"].get("conditions") or [] if c["type"] == kind), None)


def _watch_pod(k: KubeApi, rv: str, name: str, until: Callable[[JSON], bool]) -> list[JSON]:
    """Every state of pod `name` after resourceVersion `rv`, up to the first for which
    `until` holds (the test fails if none does within WAIT seconds)."""
    w = kubernetes.watch.Watch()  # type: ignore[no-untyped-call]
    seen: list[JSON] = []
    for ev in w.stream(_core(k).list_namespaced_pod, "default", resource_version=rv,
                       field_selector=f"metadata.name={name}", timeout_seconds=WAIT):
        seen.append(ev["raw_object"])
        if until(ev["raw_object"]):
            w.stop()
    assert seen and until(seen[-1]), f"never reached; last states: {seen[-3:]}"
    return seen


def _rv(k: KubeApi) -> str:
    return str(_core(k).list_namespaced_pod("default").metadata.resource_version)


def _applied(cpu: str) -> Callable[[JSON], bool]:
    """The resize is done: cpu request applied and no resize condition left."""
    def done(pod: JSON) -> bool:
        cs = pod["status"]["containerStatuses"][0]
        return ((cs.get("resources") or {}).get("requests") or {}).get("cpu") == cpu and not (
            _condition(pod, "PodResizeInProgress") or _condition(pod, "PodResizePending"))
    return done


def _has(kind: str, reason: str | None = None) -> Callable[[JSON], bool]:
    def check(pod: JSON) -> bool:
        c = _condition(pod, kind)
        return c is not None and (reason is None or c.get("reason") == reason)
    return check


# ---------------------------------------------------------------------- kubelet modes


def test_actuate_reports_progress_then_applies(kubeapi: KubeApi) -> None:
    _seed_pod(kubeapi)
    rv = _rv(kubeapi)
    answer = _resize(kubeapi, "p", _cpu("250m"))
    generation = answer.metadata.generation
    seen = _watch_pod(kubeapi, rv, "p", _applied("250m"))
    progress = [_condition(p, "PodResizeInProgress") for p in seen]
    first = next(c for c in progress if c is not None)
    assert first["status"] == "True" and not first.get("reason")
    assert first["observedGeneration"] == generation
    done = seen[-1]
    status = done["status"]["containerStatuses"][0]
    assert status["resources"] == done["spec"]["containers"][0]["resources"]
    assert status["allocatedResources"] == {"cpu": "250m", "memory": "256Mi"}
    assert done["status"]["observedGeneration"] == generation
    assert status["restartCount"] == 0 and _condition(done, "Ready")["status"] == "True"


def test_defer_holds_until_release(kubeapi: KubeApi) -> None:
    _seed_pod(kubeapi)
    kubeapi.kubelet.set_mode("default", "p", "defer", "Node didn't have enough resource: cpu")
    rv = _rv(kubeapi)
    _resize(kubeapi, "p", _cpu("250m"))
    _watch_pod(kubeapi, rv, "p", _has("PodResizePending", "Deferred"))
    assert kubeapi.kubelet.settled()
    held = kubeapi.get("v1", "Pod", "p")
    pending = _condition(held, "PodResizePending")
    assert pending is not None and pending["message"] == "Node didn't have enough resource: cpu"
    assert held["status"]["containerStatuses"][0]["resources"]["requests"]["cpu"] == "500m"
    assert _condition(held, "PodResizeInProgress") is None
    # A new resize replaces the held one (still deferred: the mode stays).
    rv = held["metadata"]["resourceVersion"]
    again = _resize(kubeapi, "p", _cpu("300m"))
    seen = _watch_pod(kubeapi, rv, "p", lambda p: (_condition(p, "PodResizePending") or {}).get(
        "observedGeneration") == again.metadata.generation)
    assert kubeapi.kubelet.release("default", "p")
    _watch_pod(kubeapi, seen[-1]["metadata"]["resourceVersion"], "p", _applied("300m"))
    assert not kubeapi.kubelet.release("default", "p")  # nothing held any more


def test_infeasible_is_never_rechecked(kubeapi: KubeApi) -> None:
    _seed_pod(kubeapi)
    kubeapi.kubelet.set_mode("default", "p", "infeasible", "Node didn't have enough capacity")
    rv = _rv(kubeapi)
    _resize(kubeapi, "p", _cpu("250m"))
    _watch_pod(kubeapi, rv, "p", _has("PodResizePending", "Infeasible"))
    assert kubeapi.kubelet.settled()
    assert not kubeapi.kubelet.release("default", "p")
    pod = kubeapi.get("v1", "Pod", "p")
    assert _condition(pod, "PodResizePending")["message"] == "Node didn't have enough capacity"
    assert pod["status"]["containerStatuses"][0]["resources"]["requests"]["cpu"] == "500m"


def test_error_mode(kubeapi: KubeApi) -> None:
    _seed_pod(kubeapi)
    kubeapi.kubelet.set_mode("default", "p", "error", "failed to update container resources")
    rv = _rv(kubeapi)
    _resize(kubeapi, "p", _cpu("250m"))
    seen = _watch_pod(kubeapi, rv, "p", _has("PodResizeInProgress", "Error"))
    assert any(_has("PodResizeInProgress")(p) and not _condition(
        p, "PodResizeInProgress").get("reason") for p in seen)  # in progress first
    failed = seen[-1]
    assert _condition(failed, "PodResizeInProgress")["message"] == (
        "failed to update container resources")
    status = failed["status"]["containerStatuses"][0]
    assert status["resources"]["requests"]["cpu"] == "500m"
    assert status["allocatedResources"]["cpu"] == "250m"


def test_stall_as_default_mode(kubeapi: KubeApi) -> None:
    _seed_pod(kubeapi)
    kubeapi.kubelet.default_mode = "stall"
    rv = _rv(kubeapi)
    _resize(kubeapi, "p", _cpu("250m"))
    _watch_pod(kubeapi, rv, "p", _has("PodResizeInProgress"))
    assert kubeapi.kubelet.settled()
    pod = kubeapi.get("v1", "Pod", "p")
    assert not _condition(pod, "PodResizeInProgress").get("reason")
    assert pod["status"]["containerStatuses"][0]["resources"]["requests"]["cpu"] == "500m"


def test_unknown_mode_is_refused(kubeapi: KubeApi) -> None:
    with pytest.raises(ValueError, match="unknown resize mode"):
        kubeapi.kubelet.set_mode("default", "p", "sometimes")


# ---------------------------------------------------------------------- versions


def test_no_resize_subresource_before_1_33(kubeapi_factory: Callable[..., KubeApi]) -> None:
    k = kubeapi_factory(version=(1, 32))
    _seed_pod(k)
    with pytest.raises(ApiException) as e:
        _resize(k, "p", _cpu("250m"))
    assert e.value.status == 404
    body = status_body(e.value)
    assert body["reason"] == "NotFound"
    assert body["message"] == "the server could not find the requested resource"
    names = {r.name for r in _core(k).get_api_resources().resources}
    assert "pods/eviction" in names and "pods/resize" not in names
    info = typed_api(kubernetes.client.VersionApi, k.api_client()).get_code()
    assert (info.minor, info.git_version) == ("32", "v1.32.0")
    assert k.get("v1", "Pod", "p")["spec"]["containers"][0]["resources"]["requests"][
        "cpu"] == "500m"


@pytest.mark.parametrize(("version", "policy", "refused"), [
    ((1, 33), None, True),                  # NotRequired by default
    ((1, 33), "NotRequired", True),
    ((1, 33), "RestartContainer", False),
    ((1, 34), None, False),
])
def test_memory_limit_decrease_by_version(kubeapi_factory: Callable[..., KubeApi],
                                          version: tuple[int, int], policy: str | None,
                                          refused: bool) -> None:
    k = kubeapi_factory(version=version)
    _seed_pod(k, memory_policy=policy)
    shrink = {"limits": {"memory": "384Mi"}}
    if refused:
        with pytest.raises(ApiException) as e:
            _resize(k, "p", shrink)
        assert e.value.status == 422
        cause = status_body(e.value)["details"]["causes"][0]
        assert cause == {
            "reason": "FieldValueForbidden",
            "field": "spec.containers[0].resources.limits[memory]",
            "message": "Forbidden: memory limits cannot be decreased unless resizePolicy is "
                       "RestartContainer"}
        assert k.get("v1", "Pod", "p")["spec"]["containers"][0]["resources"]["limits"][
            "memory"] == "512Mi"
        return
    rv = _rv(k)
    _resize(k, "p", shrink)
    seen = _watch_pod(k, rv, "p", lambda p: p["status"]["containerStatuses"][0]["resources"][
        "limits"]["memory"] == "384Mi")
    progress = next(_condition(p, "PodResizeInProgress") for p in seen
                    if _condition(p, "PodResizeInProgress"))
    assert ("observedGeneration" in progress) == (version >= (1, 34))


@pytest.mark.parametrize(("usage", "error"), [
    ("400Mi", 'cannot decrease memory limits: [attempting to set pod memory limit (268435456) '
              'below current usage (419430400), attempting to set container "app" memory '
              'limit (268435456) below current usage (419430400)]'),
    ("100Mi", None),
])
def test_memory_limit_below_usage_is_an_error(kubeapi: KubeApi, usage: str,
                                              error: str | None) -> None:
    pod = kubeapi.pod("p", containers=[_container()])
    pod["metadata"]["annotations"] = {"kubeapi.test/memory-usage": usage}
    kubeapi.seed(pod)
    rv = _rv(kubeapi)
    _resize(kubeapi, "p", {"limits": {"memory": "256Mi"}})
    if error is None:
        _watch_pod(kubeapi, rv, "p", lambda p: p["status"]["containerStatuses"][0][
            "resources"]["limits"]["memory"] == "256Mi")
        return
    seen = _watch_pod(kubeapi, rv, "p", _has("PodResizeInProgress", "Error"))
    assert _condition(seen[-1], "PodResizeInProgress")["message"] == error
    assert seen[-1]["status"]["containerStatuses"][0]["resources"]["limits"][
        "memory"] == "512Mi"


def test_restart_policy_never_requires_not_required(kubeapi: KubeApi) -> None:
    pod = kubeapi.pod("once", containers=[_container()])
    pod["spec"]["restartPolicy"] = "Never"
    kubeapi.seed(pod)
    with pytest.raises(ApiException) as e:
        _resize(kubeapi, "once", _cpu("250m"), resizePolicy=[
            {"resourceName": "cpu", "restartPolicy": "RestartContainer"}])
    assert e.value.status == 422
    cause = status_body(e.value)["details"]["causes"][0]
    assert cause["field"] == "spec.containers[0].resizePolicy"
    assert cause["message"] == ("Invalid value: \"RestartContainer\": must be 'NotRequired' when "
                                "`restartPolicy` is 'Never'")
    # NotRequired is fine, and so is the same rule on create.
    _resize(kubeapi, "once", _cpu("250m"), resizePolicy=[
        {"resourceName": "cpu", "restartPolicy": "NotRequired"}])
    new = kubeapi.pod("twice", containers=[_container(cpu_policy="RestartContainer")])
    new["spec"]["restartPolicy"] = "Never"
    del new["status"]
    with pytest.raises(ApiException) as e:
        _core(kubeapi).create_namespaced_pod("default", new)
    assert e.value.status == 422
    assert "must be 'NotRequired' when `restartPolicy` is 'Never'" in status_body(
        e.value)["message"]


def test_running_pod_without_status_resources_cannot_be_resized(kubeapi: KubeApi) -> None:
    pod = kubeapi.pod("old-node", containers=[_container()])
    del pod["status"]["containerStatuses"][0]["resources"]
    kubeapi.seed(pod)
    with pytest.raises(ApiException) as e:
        _resize(kubeapi, "old-node", _cpu("250m"))
    assert e.value.status == 422
    assert status_body(e.value)["details"]["causes"] == [{
        "reason": "FieldValueForbidden", "field": "spec",
        "message": "Forbidden: Pod running on node without support for resize"}]


# ---------------------------------------------------------------------- disruption budgets


def _restart_on_cpu(k: KubeApi, min_available: int) -> list[str]:
    """Deployment web (2 pods, cpu resize restarts the container) and its budget."""
    pods = k.seed_workload("web", 2, containers=[_container(cpu_policy="RestartContainer")])
    k.seed(k.pdb("web", {"app": "web"}, min_available=min_available))
    return [p["metadata"]["name"] for p in pods["pods"]]


def test_restart_dip_breaches_a_budget_that_allows_none(kubeapi: KubeApi) -> None:
    first, _ = _restart_on_cpu(kubeapi, min_available=2)
    rv = _rv(kubeapi)
    _resize(kubeapi, first, _cpu("250m"))
    seen = _watch_pod(kubeapi, rv, first, _applied("250m"))
    dip = next(p for p in seen if _condition(p, "Ready")["status"] == "False")
    assert dip["status"]["containerStatuses"][0]["ready"] is False
    assert _condition(dip, "PodResizeInProgress") is not None
    done = seen[-1]
    assert _condition(done, "Ready")["status"] == "True"
    assert done["status"]["containerStatuses"][0]["ready"] is True
    assert done["status"]["containerStatuses"][0]["restartCount"] == 1
    assert kubeapi.kubelet.settled()
    assert kubeapi.disruptions.breaches == [{
        "pdb": "web", "namespace": "default", "healthy": 1, "desired": 2,
        "after": f"kubelet: default/{first} resize in progress (restarting app)"}]
    assert kubeapi.disruptions.min_healthy[("default", "web")] == 1


def test_restart_dip_within_budget_is_no_breach(kubeapi: KubeApi) -> None:
    first, _ = _restart_on_cpu(kubeapi, min_available=1)
    rv = _rv(kubeapi)
    _resize(kubeapi, first, _cpu("250m"))
    seen = _watch_pod(kubeapi, rv, first, _applied("250m"))
    assert any(_condition(p, "Ready")["status"] == "False" for p in seen)
    assert kubeapi.kubelet.settled()
    assert kubeapi.disruptions.breaches == []
    assert kubeapi.disruptions.min_healthy[("default", "web")] == 1


def test_breaches_are_what_requests_cause(kubeapi_factory: Callable[..., KubeApi]) -> None:
    k = kubeapi_factory(pod_grace_seconds=30)
    k.seed_workload("web", 3, ready=1)  # seeded below its budget: nobody's doing
    k.seed(k.pdb("web", {"app": "web"}, min_available=2))
    core = _core(k)
    core.patch_namespaced_pod("web-5d8f7c9b4-00002", "default",
                              {"metadata": {"labels": {"touched": "yes"}}})
    assert k.disruptions.breaches == []
    k.seed_workload("db", 2)
    k.seed(k.pdb("db", {"app": "db"}, min_available=2))
    core.delete_namespaced_pod("db-5d8f7c9b4-00000", "default")  # no eviction: no check
    terminating = k.get("v1", "Pod", "db-5d8f7c9b4-00000")
    assert terminating["metadata"]["deletionTimestamp"]  # still there, but not healthy
    assert k.disruptions.breaches == [{
        "pdb": "db", "namespace": "default", "healthy": 1, "desired": 2,
        "after": "DELETE /api/v1/namespaces/default/pods/db-5d8f7c9b4-00000"}]
    assert k.disruptions.min_healthy[("default", "db")] == 1


# ---------------------------------------------------------------------- node room


def test_above_node_allocatable_is_infeasible(kubeapi: KubeApi) -> None:
    kubeapi.seed(kubeapi.node("node-a", cpu="2", memory="4Gi"))
    _seed_pod(kubeapi, node="node-a")
    rv = _rv(kubeapi)
    _resize(kubeapi, "p", {"requests": {"cpu": "3"}, "limits": {"cpu": "3"}})
    seen = _watch_pod(kubeapi, rv, "p", _has("PodResizePending"))
    pending = _condition(seen[-1], "PodResizePending")
    assert pending["reason"] == "Infeasible"
    assert pending["message"] == "Node didn't have enough capacity: cpu, requested: 3000, " \
                                 "capacity: 2000"
    assert kubeapi.kubelet.settled()
    assert _condition(kubeapi.get("v1", "Pod", "p"), "PodResizeInProgress") is None


def test_no_room_beside_other_pods_is_deferred_until_room(kubeapi: KubeApi) -> None:
    kubeapi.seed(kubeapi.node("node-a", cpu="2", memory="4Gi"))
    _seed_pod(kubeapi, "big", node="node-a")
    _seed_pod(kubeapi, "p", node="node-a")
    rv = _rv(kubeapi)
    _resize(kubeapi, "p", {"requests": {"cpu": "1600m"}, "limits": {"cpu": "2"}})
    seen = _watch_pod(kubeapi, rv, "p", _has("PodResizePending"))
    pending = _condition(seen[-1], "PodResizePending")
    assert pending["reason"] == "Deferred"
    assert pending["message"] == ("Node didn't have enough resource: cpu, requested: 1600, "
                                  "used: 500, capacity: 2000")
    _core(kubeapi).delete_namespaced_pod("big", "default")
    _watch_pod(kubeapi, seen[-1]["metadata"]["resourceVersion"], "p", _applied("1600m"))
