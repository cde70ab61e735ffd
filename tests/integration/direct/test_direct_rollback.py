"""Rollback of direct-mode changes against the test API server, through the real client.

Cases:
- `rollback(id)` restores the previous container values with a patch guarded on the values
  we set, ends RolledBack with a condition, an Event and audit lines, and releases the
  finalizer; a second rollback is a no-op without writes;
- deleting an applied recommendation keeps it (finalizer, deletionTimestamp) until
  `reconcile_deletions` restores the values; then the object is gone;
- after a foreign change to a value we set, rollback refuses with the value named, writes
  nothing to the workload, keeps the object and the finalizer and sets
  RolledBack=False/ChangedSince;
- HPA bounds and scale-subresource replicas are restored too;
- a recommendation that was never applied has nothing to roll back: `rollback` says so;
  it was created with the finalizer (so that applying needs no metadata write), and
  deleting it is released by `reconcile_deletions` without any write to the workload;
  the same for a NodeGroupRecommendation (cluster-scoped).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import kubernetes
import pytest

from reconciler.direct import cache, deletions, rollback
from reconciler.domain import errors
from tests.fakes.kubeapi import status as kubeapi_status
from tests.integration.direct.test_direct_apply import (  # the fixture `env` is shared
    GROUP,
    VERSION,
    Env,
    env,  # noqa: F401
    hpa_obj,
    rightsizing,
    scaling,
)


def _delete(e: Env, rec_id: str) -> None:
    kubernetes.client.CustomObjectsApi(e.client).delete_namespaced_custom_object(
        GROUP, VERSION, "default", "workloadrecommendations", rec_id)


def test_rollback_restores(env: Env,  # noqa: F811
                            caplog: pytest.LogCaptureFixture) -> None:
    assert env.run(rightsizing("rec-1", requests={"cpu": "250m", "memory": "256Mi"},
                               limits={"cpu": "2"})).items[0].phase == "Applied"
    caplog.set_level(logging.INFO, logger="reconciler.audit")
    item = rollback.rollback("rec-1", env.store(), env.adapter())
    assert item.phase == "RolledBack", item.message
    assert env.resources() == {"requests": {"cpu": "100m", "memory": "128Mi"},
                               "limits": {"cpu": "1", "memory": "512Mi"}}
    obj = env.rec("rec-1")
    assert obj["status"]["phase"] == "RolledBack"
    cond = {c["type"]: c for c in obj["status"]["conditions"]}
    assert cond["RolledBack"]["status"] == "True"
    assert cache.FINALIZER not in (obj["metadata"].get("finalizers") or [])
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "reconciler.audit"]
    assert sorted((ln["field"].rsplit(".", 2)[-2:][0] + "." + ln["field"].rsplit(".", 1)[-1],
                   ln["before"], ln["after"]) for ln in lines) == [
        ("limits.cpu", "2", "1"), ("requests.cpu", "250m", "100m"),
        ("requests.memory", "256Mi", "128Mi")]
    assert {ln["action"] for ln in lines} == {"rollback"}
    reasons = {e["reason"] for e in env.api.items("v1", "Event", "default")}
    assert {"DakrRecommendationRolledBack", "RolledBack"} <= reasons

    env.api.requests.reset()
    again = rollback.rollback("rec-1", env.store(), env.adapter())
    assert again.phase == "RolledBack" and "already" in again.message
    assert env.api.requests.writes() == []
    # A rerun of the batch does not apply it again either.
    env.api.requests.reset()
    assert env.run(rightsizing("rec-1", requests={"cpu": "250m", "memory": "256Mi"},
                               limits={"cpu": "2"})).items[0].phase == "RolledBack"
    assert env.api.requests.writes() == []


def test_delete_rolls_back_through_the_finalizer(env: Env) -> None:  # noqa: F811
    env.run(rightsizing("rec-1", requests={"cpu": "250m"}))
    _delete(env, "rec-1")
    held = env.rec("rec-1")
    assert held["metadata"]["deletionTimestamp"]  # kept by the finalizer
    assert env.resources()["requests"]["cpu"] == "250m"
    out = deletions.reconcile(env.store(), env.adapter())
    assert [(i.id, i.phase) for i in out] == [("rec-1", "RolledBack")]
    assert env.resources()["requests"]["cpu"] == "100m"
    assert not env.api.exists(f"{GROUP}/{VERSION}", "WorkloadRecommendation", "rec-1")
    assert deletions.reconcile(env.store(), env.adapter()) == []


def test_rollback_refused_after_foreign_change(env: Env) -> None:  # noqa: F811
    env.run(rightsizing("rec-1", requests={"cpu": "250m"}))

    def edit(obj: dict[str, Any]) -> None:
        obj["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "300m"
    env.api.modify("apps/v1", "Deployment", "web", edit)
    _delete(env, "rec-1")
    env.api.requests.reset()
    out = deletions.reconcile(env.store(), env.adapter())
    assert len(out) == 1 and out[0].phase == "Applied"
    assert "requests.cpu is 300m, not the 250m" in out[0].message
    assert env.resources()["requests"]["cpu"] == "300m"
    assert env.api.requests.count("patch", "deployments") == 0
    obj = env.rec("rec-1")
    assert cache.FINALIZER in obj["metadata"]["finalizers"]
    assert obj["metadata"]["deletionTimestamp"]
    cond = {c["type"]: c for c in obj["status"]["conditions"]}
    assert (cond["RolledBack"]["status"], cond["RolledBack"]["reason"]) == (
        "False", "ChangedSince")
    warn = [e for e in env.api.items("v1", "Event", "default") if e["type"] == "Warning"]
    assert [e["reason"] for e in warn] == ["RollbackRefused"]


def test_rollback_hpa_and_replicas(env: Env) -> None:  # noqa: F811
    env.api.seed(hpa_obj("web-hpa", "web", 2, 10), env.api.deployment("api", replicas=2))
    batch = env.run(scaling("rec-h", hpa={"minReplicas": 4, "maxReplicas": 6}),
                    scaling("rec-s", name="api", replicas=7))
    assert [i.phase for i in batch.items] == ["Applied", "Applied"]
    assert env.workload("api")["spec"]["replicas"] == 7
    for rec_id in ("rec-h", "rec-s"):
        assert rollback.rollback(rec_id, env.store(), env.adapter()).phase == "RolledBack"
    hpa = env.api.get("autoscaling/v2", "HorizontalPodAutoscaler", "web-hpa")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 10)
    assert env.workload("api")["spec"]["replicas"] == 2


def test_nothing_to_roll_back(env: Env) -> None:  # noqa: F811
    env.run(rightsizing("rec-denied", requests={"cpu": "250m"}))
    obj = env.rec("rec-denied")
    assert obj["metadata"]["finalizers"] == [cache.FINALIZER]
    item = rollback.rollback("rec-denied", env.store(), env.adapter())
    assert item.phase == "Rejected" and "nothing to roll back" in item.message
    assert cache.FINALIZER not in (env.rec("rec-denied")["metadata"].get("finalizers") or [])
    with pytest.raises(errors.NotFoundError):
        rollback.rollback("rec-unknown", env.store(), env.adapter())


def test_delete_never_applied_is_released(env: Env) -> None:  # noqa: F811
    env.run(rightsizing("rec-denied", requests={"cpu": "250m"}))
    workload_rv = env.workload()["metadata"]["resourceVersion"]
    _delete(env, "rec-denied")
    assert env.rec("rec-denied")["metadata"]["deletionTimestamp"]  # held by the finalizer
    env.api.requests.reset()
    items = deletions.reconcile(env.store(), env.adapter())
    assert [(i.id, i.phase) for i in items] == [("rec-denied", "Rejected")]
    assert "nothing to roll back" in items[0].message
    assert [(w.verb, w.resource) for w in env.api.requests.writes()] == [
        ("patch", "workloadrecommendations")]  # the finalizer, nothing else
    with pytest.raises(kubeapi_status.ApiError) as gone:
        env.rec("rec-denied")
    assert gone.value.code == 404
    assert env.workload()["metadata"]["resourceVersion"] == workload_rv


def test_delete_node_group_recommendation_is_released(env: Env) -> None:  # noqa: F811
    """Node group objects carry the finalizer too; deleting one is released as well."""
    doc = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "NodeGroupRecommendation",
           "spec": {"recommendationId": "ng-1", "nodeGroup": "pool", "action": "scale",
                    "targetNodeCount": 2}}
    env.run(doc)
    ng = env.api.get(f"{GROUP}/{VERSION}", "NodeGroupRecommendation", "ng-1")
    assert ng["metadata"]["finalizers"] == [cache.FINALIZER]
    kubernetes.client.CustomObjectsApi(env.client).delete_cluster_custom_object(
        GROUP, VERSION, "nodegrouprecommendations", "ng-1")
    items = deletions.reconcile(env.store(), env.adapter())
    assert [(i.id, i.kind) for i in items] == [("ng-1", "NodeGroupRecommendation")]
    with pytest.raises(kubeapi_status.ApiError) as gone:
        env.api.get(f"{GROUP}/{VERSION}", "NodeGroupRecommendation", "ng-1")
    assert gone.value.code == 404
