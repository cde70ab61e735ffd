"""Node consolidation in direct mode: NodeGroupRecommendations drain their nodes.

Through direct.run and the real client against the test API server (CR store there, the
embedded OPA engine with the small test policy of test_direct_apply, its decision saying
``execution.nodeConsolidation: drain``, node facts read). Marking, the default, is
test_direct_mark's.

Cases:
- applied: the named node is cordoned and its pods evicted through the Eviction API; the
  nodes it cordoned were recorded in status before the cordon (the request log shows the
  status write first), phase Applied with the evicted pods, an Event and an audit line;
  other nodes untouched; a re-run writes nothing;
- rollback (and deleting the recommendation): the node is uncordoned, phase RolledBack,
  the finalizer released; evicted pods are not brought back (said in the message);
- a bare pod on the node: the drain is refused before any eviction, the node is left
  schedulable, phase Failed with the pod named;
- dry-run: nothing cordoned or evicted, the message says what would be evicted;
- a scale recommendation naming no node: Failed, not applicable in direct mode;
- a node that no longer exists is skipped (already removed) and the others are drained;
- the policy's mode still routes: gitops -> not drained here (no repository configured:
  Failed, WriterNotConfigured).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from reconciler.adapters.opa import embedded
from reconciler.config import settings
from reconciler.direct import deletions
from tests.crds import install_crds
from tests.fakes.kubeapi.handle import KubeApi
from tests.integration.direct.test_direct_apply import GROUP, POLICY, VERSION, Env

NG = "NodeGroupRecommendation"


def ng(rec_id: str, nodes: list[str], source: str = "") -> dict[str, Any]:
    spec: dict[str, Any] = {"recommendationId": rec_id, "nodeGroup": "pool",
                            "action": "consolidate", "currentNodeCount": 3,
                            "targetNodeCount": 3 - len(nodes), "nodesToRemove": nodes}
    if source:
        spec["source"] = source
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": NG, "spec": spec}


# The test policy, its decision saying how node groups are consolidated: drain.
DRAIN_POLICY = POLICY.replace('"warnings": []}',
                              '"warnings": [], "execution": {"nodeConsolidation": "drain"}}')
assert DRAIN_POLICY != POLICY


@pytest.fixture
def env(kubeapi: KubeApi, tmp_path: Path) -> Iterator[Env]:
    install_crds(kubeapi)
    pol = tmp_path / "policies"
    pol.mkdir()
    (pol / "p.rego").write_text(DRAIN_POLICY)
    engine = embedded.EmbeddedEngine(pol)
    try:
        yield Env(kubeapi, settings.Settings(now="2026-03-01T10:00:00Z"), engine,
                  kubeapi.api_client())
    finally:
        engine.close()


def only(batch: Any) -> Any:
    assert len(batch.items) == 1, batch.to_json()
    return batch.items[0]


def unschedulable(e: Env, node: str) -> bool:
    return bool(e.api.get("v1", "Node", node)["spec"].get("unschedulable"))


@pytest.fixture
def nodes(env: Env) -> dict[str, Any]:
    env.api.seed(env.api.node("node-a"), env.api.node("node-b"), env.api.node("node-c"))
    return env.api.seed_workload("cache", 2, node="node-a")


def test_drain_applied(env: Env, nodes: dict[str, Any],
                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="reconciler.audit")
    pods = sorted(p["metadata"]["name"] for p in nodes["pods"])
    env.api.requests.reset()
    item = only(env.run(ng("ng-1", ["node-a"])))
    assert item.phase == "Applied", item.message
    assert unschedulable(env, "node-a") and not unschedulable(env, "node-b")
    assert not any(env.api.exists("v1", "Pod", p) for p in pods)
    rec = env.api.get(f"{GROUP}/{VERSION}", NG, "ng-1")
    prev = rec["status"]["previous"]
    assert prev["cordoned"] == ["node-a"] and sorted(prev["evicted"]) == [
        f"default/{p}" for p in pods]
    assert rec["status"]["conditions"][-1]["reason"] == "Drained"
    log = [(r.verb, r.resource, r.subresource) for r in env.api.requests.log
           if r.verb not in ("get", "list")]
    first_status = log.index(("update", "nodegrouprecommendations", "status"))
    assert first_status < log.index(("patch", "nodes", ""))  # the way back, recorded first
    assert log.count(("create", "pods", "eviction")) == 2
    events = [e for e in env.api.items("v1", "Event", "default") if e["reason"] == "Drained"]
    assert len(events) == 1
    lines = [json.loads(r.getMessage()) for r in caplog.records
             if r.name == "reconciler.audit"]
    assert [ln["action"] for ln in lines] == ["drain"] and lines[0]["cordoned"] == ["node-a"]
    env.api.requests.reset()
    again = only(env.run(ng("ng-1", ["node-a"])))
    assert again.phase == "Applied" and env.api.requests.writes() == []


def test_rollback_uncordons(env: Env, nodes: dict[str, Any]) -> None:
    env.run(ng("ng-1", ["node-a"]))
    assert unschedulable(env, "node-a")
    kubernetes.client.CustomObjectsApi(env.client).delete_cluster_custom_object(
        GROUP, VERSION, "nodegrouprecommendations", "ng-1")
    (item,) = deletions.reconcile(env.store(), env.adapter())
    assert item.phase == "RolledBack" and "uncordoned node-a" in item.message
    assert "not restored" in item.message
    assert not unschedulable(env, "node-a")
    assert not env.api.exists(f"{GROUP}/{VERSION}", NG, "ng-1")  # finalizer released


def test_bare_pod_refuses_the_drain(env: Env, nodes: dict[str, Any]) -> None:
    env.api.seed(env.api.pod("hand-made", node="node-a"))
    item = only(env.run(ng("ng-1", ["node-a"])))
    assert item.phase == "Failed" and "hand-made" in item.message, item.message
    assert not unschedulable(env, "node-a")
    assert env.api.requests.count("create", "pods", "eviction") == 0
    assert all(env.api.exists("v1", "Pod", p["metadata"]["name"]) for p in nodes["pods"])


def test_dry_run(env: Env, nodes: dict[str, Any]) -> None:
    env.api.requests.reset()
    item = only(env.run(ng("ng-1", ["node-a"]), dry_run=True))
    assert item.phase == "Approved" and "node-a: would evict 2 pod(s)" in item.message
    assert env.api.requests.writes() == []
    assert not unschedulable(env, "node-a")


def test_nothing_to_drain_is_not_applicable(env: Env, nodes: dict[str, Any]) -> None:
    doc = ng("ng-1", [])
    doc["spec"]["action"] = "scale"  # resize the group, no node named: GitOps' job
    item = only(env.run(doc))
    assert item.phase == "Failed" and "nodesToRemove" in item.message


def test_gitops_mode_is_not_drained_here(env: Env, nodes: dict[str, Any]) -> None:
    item = only(env.run(ng("ng-1", ["node-a"], source="gitops")))
    assert item.phase == "Failed" and "needs a pull request" in item.message
    assert not unschedulable(env, "node-a")


def test_a_node_already_gone_is_not_in_the_way(env: Env, nodes: dict[str, Any]) -> None:
    item = only(env.run(ng("ng-1", ["node-gone", "node-a"])))
    assert item.phase == "Applied", item.message
    assert "node-gone already gone" in item.message and unschedulable(env, "node-a")
