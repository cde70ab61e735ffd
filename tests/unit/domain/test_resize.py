"""domain/resize: the judgements about one pod's in-place resize, from the pod alone.

Cases covered:
- refusal: a missing container, a non cpu/memory resource, a QoS class change (the class
  itself is domain/admission's, tested there), restartPolicy Never with a
  RestartContainer policy, no resources in the container status yet; a valid resize is
  not refused;
- restarts: only a changed resource under RestartContainer restarts;
- progress: Deferred, Infeasible, Error (message kept), an unknown reason is an error,
  in progress, done when spec and status hold the values, quantities compared by value;
- patch: test operations on every value it starts from, add for a new key, remove for a
  value put back to unset; a container without resources is tested whole;
- budget_allows: minAvailable and maxUnavailable (counts and percentages), pods already
  restarting counted, a budget not selecting the pod ignored, a malformed selector ignored;
  a resize without a restart needs only the workload within its budget now.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from reconciler.domain import resize as rz


def pod(requests: dict[str, str] | None = None, limits: dict[str, str] | None = None,
        *, status: dict[str, Any] | None = None, conditions: list[dict[str, Any]] | None = None,
        policy: dict[str, str] | None = None, restart: str = "Always",
        labels: dict[str, str] | None = None, ready: bool = True) -> dict[str, Any]:
    res: dict[str, Any] = {}
    if requests:
        res["requests"] = dict(requests)
    if limits:
        res["limits"] = dict(limits)
    c: dict[str, Any] = {"name": "app", "image": "x", "resources": res}
    if policy:
        c["resizePolicy"] = [{"resourceName": k, "restartPolicy": v} for k, v in policy.items()]
    return {"metadata": {"name": "p", "namespace": "ns", "labels": labels or {"app": "w"}},
            "spec": {"containers": [c], "restartPolicy": restart},
            "status": {"phase": "Running",
                       "conditions": [{"type": "Ready", "status": str(ready)}, *(conditions or [])],
                       "containerStatuses": [{"name": "app", "resources": copy.deepcopy(
                           res if status is None else status)}]}}


G = ({"cpu": "1", "memory": "1Gi"}, {"cpu": "1", "memory": "1Gi"})


@pytest.mark.parametrize(("p", "want", "fragment"), [
    (pod({"cpu": "1"}), {"other": {"requests": {"cpu": "1"}}}, "no container 'other'"),
    (pod({"cpu": "1"}), {"app": {"requests": {"ephemeral-storage": "1Gi"}}},
     "only cpu and memory"),
    (pod(*G), {"app": {"requests": {"cpu": "500m"}}}, "from Guaranteed to Burstable"),
    (pod({"cpu": "1"}), {"app": {"requests": {"cpu": "0"}}}, "from Burstable to BestEffort"),
    (pod({"cpu": "1"}, policy={"cpu": "RestartContainer"}, restart="Never"),
     {"app": {"requests": {"cpu": "2"}}}, "restartPolicy Never"),
    (pod({"cpu": "1"}, status={}), {"app": {"requests": {"cpu": "2"}}}, None),
])
def test_refusal(p: dict[str, Any], want: Any, fragment: str | None) -> None:
    why = rz.refusal(p, want)
    assert (why is None) if fragment is None else (fragment in str(why)), why


def test_refusal_without_status_resources() -> None:
    p = pod({"cpu": "1"})
    del p["status"]["containerStatuses"][0]["resources"]
    assert "reports no resources" in str(rz.refusal(p, {"app": {"requests": {"cpu": "2"}}}))


@pytest.mark.parametrize(("policy", "want", "restarts"), [
    (None, {"requests": {"cpu": "2"}}, False),
    ({"cpu": "RestartContainer"}, {"requests": {"cpu": "2"}}, True),
    ({"cpu": "RestartContainer"}, {"requests": {"memory": "2Gi"}}, False),
    ({"cpu": "RestartContainer"}, {"requests": {"cpu": "1"}}, False),  # unchanged value
    ({"memory": "RestartContainer"}, {"limits": {"memory": "2Gi"}}, True),
])
def test_restarts(policy: dict[str, str] | None, want: Any, restarts: bool) -> None:
    p = pod({"cpu": "1", "memory": "1Gi"}, {"memory": "1Gi"}, policy=policy)
    assert rz.restarts(p, {"app": want}) is restarts


WANT = {"app": {"requests": {"cpu": "500m"}}}


@pytest.mark.parametrize(("p", "state", "message"), [
    (pod({"cpu": "1"}, conditions=[{"type": "PodResizePending", "status": "True",
                                    "reason": "Deferred", "message": "not now"}]),
     rz.DEFERRED, "not now"),
    (pod({"cpu": "1"}, conditions=[{"type": "PodResizePending", "status": "True",
                                    "reason": "Infeasible", "message": "too big"}]),
     rz.INFEASIBLE, "too big"),
    (pod({"cpu": "1"}, conditions=[{"type": "PodResizeInProgress", "status": "True",
                                    "reason": "Error", "message": "OOM"}]), rz.ERROR, "OOM"),
    (pod({"cpu": "1"}, conditions=[{"type": "PodResizeInProgress", "status": "True",
                                    "reason": "Odd", "message": "m"}]), rz.ERROR, "Odd: m"),
    (pod({"cpu": "1"}, conditions=[{"type": "PodResizeInProgress", "status": "True"}]),
     rz.APPLYING, ""),
    (pod({"cpu": "500m"}, status={"requests": {"cpu": "1"}}), rz.APPLYING, ""),
    (pod({"cpu": "0.5"}, status={"requests": {"cpu": "500m"}}), rz.DONE, ""),
    (pod({"cpu": "1"}, conditions=[{"type": "PodResizePending", "status": "False",
                                    "reason": "Deferred"}]), rz.APPLYING, ""),
])
def test_progress(p: dict[str, Any], state: str, message: str) -> None:
    got = rz.progress(p, WANT)
    assert (got.state, got.message) == (state, message)


def test_patch_tests_then_sets() -> None:
    p = pod({"cpu": "1"}, {"memory": "1Gi"})
    start = rz.values_of(p, {"app": {"requests": {"cpu": "x", "memory": "x"}}})
    assert start == {"app": {"requests": {"cpu": "1", "memory": None}}}
    ops = rz.patch(p, start, {"app": {"requests": {"cpu": "500m", "memory": "256Mi"}}})
    assert ops == [
        {"op": "test", "path": "/spec/containers/0/name", "value": "app"},
        {"op": "test", "path": "/spec/containers/0/resources/requests/cpu", "value": "1"},
        {"op": "replace", "path": "/spec/containers/0/resources/requests/cpu",
         "value": "500m"},
        {"op": "test", "path": "/spec/containers/0/resources/requests",
         "value": {"cpu": "1"}},
        {"op": "add", "path": "/spec/containers/0/resources/requests/memory",
         "value": "256Mi"},
    ]


def test_patch_back_to_unset_removes() -> None:
    p = pod({"cpu": "1", "memory": "256Mi"})
    ops = rz.patch(p, {"app": {"requests": {"memory": "256Mi"}}},
                   {"app": {"requests": {"memory": None}}})
    assert ops[-1] == {"op": "remove", "path": "/spec/containers/0/resources/requests/memory"}


def test_patch_container_without_resources_is_tested_whole() -> None:
    p = pod()
    ops = rz.patch(p, {"app": {"requests": {"cpu": None}}}, {"app": {"requests": {"cpu": "1"}}})
    assert ops[1]["op"] == "test" and ops[1]["path"] == "/spec/containers/0"
    assert ops[2] == {"op": "add", "path": "/spec/containers/0/resources",
                      "value": {"requests": {"cpu": "1"}}}


def pdb(spec: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "b"}, "spec": {"selector": {"matchLabels": {"app": "w"}},
                                                 **spec}}


@pytest.mark.parametrize(("budget", "ready", "restarting", "allowed"), [
    ({"minAvailable": 2}, 3, 0, True),
    ({"minAvailable": 3}, 3, 0, False),
    ({"minAvailable": 2}, 3, 1, False),   # one of ours already out
    ({"maxUnavailable": 1}, 3, 0, True),
    ({"maxUnavailable": 0}, 3, 0, False),
    ({"maxUnavailable": 1}, 2, 0, False),  # one already unhealthy
    ({"minAvailable": "50%"}, 3, 0, True),   # needs 2 of 3
    ({"maxUnavailable": "10%"}, 3, 0, True),  # rounds up to 1
])
def test_budget(budget: dict[str, Any], ready: int, restarting: int, allowed: bool) -> None:
    pods = [pod({"cpu": "1"}, ready=i < ready) for i in range(3)]
    why = rz.budget_allows([pdb(budget)], pods, pods[0], restarting, 3)
    assert (why is None) is allowed, why


@pytest.mark.parametrize(("budget", "ready", "allowed"), [
    ({"minAvailable": 3}, 3, True),    # no restart: only within the budget now
    ({"minAvailable": 3}, 2, False),   # already short: not touched
    ({"maxUnavailable": 0}, 3, True),
])
def test_budget_without_restart(budget: dict[str, Any], ready: int, allowed: bool) -> None:
    pods = [pod({"cpu": "1"}, ready=i < ready) for i in range(3)]
    why = rz.budget_allows([pdb(budget)], pods, pods[0], 0, 3, restarts=False)
    assert (why is None) is allowed, why


def test_budget_ignores_other_and_malformed_selectors() -> None:
    pods = [pod({"cpu": "1"}) for _ in range(2)]
    other = {"metadata": {"name": "o"}, "spec": {"selector": {"matchLabels": {"app": "x"}},
                                                  "minAvailable": 2}}
    bad = {"metadata": {"name": "m"}, "spec": {"selector": {"matchExpressions": [
        {"key": "app", "operator": "Near"}]}, "minAvailable": 2}}
    assert rz.budget_allows([other, bad], pods, pods[0], 0, 2) is None
