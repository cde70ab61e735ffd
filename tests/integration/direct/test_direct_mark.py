"""Node consolidation in direct mode by marking (``execution.nodeConsolidation: mark``, and
a policy that does not say): the nodes are marked for the node operator, which removes them.

Through direct.run and the real client against the test API server (CR store there, the
embedded OPA engine with the small test policy of test_direct_apply, whose decision names
no consolidation: marking is the default).

Cases:
- marks only eligible nodes: of a plain node, one annotated karpenter.sh/do-not-disrupt,
  one annotated cluster-autoscaler.kubernetes.io/scale-down-disabled, one tainted
  karpenter.sh/disrupted, one tainted ToBeDeletedByClusterAutoscaler, one with a
  deletionTimestamp and one that does not exist, only the plain node is marked: the taint
  dakr.devzero.io/consolidate:NoSchedule with the Unix time, the label, the annotations
  naming the recommendation and the RFC 3339 time, exactly, its other taints, labels and
  annotations kept; the others are untouched and each is named with its reason in the
  status message and a Warning Event; phase Applying with a Marked condition;
  previous.marked, previous.nodes and previous.markedAt recorded before the node is
  patched (request order); an Event and an audit line; a rerun writes nothing;
- every node skipped: Failed, the reason naming the annotation (and the taint);
- a marked node deleted: the next run says Applied ("the node operator removed ..."),
  with an Event and an audit line, and the one after writes nothing; before the
  deadline with the node still there it stays Applying, the message saying when the
  marks are removed;
- the deadline passed (the batch's clock moved on): the marks are removed (only ours:
  the node's other taint stays), Failed "not removed within 60 minutes: ... marks removed";
  a shorter --mark-deadline setting is honoured;
- rollback (deleting the recommendation, and a rollback request): the marks of this
  recommendation are removed, not a mark another recommendation holds on a node it took
  over, nor another recommendation's mark; RolledBack, the finalizer released;
- dry run: says which nodes would be marked and which skipped, and writes nothing;
- a concurrent update of the node between our read and our patch (the taints changed):
  the guarded patch is refused, the node read again and marked, the other writer's taint
  kept (not clobbered);
- a decision saying drain still drains (the mode is the decision's);
- stale marks: a mark older than the TTL whose recommendation no longer exists or is no
  longer Applying is removed by the sweep; a young one and one whose recommendation is
  Applying stay.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from reconciler.adapters import kube
from reconciler.adapters.opa import embedded
from reconciler.config import settings
from reconciler.direct import apply as direct
from reconciler.direct import deletions, mark, rollback
from reconciler.domain import model
from reconciler.flow import batch as flow
from tests.integration.direct.test_direct_apply import (  # noqa: F401
    FAST,
    GROUP,
    POLICY,
    VERSION,
    Env,
    env,
)

NG = "NodeGroupRecommendation"
T0 = "2026-03-01T10:00:00Z"           # the env's clock: when the marks are made
T0_UNIX = "1772359200"
OTHER_TAINT = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}


def ng(rec_id: str, nodes: Sequence[str]) -> dict[str, Any]:
    """A consolidation of its own node group (two for one group: the newer supersedes)."""
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": NG,
            "spec": {"recommendationId": rec_id, "nodeGroup": f"pool-{rec_id}",
                     "action": "consolidate",
                     "currentNodeCount": 10, "targetNodeCount": 10 - len(nodes),
                     "nodesToRemove": list(nodes)}}


def only(batch: flow.Batch) -> Any:
    assert len(batch.items) == 1, batch.to_json()
    return batch.items[0]


def at(e: Env, when: str, *docs: dict[str, Any], dry_run: bool = False,
       api: kube.Kube | None = None, **direct_settings: Any) -> flow.Batch:
    """One batch with the clock at ``when`` (and direct settings changed)."""
    cfg = dataclasses.replace(e.cfg, now=when, direct=dataclasses.replace(
        e.cfg.direct, **direct_settings))
    return direct.run(list(docs), cfg, e.store(), e.engine, api or e.adapter(),
                      dry_run=dry_run)


def node_obj(e: Env, name: str) -> dict[str, Any]:
    return e.api.get("v1", "Node", name)


def taints(e: Env, name: str) -> list[dict[str, Any]]:
    return list(node_obj(e, name)["spec"].get("taints") or [])


def marked_by(e: Env, name: str) -> str:
    return mark.owner(node_obj(e, name)) if mark.is_marked(node_obj(e, name)) else ""


def rec(e: Env, rec_id: str) -> dict[str, Any]:
    return e.api.get(f"{GROUP}/{VERSION}", NG, rec_id)


def events(e: Env, reason: str) -> list[dict[str, Any]]:
    return [ev for ev in e.api.items("v1", "Event", "default") if ev["reason"] == reason]


def audit(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "reconciler.audit"]


def delete_node(e: Env, name: str) -> None:
    kubernetes.client.CoreV1Api(e.client).delete_node(name)


def with_meta(n: dict[str, Any], **meta: Any) -> dict[str, Any]:
    n["metadata"].update(meta)
    return n


def tainted(n: dict[str, Any], *ts: dict[str, Any]) -> dict[str, Any]:
    n["spec"]["taints"] = list(ts)
    return n


def test_marks_only_eligible_nodes(env: Env, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    caplog.set_level(logging.INFO, logger="reconciler.audit")
    a = env.api
    a.seed(
        with_meta(tainted(a.node("node-a", labels={"zone": "a"}), OTHER_TAINT),
                  annotations={"team": "shop"}),
        with_meta(a.node("node-b"), annotations={mark.DO_NOT_DISRUPT: "true"}),
        with_meta(a.node("node-c"), annotations={mark.SCALE_DOWN_DISABLED: "true"}),
        tainted(a.node("node-d"), {"key": mark.KARPENTER_DISRUPTED, "effect": "NoSchedule"}),
        tainted(a.node("node-e"), {"key": mark.CA_TO_BE_DELETED, "value": "1772350000",
                                   "effect": "NoSchedule"}),
        with_meta(a.node("node-f"), deletionTimestamp="2026-03-01T09:59:00Z",
                  finalizers=["example.com/hold"]))
    others = {f"node-{c}": node_obj(env, f"node-{c}") for c in "bcdef"}
    nodes = ["node-a", "node-b", "node-c", "node-d", "node-e", "node-f", "node-gone"]
    a.requests.reset()
    item = only(env.run(ng("ng-1", nodes)))

    assert item.phase == "Applying", item.message
    node = node_obj(env, "node-a")
    assert node["spec"]["taints"] == [OTHER_TAINT, {
        "key": "dakr.devzero.io/consolidate", "value": T0_UNIX, "effect": "NoSchedule"}]
    assert node["metadata"]["labels"] == {"zone": "a", "dakr.devzero.io/consolidate": "true"}
    assert node["metadata"]["annotations"] == {
        "team": "shop", "dakr.devzero.io/consolidated-by": "ng-1",
        "dakr.devzero.io/marked-at": T0}
    assert not node["spec"].get("unschedulable")  # cordoning is the node operator's
    for name, before in others.items():
        assert node_obj(env, name) == before, name
    for name, why in (("node-b", 'karpenter.sh/do-not-disrupt: "true"'),
                      ("node-c", 'cluster-autoscaler.kubernetes.io/scale-down-disabled: "true"'),
                      ("node-d", "taint karpenter.sh/disrupted"),
                      ("node-e", "taint ToBeDeletedByClusterAutoscaler"),
                      ("node-f", "deletionTimestamp")):
        assert f"{name}: " in item.message and why in item.message, (name, item.message)
    assert "node-gone already gone" in item.message

    st = rec(env, "ng-1")["status"]
    assert st["phase"] == "Applying"
    assert st["previous"] == {"marked": ["node-a"], "nodes": nodes, "markedAt": T0}
    assert [(c["type"], c["status"], c["reason"]) for c in st["conditions"]] == [
        ("Applied", "False", "Marked")]
    assert "node operator" in st["conditions"][0]["message"]
    writes = [(r.verb, r.resource, r.subresource) for r in a.requests.log
              if r.verb not in ("get", "list")]
    assert writes.count(("patch", "nodes", "")) == 1
    assert writes.index(("update", "nodegrouprecommendations", "status")) < writes.index(
        ("patch", "nodes", ""))  # the way back, recorded first
    (marked_ev,) = events(env, "Marked")
    assert "node-a" in marked_ev["message"]
    (skipped_ev,) = events(env, "NodesSkipped")
    assert skipped_ev["type"] == "Warning"
    assert all(n in skipped_ev["message"] for n in ("node-b", "node-c", "node-d", "node-e",
                                                    "node-f"))
    (line,) = audit(caplog)
    assert line["action"] == "mark" and line["marked"] == ["node-a"]
    assert sorted(line["skipped"]) == ["node-b", "node-c", "node-d", "node-e", "node-f"]

    # A rerun (the same file again) follows it: no node is written, the status says
    # what it waits for; the next rerun writes nothing at all.
    a.requests.reset()
    again = only(env.run(ng("ng-1", nodes)))
    assert again.phase == "Applying" and "waiting for the node operator" in again.message
    assert [(r.verb, r.resource) for r in a.requests.writes()] == [
        ("update", "nodegrouprecommendations")]
    a.requests.reset()
    assert only(env.run(ng("ng-1", nodes))).phase == "Applying"
    assert a.requests.writes() == []


def test_every_node_skipped_fails(env: Env) -> None:  # noqa: F811
    a = env.api
    a.seed(with_meta(a.node("node-b"), annotations={mark.DO_NOT_DISRUPT: "true"}),
           tainted(a.node("node-e"), {"key": mark.CA_TO_BE_DELETED, "effect": "NoSchedule"}))
    item = only(env.run(ng("ng-1", ["node-b", "node-e"])))
    assert item.phase == "Failed"
    st = rec(env, "ng-1")["status"]
    assert st["phase"] == "Failed"
    assert 'karpenter.sh/do-not-disrupt: "true"' in st["message"]
    assert "ToBeDeletedByClusterAutoscaler" in st["message"]
    assert st["conditions"][-1]["reason"] == "NodesSkipped"
    assert not mark.is_marked(node_obj(env, "node-b"))
    assert a.requests.count("patch", "nodes") == 0


def test_node_removed_means_applied(env: Env, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    caplog.set_level(logging.INFO, logger="reconciler.audit")
    env.api.seed(env.api.node("node-a"), env.api.node("node-b"))
    doc = ng("ng-1", ["node-a", "node-b"])
    assert only(env.run(doc)).phase == "Applying"
    delete_node(env, "node-a")
    half = only(at(env, "2026-03-01T10:30:00Z", doc))
    assert half.phase == "Applying"
    assert half.message == ("waiting for the node operator to remove node-b (node-a removed); "
                            "the marks are removed at 2026-03-01T11:00:00Z if not")
    assert rec(env, "ng-1")["status"]["message"] == half.message
    delete_node(env, "node-b")
    done = only(at(env, "2026-03-01T10:40:00Z", doc))
    assert done.phase == "Applied"
    assert done.message == "the node operator removed node-a, node-b"
    st = rec(env, "ng-1")["status"]
    assert st["phase"] == "Applied" and st["appliedAt"] == "2026-03-01T10:40:00Z"
    assert st["conditions"][-1]["reason"] == "Removed"
    assert len(events(env, "Consolidated")) == 1
    assert [ln["action"] for ln in audit(caplog)] == ["mark", "consolidated"]
    env.api.requests.reset()
    assert only(env.run(doc)).phase == "Applied" and env.api.requests.writes() == []


@pytest.mark.parametrize(("deadline", "later", "minutes"), [
    (None, "2026-03-01T11:00:00Z", "60 minutes"),
    (120.0, "2026-03-01T10:02:00Z", "2 minutes"),
], ids=["default-60-minutes", "setting"])
def test_deadline_removes_the_marks(env: Env, deadline: float | None, later: str,  # noqa: F811
                                    minutes: str) -> None:
    a = env.api
    a.seed(tainted(a.node("node-a"), OTHER_TAINT), a.node("node-b"))
    doc = ng("ng-1", ["node-a", "node-b"])
    extra = {} if deadline is None else {"mark_deadline": deadline}
    assert only(at(env, T0, doc, **extra)).phase == "Applying"
    delete_node(env, "node-b")
    just_before = (dt.datetime.fromisoformat(later.replace("Z", "+00:00"))
                   - dt.timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert only(at(env, just_before, doc, **extra)).phase == "Applying"
    assert marked_by(env, "node-a") == "ng-1"
    item = only(at(env, later, doc, **extra))
    assert item.phase == "Failed"
    assert item.message == (f"not removed within {minutes}: node-a still present; marks "
                            "removed (node-b removed)")
    assert taints(env, "node-a") == [OTHER_TAINT]  # only ours went
    assert not mark.is_marked(node_obj(env, "node-a"))
    st = rec(env, "ng-1")["status"]
    assert st["phase"] == "Failed" and st["conditions"][-1]["reason"] == "NotRemoved"
    assert [e["type"] for e in events(env, "NotRemoved")] == ["Warning"]


def test_rollback_removes_only_our_marks(env: Env) -> None:  # noqa: F811
    a = env.api
    a.seed(tainted(a.node("node-a"), OTHER_TAINT), a.node("node-b"), a.node("node-c"))
    env.run(ng("ng-1", ["node-a", "node-b"]))
    env.run(ng("ng-2", ["node-c"]))
    assert [marked_by(env, n) for n in ("node-a", "node-b", "node-c")] == [
        "ng-1", "ng-1", "ng-2"]

    # node-b was taken over meanwhile: its mark now names ng-3 and is not ng-1's to remove.
    a.modify("v1", "Node", "node-b", lambda n: n["metadata"]["annotations"].update(
        {mark.BY: "ng-3"}), namespace="")
    kubernetes.client.CustomObjectsApi(env.client).delete_cluster_custom_object(
        GROUP, VERSION, "nodegrouprecommendations", "ng-1")
    (item,) = deletions.reconcile(env.store(), env.adapter())
    assert item.phase == "RolledBack"
    assert item.message.startswith("removed the consolidation marks from node-a;")
    assert taints(env, "node-a") == [OTHER_TAINT]
    assert not mark.is_marked(node_obj(env, "node-a"))
    assert marked_by(env, "node-b") == "ng-3"
    assert [t["key"] for t in taints(env, "node-b")] == [mark.TAINT]
    assert marked_by(env, "node-c") == "ng-2"
    assert not a.exists(f"{GROUP}/{VERSION}", NG, "ng-1")  # finalizer released

    # A rollback asked for (reconciler rollback, the platform's request) does the same.
    done = rollback.rollback("ng-2", env.store(), env.adapter(), kind=model.NODE_GROUP)
    assert done.phase == "RolledBack" and "node-c" in done.message
    assert not mark.is_marked(node_obj(env, "node-c"))
    assert rec(env, "ng-2")["status"]["conditions"][-1]["reason"] == "Unmarked"


def test_dry_run_changes_nothing(env: Env) -> None:  # noqa: F811
    a = env.api
    a.seed(a.node("node-a"), with_meta(a.node("node-b"), annotations={
        mark.SCALE_DOWN_DISABLED: "true"}))
    a.requests.reset()
    item = only(env.run(ng("ng-1", ["node-a", "node-b", "node-gone"]), dry_run=True))
    assert item.phase == "Approved"
    assert item.message == (
        "dry run: would mark node-a for the node operator; would skip node-b: opts out: "
        'annotated cluster-autoscaler.kubernetes.io/scale-down-disabled: "true"; '
        "node-gone already gone")
    assert a.requests.writes() == []
    assert not mark.is_marked(node_obj(env, "node-a"))


class _Interleaved(kube.Kube):
    """Another writer taints the node between our read and our first patch."""

    def __init__(self, e: Env) -> None:
        super().__init__(e.client, FAST, limiter=kube.RateLimiter(1000, 1000))
        self.e, self.raced = e, False

    def patch_node(self, name: str, ops: Any) -> Any:
        if not self.raced:
            self.raced = True
            self.e.api.modify("v1", "Node", name, lambda n: n["spec"]["taints"].append(
                {"key": "maintenance", "effect": "NoSchedule"}), namespace="")
        return super().patch_node(name, ops)


def test_concurrent_node_update_is_retried_not_clobbered(env: Env) -> None:  # noqa: F811
    # Labels and annotations present: the guard is the test of the taints list read.
    env.api.seed(with_meta(tainted(env.api.node("node-a"), OTHER_TAINT),
                           annotations={"team": "shop"}))
    env.api.requests.reset()
    api = _Interleaved(env)
    item = only(env.run(ng("ng-1", ["node-a"]), api=api))
    assert api.raced and item.phase == "Applying", item.message
    assert [t["key"] for t in taints(env, "node-a")] == [
        "dedicated", "maintenance", mark.TAINT]
    assert marked_by(env, "node-a") == "ng-1"
    assert env.api.requests.count("patch", "nodes") == 2  # refused once, then marked
    assert rec(env, "ng-1")["status"]["previous"]["marked"] == ["node-a"]


def test_drain_decision_still_drains(kubeapi: Any, tmp_path: Path) -> None:
    from tests.crds import install_crds

    install_crds(kubeapi)
    pol = tmp_path / "policies"
    pol.mkdir()
    (pol / "p.rego").write_text(POLICY.replace(
        '"warnings": []}', '"warnings": [], "execution": {"nodeConsolidation": "drain"}}'))
    engine = embedded.EmbeddedEngine(pol)
    try:
        e = Env(kubeapi, settings.Settings(now=T0), engine, kubeapi.api_client())
        kubeapi.seed(kubeapi.node("node-a"))
        item = only(e.run(ng("ng-1", ["node-a"])))
        assert item.phase == "Applied" and "drained 1 node(s)" in item.message
        assert node_obj(e, "node-a")["spec"]["unschedulable"] is True
        assert not mark.is_marked(node_obj(e, "node-a"))
    finally:
        engine.close()


def test_stale_marks_are_swept(env: Env) -> None:  # noqa: F811
    a = env.api
    a.seed(a.node("node-live"), a.node("node-young"), a.node("node-old"),
           a.node("node-failed"), tainted(a.node("node-plain"), OTHER_TAINT))
    # node-live: marked by ng-live, still Applying (two days later: its deadline's
    # business, not the sweep's); the others are marked here by hand as a recommendation
    # long gone would have left them.
    at(env, "2026-02-27T10:00:00Z", ng("ng-live", ["node-live"]))
    assert rec(env, "ng-live")["status"]["phase"] == "Applying"
    hand = env.adapter()
    for name, owner, when in (("node-young", "ng-gone", "2026-03-01T09:00:00Z"),
                              ("node-old", "ng-gone", "2026-02-27T10:00:00Z"),
                              ("node-failed", "ng-failed", "2026-02-27T10:00:00Z")):
        n = hand.refresh_node(name)
        assert n is not None
        hand.patch_node(name, mark.mark_ops(n, owner, dt.datetime.fromisoformat(
            when.replace("Z", "+00:00"))))
    a.seed(tainted(a.node("node-x"), OTHER_TAINT))
    at(env, "2026-02-27T10:00:00Z", ng("ng-failed", ["node-x"]))
    a.modify(f"{GROUP}/{VERSION}", NG, "ng-failed",
             lambda r: r["status"].update(phase="Failed"), namespace="")

    store_ = env.store()

    def phase_of(rec_id: str) -> str | None:
        got = store_.get(model.NODE_GROUP, rec_id)
        return got.phase if got is not None else None

    now = dt.datetime(2026, 3, 1, 10, 0, tzinfo=dt.UTC)
    removed = mark.sweep(env.adapter(), phase_of, now, 24 * 3600.0)
    assert sorted(s.node for s in removed) == ["node-failed", "node-old", "node-x"]
    assert not mark.is_marked(node_obj(env, "node-old"))
    assert not mark.is_marked(node_obj(env, "node-failed"))
    assert marked_by(env, "node-young") == "ng-gone"
    assert marked_by(env, "node-live") == "ng-live"
    assert taints(env, "node-plain") == [OTHER_TAINT]
    assert taints(env, "node-x") == [OTHER_TAINT]
    # Nothing left to sweep: a second pass writes nothing.
    a.requests.reset()
    assert mark.sweep(env.adapter(), phase_of, now, 24 * 3600.0) == []
    assert a.requests.writes() == []
