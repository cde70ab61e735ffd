"""The pure parts of marking nodes for the node operator (reconciler/direct/mark.py).

Cases (tables):
- classify: a plain node is eligible; gone; each opt-out annotation ("true" only: "false"
  and other values do not opt out); each sign that another actor removes it (the
  karpenter.sh/disrupted and ToBeDeletedByClusterAutoscaler taints, a deletionTimestamp);
  already marked by this recommendation; marked by another recommendation in progress
  (skipped) or abandoned (taken over); an opt-out wins over our own mark;
- mark_ops: the exact patch for a node without taints, labels or annotations (guarded by
  the resourceVersion), with them (guarded by a test of the taints read, other taints,
  labels and annotations kept), with a stale taint of ours (replaced, not doubled); the
  taint's value is the Unix time, the annotation the RFC 3339 time; applied to the node
  it yields exactly the mark, and applied to a node whose taints changed since it fails;
- unmark_ops: removes only the mark (other taints, labels, annotations stay), the taints
  list goes when ours was the only one; nothing for a node marked by another
  recommendation or not marked; an ownerless mark is guarded by the resourceVersion; a
  node whose owner annotation changed since the read refuses the patch;
- stale (injected clock): a mark younger than the TTL stays; an old one whose
  recommendation is gone, Failed or RolledBack goes; one still Applying stays however old;
  an ownerless one and one of unknown age go; the time comes from the annotation, else
  the taint's value;
- seconds_left: before, at and after the deadline; not a followed recommendation -> None.
"""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest

from reconciler.direct import mark
from reconciler.domain import model
from tests.fakes.kubeapi import patch as jsonpatch

JSON = dict[str, Any]
T0 = dt.datetime(2026, 3, 1, 10, 0, 0, tzinfo=dt.UTC)
T0_UNIX = int(T0.timestamp())


def node(name: str = "node-a", *, taints: list[JSON] | None = None,
         annotations: dict[str, str] | None = None, labels: dict[str, str] | None = None,
         deleting: bool = False, rv: str = "41") -> JSON:
    meta: JSON = {"name": name, "resourceVersion": rv}
    if annotations is not None:
        meta["annotations"] = dict(annotations)
    if labels is not None:
        meta["labels"] = dict(labels)
    if deleting:
        meta["deletionTimestamp"] = "2026-03-01T09:00:00Z"
    spec: JSON = {}
    if taints is not None:
        spec["taints"] = copy.deepcopy(taints)
    return {"apiVersion": "v1", "kind": "Node", "metadata": meta, "spec": spec}


def ours(rec_id: str = "ng-1", at: dt.datetime = T0) -> JSON:
    """A node carrying the mark of ``rec_id`` made at ``at``."""
    return node(taints=[{"key": mark.TAINT, "value": str(int(at.timestamp())),
                         "effect": "NoSchedule"}],
                annotations={mark.BY: rec_id, mark.AT: at.strftime("%Y-%m-%dT%H:%M:%SZ")},
                labels={mark.LABEL: "true"})


OTHER_TAINT = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}


def active(rec_id: str) -> bool:
    return rec_id == "ng-busy"


# --------------------------------------------------------------------------- classify


@pytest.mark.parametrize(("the_node", "fate", "why"), [
    (node(), mark.MARK, "eligible"),
    (node(taints=[OTHER_TAINT], annotations={"team": "a"}), mark.MARK, "eligible"),
    (None, mark.GONE, "already removed"),
    (node(annotations={mark.DO_NOT_DISRUPT: "true"}), mark.SKIP,
     'annotated karpenter.sh/do-not-disrupt: "true"'),
    (node(annotations={mark.SCALE_DOWN_DISABLED: "true"}), mark.SKIP,
     'annotated cluster-autoscaler.kubernetes.io/scale-down-disabled: "true"'),
    (node(annotations={mark.DO_NOT_DISRUPT: "false",
                       mark.SCALE_DOWN_DISABLED: "yes"}), mark.MARK, "eligible"),
    (node(taints=[{"key": mark.KARPENTER_DISRUPTED, "effect": "NoSchedule"}]), mark.SKIP,
     "being removed by Karpenter (taint karpenter.sh/disrupted)"),
    (node(taints=[{"key": mark.CA_TO_BE_DELETED, "value": "1772359200",
                   "effect": "NoSchedule"}]), mark.SKIP,
     "being removed by the cluster autoscaler (taint ToBeDeletedByClusterAutoscaler)"),
    (node(deleting=True), mark.SKIP, "being deleted (deletionTimestamp set)"),
    (ours("ng-1"), mark.MARKED, "already marked by this recommendation"),
    (ours("ng-busy"), mark.SKIP, "already marked by recommendation ng-busy"),
    (ours("ng-done"), mark.MARK, "eligible"),
    (node(annotations={mark.BY: "ng-busy"}), mark.MARK, "eligible"),  # no taint: no mark
    ({**ours("ng-1"), "metadata": {**ours("ng-1")["metadata"], "annotations": {
        mark.BY: "ng-1", mark.DO_NOT_DISRUPT: "true"}}}, mark.SKIP, "do-not-disrupt"),
], ids=["plain", "other-taints", "gone", "karpenter-opt-out", "ca-opt-out",
        "not-true-values", "karpenter-disrupted", "ca-to-be-deleted", "deleting", "ours",
        "other-active", "other-abandoned", "annotation-only", "opt-out-wins"])
def test_classify(the_node: JSON | None, fate: str, why: str) -> None:
    got = mark.classify("node-a", the_node, "ng-1", active)
    assert (got.node, got.fate) == ("node-a", fate), got
    assert why in got.why


# --------------------------------------------------------------------------- mark_ops


TAINT_AT_T0 = {"key": mark.TAINT, "value": str(T0_UNIX), "effect": "NoSchedule"}
MARK_ANNOTATIONS = {mark.BY: "ng-1", mark.AT: "2026-03-01T10:00:00Z"}


@pytest.mark.parametrize(("before", "ops"), [
    (node(), [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "41"},
        {"op": "add", "path": "/spec/taints", "value": [TAINT_AT_T0]},
        {"op": "add", "path": "/metadata/labels", "value": {mark.LABEL: "true"}},
        {"op": "add", "path": "/metadata/annotations", "value": MARK_ANNOTATIONS}]),
    (node(taints=[OTHER_TAINT], labels={"zone": "a"}, annotations={"team": "a"}), [
        {"op": "test", "path": "/spec/taints", "value": [OTHER_TAINT]},
        {"op": "replace", "path": "/spec/taints", "value": [OTHER_TAINT, TAINT_AT_T0]},
        {"op": "add", "path": "/metadata/labels/dakr.devzero.io~1consolidate",
         "value": "true"},
        {"op": "add", "path": "/metadata/annotations/dakr.devzero.io~1consolidated-by",
         "value": "ng-1"},
        {"op": "add", "path": "/metadata/annotations/dakr.devzero.io~1marked-at",
         "value": "2026-03-01T10:00:00Z"}]),
    (node(taints=[{"key": mark.TAINT, "value": "1", "effect": "NoSchedule"}, OTHER_TAINT],
          labels={}, annotations={}), [
        {"op": "test", "path": "/spec/taints",
         "value": [{"key": mark.TAINT, "value": "1", "effect": "NoSchedule"}, OTHER_TAINT]},
        {"op": "replace", "path": "/spec/taints", "value": [OTHER_TAINT, TAINT_AT_T0]},
        {"op": "add", "path": "/metadata/labels/dakr.devzero.io~1consolidate",
         "value": "true"},
        {"op": "add", "path": "/metadata/annotations/dakr.devzero.io~1consolidated-by",
         "value": "ng-1"},
        {"op": "add", "path": "/metadata/annotations/dakr.devzero.io~1marked-at",
         "value": "2026-03-01T10:00:00Z"}]),
    (node(taints=[], labels=None, annotations={"team": "a"}), [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "41"},
        {"op": "test", "path": "/spec/taints", "value": []},
        {"op": "replace", "path": "/spec/taints", "value": [TAINT_AT_T0]},
        {"op": "add", "path": "/metadata/labels", "value": {mark.LABEL: "true"}},
        {"op": "add", "path": "/metadata/annotations/dakr.devzero.io~1consolidated-by",
         "value": "ng-1"},
        {"op": "add", "path": "/metadata/annotations/dakr.devzero.io~1marked-at",
         "value": "2026-03-01T10:00:00Z"}]),
], ids=["bare", "with-maps", "stale-own-taint", "labels-missing"])
def test_mark_ops(before: JSON, ops: list[JSON]) -> None:
    got = mark.mark_ops(before, "ng-1", T0)
    assert got == ops
    after = jsonpatch.apply_json_patch(before, got)
    taints = after["spec"]["taints"]
    assert [t for t in taints if t["key"] == mark.TAINT] == [TAINT_AT_T0]
    assert [t for t in taints if t["key"] != mark.TAINT] == [
        t for t in before["spec"].get("taints", []) if t["key"] != mark.TAINT]
    assert after["metadata"]["labels"][mark.LABEL] == "true"
    assert {k: after["metadata"]["annotations"][k] for k in MARK_ANNOTATIONS} == \
        MARK_ANNOTATIONS
    for field in ("labels", "annotations"):
        for k, v in (before["metadata"].get(field) or {}).items():
            assert after["metadata"][field][k] == v
    assert mark.classify("node-a", after, "ng-1").fate == mark.MARKED


def test_mark_ops_refused_after_a_concurrent_change() -> None:
    read = node(taints=[OTHER_TAINT], labels={}, annotations={})
    ops = mark.mark_ops(read, "ng-1", T0)
    now = copy.deepcopy(read)
    now["spec"]["taints"].append({"key": "maintenance", "effect": "NoSchedule"})
    with pytest.raises(jsonpatch.JsonPatchFailed):
        jsonpatch.apply_json_patch(now, ops)
    bare = node()
    moved = copy.deepcopy(bare)
    moved["metadata"]["resourceVersion"] = "42"
    with pytest.raises(jsonpatch.JsonPatchFailed):
        jsonpatch.apply_json_patch(moved, mark.mark_ops(bare, "ng-1", T0))


# --------------------------------------------------------------------------- unmark_ops


def with_extras(n: JSON) -> JSON:
    n = copy.deepcopy(n)
    n["spec"]["taints"].insert(0, OTHER_TAINT)
    n["metadata"]["labels"]["zone"] = "a"
    n["metadata"]["annotations"]["team"] = "a"
    return n


@pytest.mark.parametrize(("before", "rec_id", "after"), [
    (ours("ng-1"), "ng-1", {"spec": {}, "labels": {}, "annotations": {}}),
    (with_extras(ours("ng-1")), "ng-1", {"spec": {"taints": [OTHER_TAINT]},
                                         "labels": {"zone": "a"},
                                         "annotations": {"team": "a"}}),
    (ours("ng-2"), "ng-1", None),
    (node(taints=[OTHER_TAINT]), "ng-1", None),
    (node(taints=[TAINT_AT_T0], labels={mark.LABEL: "true"}), "",
     {"spec": {}, "labels": {}, "annotations": None}),
], ids=["only-ours", "others-kept", "another-recommendation", "not-marked", "ownerless"])
def test_unmark_ops(before: JSON, rec_id: str, after: JSON | None) -> None:
    ops = mark.unmark_ops(before, rec_id)
    if after is None:
        assert ops == []
        return
    got = jsonpatch.apply_json_patch(before, ops)
    assert got["spec"] == after["spec"]
    assert got["metadata"].get("labels") == after["labels"]
    assert got["metadata"].get("annotations") == after["annotations"]
    assert not mark.is_marked(got)
    if rec_id:
        assert {"op": "test", "path": "/metadata/annotations/dakr.devzero.io~1consolidated-by",
                "value": rec_id} in ops
    else:
        assert ops[0] == {"op": "test", "path": "/metadata/resourceVersion", "value": "41"}


def test_unmark_ops_refused_when_the_owner_changed() -> None:
    read = ours("ng-1")
    ops = mark.unmark_ops(read, "ng-1")
    now = copy.deepcopy(read)
    now["metadata"]["annotations"][mark.BY] = "ng-2"  # taken over meanwhile
    with pytest.raises(jsonpatch.JsonPatchFailed):
        jsonpatch.apply_json_patch(now, ops)


# --------------------------------------------------------------------------- stale


HOUR = 3600.0
TTL = 24 * HOUR
PHASES = {"ng-applying": model.APPLYING, "ng-failed": model.FAILED,
          "ng-rolled-back": model.ROLLED_BACK}


def aged(rec_id: str, hours: float, *, annotation: bool = True) -> JSON:
    n = ours(rec_id, T0 - dt.timedelta(hours=hours))
    n["metadata"]["name"] = f"{rec_id or 'none'}-{hours:g}h"
    if not annotation:
        del n["metadata"]["annotations"][mark.AT]
    if not rec_id:
        del n["metadata"]["annotations"][mark.BY]
    return n


@pytest.mark.parametrize(("the_node", "is_stale", "why"), [
    (aged("ng-gone", 23), False, ""),
    (aged("ng-gone", 25), True, "its recommendation ng-gone no longer exists"),
    (aged("ng-failed", 25), True, "its recommendation ng-failed is Failed"),
    (aged("ng-rolled-back", 48), True, "is RolledBack"),
    (aged("ng-applying", 100), False, ""),
    (aged("", 25), True, "no recommendation owns it"),
    (aged("ng-gone", 25, annotation=False), True, "marked 25.0 h ago"),   # taint's time
    (aged("ng-gone", 1, annotation=False), False, ""),
    ({**aged("ng-gone", 1, annotation=False), "spec": {"taints": [
        {"key": mark.TAINT, "value": "garbage", "effect": "NoSchedule"}]}}, True,
     "unknown time"),
    (node(taints=[OTHER_TAINT]), False, ""),
], ids=["young", "owner-gone", "owner-failed", "owner-rolled-back", "owner-applying",
        "ownerless", "taint-time-old", "taint-time-young", "unknown-age", "not-marked"])
def test_stale(the_node: JSON, is_stale: bool, why: str) -> None:
    got = mark.stale([the_node], PHASES.get, T0, TTL)
    assert bool(got) == is_stale, got
    if is_stale:
        assert got[0].node == the_node["metadata"]["name"]
        assert got[0].owner == mark.owner(the_node)
        assert why in got[0].why


def test_stale_keeps_the_order_and_skips_the_rest() -> None:
    nodes = [aged("ng-gone", 30), aged("ng-applying", 30), aged("ng-failed", 2),
             aged("ng-failed", 26)]
    assert [s.node for s in mark.stale(nodes, PHASES.get, T0, TTL)] == [
        "ng-gone-30h", "ng-failed-26h"]


# --------------------------------------------------------------------------- seconds_left


def followed(marked_at: str = "2026-03-01T10:00:00Z", phase: str = model.APPLYING) -> JSON:
    return {"phase": phase, "previous": {"marked": ["node-a"], "nodes": ["node-a"],
                                         "markedAt": marked_at}}


@pytest.mark.parametrize(("rec_status", "minutes_later", "left"), [
    (followed(), 0, 3600.0),
    (followed(), 59, 60.0),
    (followed(), 60, 0.0),
    (followed(), 90, 0.0),
    (followed(phase=model.APPLIED), 0, None),
    ({"phase": model.APPLYING, "previous": {"cordoned": ["node-a"]}}, 0, None),
    ({"phase": model.APPLYING}, 0, None),
], ids=["at-mark", "a-minute-left", "at-deadline", "past", "applied", "a-drain",
        "nothing-recorded"])
def test_seconds_left(rec_status: JSON, minutes_later: int, left: float | None) -> None:
    now = T0 + dt.timedelta(minutes=minutes_later)
    assert mark.seconds_left(rec_status, now, 3600.0) == left
