"""Node consolidation by marking: the nodes a NodeGroupRecommendation removes are marked for
the cluster's node operator (Karpenter, the cluster autoscaler, or the platform's own), which
cordons, drains and removes them; nothing here cordons, evicts or deletes.

A mark is three things on the Node, written in one JSON Patch:

- the taint ``dakr.devzero.io/consolidate:NoSchedule`` whose value is the Unix time of the
  mark (as the cluster autoscaler's ``ToBeDeletedByClusterAutoscaler`` carries), so that
  nothing new is scheduled there meanwhile;
- the annotations ``dakr.devzero.io/consolidated-by: <recommendationId>`` (whose mark it
  is: only that recommendation ever removes it) and ``dakr.devzero.io/marked-at: <RFC 3339>``;
- the label ``dakr.devzero.io/consolidate: "true"``, so that the operator lists and watches
  the marked nodes alone (taints cannot be selected on), never the whole cluster's.

Rules:

- a node that opts out (annotated ``karpenter.sh/do-not-disrupt: "true"`` or
  ``cluster-autoscaler.kubernetes.io/scale-down-disabled: "true"``), that another actor is
  already removing (tainted ``karpenter.sh/disrupted`` or ``ToBeDeletedByClusterAutoscaler``,
  or with a ``deletionTimestamp``) or that another recommendation in progress has marked is
  never marked: it is skipped and named (``classify``); a node already gone counts as removed;
- every write is guarded by ``test`` operations on the taints read (or the resourceVersion
  when there are none), so a concurrent change to the node is re-read and decided again
  (``retry.on_conflict``), never overwritten;
- the marked nodes are recorded in the recommendation's status (``previous.marked``,
  ``previous.nodes``, ``previous.markedAt``) before the first mark, so a rollback, a
  restart or the stale-mark sweep can always find them;
- the recommendation stays Applying until every marked node is gone (then Applied), or the
  deadline passes (``DirectSettings.mark_deadline``; the marks are removed, Failed);
- marks left behind block autoscalers (kubernetes/autoscaler#5657): ``sweep`` removes marks
  older than a TTL whose recommendation is no longer Applying.

The pure parts (``classify``, ``mark_ops``, ``unmark_ops``, ``stale``, ``seconds_left``)
take the objects as read and are tested without a server.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from reconciler.adapters import kube
from reconciler.adapters.store import port as store
from reconciler.direct import cache
from reconciler.domain import clock, errors, model, retry, status
from reconciler.domain import text as txt
from reconciler.flow import batch as flow
from reconciler.flow import report

log = logging.getLogger(__name__)
audit_log = logging.getLogger("reconciler.audit")

JSON = dict[str, Any]

TAINT = "dakr.devzero.io/consolidate"
EFFECT = "NoSchedule"
LABEL = TAINT                                  # value "true": what list and watch select
BY = "dakr.devzero.io/consolidated-by"         # the recommendation id the mark belongs to
AT = "dakr.devzero.io/marked-at"               # RFC 3339 time of the mark
SELECTOR = LABEL                               # label selector of the marked nodes

# Opt-outs (node annotations) and the signs that another actor is removing the node.
DO_NOT_DISRUPT = "karpenter.sh/do-not-disrupt"
SCALE_DOWN_DISABLED = "cluster-autoscaler.kubernetes.io/scale-down-disabled"
KARPENTER_DISRUPTED = "karpenter.sh/disrupted"
CA_TO_BE_DELETED = "ToBeDeletedByClusterAutoscaler"
_REMOVERS = {KARPENTER_DISRUPTED: "Karpenter", CA_TO_BE_DELETED: "the cluster autoscaler"}

# What classify says of one node.
MARK = "mark"        # eligible, not marked yet: mark it
MARKED = "marked"    # already carries this recommendation's mark
SKIP = "skip"        # must not be marked (``why`` names the annotation or taint)
GONE = "gone"        # no such node: counts as removed

NOTE = ("the node operator (Karpenter, the cluster autoscaler or the platform's own) is "
        "expected to cordon, drain and remove them")


# --------------------------------------------------------------------------- pure parts


@dataclass(frozen=True)
class Fate:
    node: str
    fate: str
    why: str = ""


def _meta(node: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = node.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _map(node: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    got = _meta(node).get(key)
    return got if isinstance(got, Mapping) else {}


def _taints(node: Mapping[str, Any]) -> list[Any] | None:
    spec = node.get("spec")
    taints = spec.get("taints") if isinstance(spec, Mapping) else None
    return taints if isinstance(taints, list) else None


def _has_taint(node: Mapping[str, Any], key: str) -> bool:
    return any(isinstance(t, Mapping) and t.get("key") == key for t in _taints(node) or [])


def owner(node: Mapping[str, Any]) -> str:
    """The recommendation whose mark the node carries ("" for none)."""
    return str(_map(node, "annotations").get(BY) or "")


def is_marked(node: Mapping[str, Any]) -> bool:
    """Any part of a mark: our taint, label or owner annotation."""
    return (_has_taint(node, TAINT) or LABEL in _map(node, "labels")
            or BY in _map(node, "annotations"))


def classify(name: str, node: Mapping[str, Any] | None, rec_id: str,
             owner_active: Callable[[str], bool] = lambda _: True) -> Fate:
    """Whether recommendation ``rec_id`` may mark node ``name`` (as read, None: gone), and why
    not. ``owner_active(id)``: whether another recommendation that marked it is still
    in progress (its mark is then left alone; an abandoned one is taken over)."""
    if node is None:
        return Fate(name, GONE, "already removed")
    annotations = _map(node, "annotations")
    if _meta(node).get("deletionTimestamp"):
        return Fate(name, SKIP, "already being deleted (deletionTimestamp set)")
    for key, who in _REMOVERS.items():
        if _has_taint(node, key):
            return Fate(name, SKIP, f"already being removed by {who} (taint {key})")
    for key in (DO_NOT_DISRUPT, SCALE_DOWN_DISABLED):
        if str(annotations.get(key, "")) == "true":
            return Fate(name, SKIP, f'opts out: annotated {key}: "true"')
    by = owner(node)
    if by == rec_id and _has_taint(node, TAINT):
        return Fate(name, MARKED, "already marked by this recommendation")
    if by and by != rec_id and _has_taint(node, TAINT) and owner_active(by):
        return Fate(name, SKIP, f"already marked by recommendation {by}")
    return Fate(name, MARK, "eligible")


def _pointer(*parts: str) -> str:
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


def taint(at_unix: int) -> JSON:
    return {"key": TAINT, "value": str(at_unix), "effect": EFFECT}


def mark_ops(node: Mapping[str, Any], rec_id: str, when: dt.datetime) -> list[JSON]:
    """The JSON Patch that marks ``node`` (as read) for ``rec_id`` at ``when``.

    Guarded by a ``test`` of the taints read; where there is no taints list (RFC 6902 cannot
    test an absent member) or the labels or annotations map is absent (adding it whole
    would replace one written meanwhile), by the resourceVersion read instead."""
    meta = _meta(node)
    ours = taint(int(when.timestamp()))
    ops: list[JSON] = []
    guard_version = False
    taints = _taints(node)
    spec = node.get("spec")
    if taints is not None:
        ops.append({"op": "test", "path": "/spec/taints", "value": taints})
        kept = [t for t in taints if not (isinstance(t, Mapping) and t.get("key") == TAINT)]
        ops.append({"op": "replace", "path": "/spec/taints", "value": [*kept, ours]})
    elif isinstance(spec, Mapping):
        guard_version = True
        ops.append({"op": "add", "path": "/spec/taints", "value": [ours]})
    else:
        guard_version = True
        ops.append({"op": "add", "path": "/spec", "value": {"taints": [ours]}})
    for field, values in (("labels", {LABEL: "true"}),
                          ("annotations", {BY: rec_id, AT: clock.rfc3339(when)})):
        if isinstance(meta.get(field), Mapping):
            ops.extend({"op": "add", "path": _pointer("metadata", field, k), "value": v}
                       for k, v in values.items())
        else:
            guard_version = True
            ops.append({"op": "add", "path": _pointer("metadata", field), "value": values})
    if guard_version:
        ops.insert(0, {"op": "test", "path": "/metadata/resourceVersion",
                       "value": meta.get("resourceVersion")})
    return ops


def unmark_ops(node: Mapping[str, Any], rec_id: str) -> list[JSON]:
    """The JSON Patch that removes the mark of ``rec_id`` from ``node`` (as read); empty
    when the node carries no mark of that recommendation. ``rec_id`` "": a mark nobody
    owns (the owner annotation is gone), guarded by the resourceVersion read.

    Only the mark goes: the owner annotation is tested, so a mark another recommendation
    put there meanwhile is never removed, and other taints, labels and annotations stay."""
    meta = _meta(node)
    annotations = _map(node, "annotations")
    if owner(node) != rec_id or not is_marked(node):
        return []
    ops: list[JSON] = []
    if not rec_id:
        ops.append({"op": "test", "path": "/metadata/resourceVersion",
                    "value": meta.get("resourceVersion")})
    taints = _taints(node)
    if taints is not None and _has_taint(node, TAINT):
        kept = [t for t in taints if not (isinstance(t, Mapping) and t.get("key") == TAINT)]
        ops.append({"op": "test", "path": "/spec/taints", "value": taints})
        ops.append({"op": "replace", "path": "/spec/taints", "value": kept} if kept
                   else {"op": "remove", "path": "/spec/taints"})
    if LABEL in _map(node, "labels"):
        ops.append({"op": "remove", "path": _pointer("metadata", "labels", LABEL)})
    if rec_id:
        ops.append({"op": "test", "path": _pointer("metadata", "annotations", BY),
                    "value": rec_id})
        ops.append({"op": "remove", "path": _pointer("metadata", "annotations", BY)})
    if AT in annotations:
        ops.append({"op": "remove", "path": _pointer("metadata", "annotations", AT)})
    return ops


def marked_at(node: Mapping[str, Any]) -> dt.datetime | None:
    """When the node was marked: the time annotation, else the taint's Unix time."""
    text = str(_map(node, "annotations").get(AT) or "")
    if text:
        try:
            return clock.parse_rfc3339(text)
        except ValueError:
            pass
    for t in _taints(node) or []:
        if isinstance(t, Mapping) and t.get("key") == TAINT:
            try:
                return dt.datetime.fromtimestamp(int(str(t.get("value"))), dt.UTC)
            except (TypeError, ValueError, OverflowError, OSError):
                return None
    return None


@dataclass(frozen=True)
class Stale:
    node: str
    owner: str
    why: str


def stale(nodes: Sequence[Mapping[str, Any]], phase_of: Callable[[str], str | None],
          now: dt.datetime, ttl: float) -> list[Stale]:
    """The marks to remove: older than ``ttl`` seconds (a mark of unknown age counts as
    old) and whose recommendation is no longer Applying (``phase_of``: its phase, None when
    it no longer exists). A mark of a recommendation still Applying is its deadline's
    business, however old."""
    out: list[Stale] = []
    for node in nodes:
        if not is_marked(node):
            continue
        at = marked_at(node)
        age = (now - at).total_seconds() if at is not None else None
        if age is not None and age < ttl:
            continue
        by = owner(node)
        phase = phase_of(by) if by else None
        if phase == model.APPLYING:
            continue
        old = f"marked {age / 3600:.1f} h ago" if age is not None else "marked at an unknown time"
        why = (f"{old}; its recommendation {by} is {phase}" if phase is not None
               else f"{old}; its recommendation {by} no longer exists" if by
               else f"{old}; no recommendation owns it")
        out.append(Stale(str(_meta(node).get("name", "")), by, why))
    return out


def seconds_left(rec_status: Mapping[str, Any], now: dt.datetime,
                 deadline: float) -> float | None:
    """Seconds until the deadline of a recommendation whose marks are followed (Applying,
    ``previous.markedAt``); None for any other."""
    prev = rec_status.get("previous")
    if rec_status.get("phase") != model.APPLYING or not isinstance(prev, Mapping) \
            or "marked" not in prev or not prev.get("markedAt"):
        return None
    try:
        start = clock.parse_rfc3339(str(prev["markedAt"]))
    except ValueError:
        return 0.0
    return max(0.0, (start - now).total_seconds() + deadline)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:g} minute{'' if seconds == 60 else 's'}"


# --------------------------------------------------------------------------- node writes


def mark_node(api: kube.Kube, name: str, rec_id: str, when: dt.datetime,
              owner_active: Callable[[str], bool] = lambda _: True,
              read: Mapping[str, Any] | None = None) -> Fate:
    """Mark one node, read again and decided again on every try (a concurrent change to
    the node fails the guarded patch and is retried a bounded number of times); ``read``:
    the node as just read, for the first try."""
    def write(attempt: int) -> Fate:
        node = read if attempt == 0 and read is not None else api.refresh_node(name)
        fate = classify(name, node, rec_id, owner_active)
        if fate.fate != MARK:
            return fate
        assert node is not None
        try:
            api.patch_node(name, mark_ops(node, rec_id, when))
        except errors.NotFoundError:
            return Fate(name, GONE, "removed while being marked")
        log.info("marked node %s for %s", txt.one_line(name), txt.one_line(rec_id))
        return Fate(name, MARKED, "marked")

    return retry.on_conflict(write, f"node {name}")


def unmark_node(api: kube.Kube, name: str, rec_id: str) -> bool:
    """Remove the mark of ``rec_id`` from one node; False when there was none of its own
    (or the node is gone)."""
    def write(_: int) -> bool:
        node = api.refresh_node(name)
        ops = unmark_ops(node, rec_id) if node is not None else []
        if not ops:
            return False
        try:
            api.patch_node(name, ops)
        except errors.NotFoundError:
            return False
        log.info("removed the consolidation mark of %s from node %s", txt.one_line(rec_id),
                 txt.one_line(name))
        return True

    return retry.on_conflict(write, f"node {name}")


def unmark_all(api: kube.Kube, nodes: Sequence[str], rec_id: str) -> list[str]:
    """Remove the marks of ``rec_id`` from these nodes; the nodes that had one."""
    return [n for n in nodes if unmark_node(api, n, rec_id)]


# --------------------------------------------------------------------------- a recommendation


def _audit(action: str, api: kube.Kube, rec: model.Recommendation, decision_id: str,
           **fields: Any) -> None:
    audit_log.info(json.dumps({
        "event": "change", "action": action, "who": api.who, "recommendationId": rec.id,
        "decisionId": decision_id,
        "object": {"kind": "NodeGroup", "name": getattr(rec, "nodeGroup", "")},
        "at": clock.rfc3339(), **fields}, sort_keys=True))


def _skips(fates: Sequence[Fate]) -> str:
    return "; ".join(f"{f.node}: {f.why}" for f in fates)


def _event(api: kube.Kube, view: cache.BatchStore, rec: model.Recommendation, reason: str,
           message: str, type_: str = "Normal") -> None:
    api.event(cache.object_ref(view, rec.kind, rec.id, ""), reason,
              txt.one_line(f"{rec.id}: {message}", txt.EVENT_LIMIT), type_=type_)


def carry_out(w: flow.Work, st: store.Store, view: cache.BatchStore, api: kube.Kube,
              now: str, dry_run: bool) -> None:
    """Mark the nodes of an allowed node-group recommendation (``nodeConsolidation: mark``).

    Reading the nodes may raise (nothing is written then); once the way back is recorded,
    a failure removes the marks made so far and says so in the status."""
    rec, item, dec = w.rec, w.item, w.item.decision
    assert isinstance(rec, model.NodeGroupRecommendation) and dec is not None
    nodes = list(dict.fromkeys(rec.nodesToRemove))
    when = clock.parse_rfc3339(now)

    def active(other: str) -> bool:
        got = st.get(model.NODE_GROUP, other)
        return got is not None and got.phase == model.APPLYING

    read = {n: api.refresh_node(n) for n in nodes}
    fates = [classify(n, read[n], rec.id, active) for n in nodes]
    wanted = [f.node for f in fates if f.fate in (MARK, MARKED)]
    skipped = [f for f in fates if f.fate == SKIP]
    gone = [f.node for f in fates if f.fate == GONE]
    if dry_run:
        parts = [f"would mark {', '.join(wanted)} for the node operator" if wanted
                 else "would mark no node"]
        if skipped:
            parts.append(f"would skip {_skips(skipped)}")
        if gone:
            parts.append(f"{', '.join(gone)} already gone")
        item.phase, item.message = model.APPROVED, "dry run: " + "; ".join(parts)
        return
    base = status.decided(rec, dec)
    # A new spec for a recommendation that had marked nodes: the ones it no longer names
    # lose their mark (after the way back lists them too).
    stored = st.get(rec.kind, rec.id)
    before = ((stored.status.get("previous") or {}).get("marked") or []) if stored else []
    dropped = [str(n) for n in before if str(n) not in nodes]
    if not wanted:
        unmark_all(api, dropped, rec.id)
        _none_marked(st, view, api, w, base, skipped, gone, now)
        return
    # The way back is recorded before the first mark.
    report.save_status(st, rec, replace(
        base, phase=model.APPLYING, message="marking",
        previous={"marked": [*wanted, *dropped], "nodes": nodes, "markedAt": now}
    ).with_condition(status.condition(
        "Applied", False, "Marking", f"marking {', '.join(wanted)} for the node operator",
        now)))
    cache.ensure_finalizer(view, rec)
    marked: list[str] = []
    try:
        for n in wanted:
            got = mark_node(api, n, rec.id, when, active, read[n])
            if got.fate == MARKED:
                marked.append(n)
            elif got.fate == GONE:
                gone.append(n)
            else:
                skipped.append(got)
        unmark_all(api, dropped, rec.id)
    except errors.ReconcilerError as e:
        _marking_failed(st, view, api, w, base, nodes, marked, e, now)
        return
    if not marked:
        _none_marked(st, view, api, w, base, skipped, gone, now,
                     previous={"marked": [], "nodes": nodes})
        return
    item.phase = model.APPLYING
    item.message = f"marked {', '.join(marked)}: {NOTE}"
    if skipped:
        item.message += f"; skipped {_skips(skipped)}"
    if gone:
        item.message += f"; {', '.join(gone)} already gone"
    report.save_status(st, rec, replace(
        base, phase=model.APPLYING, message=item.message,
        previous={"marked": marked, "nodes": nodes, "markedAt": now}).with_condition(
        status.condition("Applied", False, "Marked", item.message, now)))
    _audit("mark", api, rec, dec.decision_id, nodes=nodes, marked=marked,
           skipped={f.node: f.why for f in skipped}, gone=gone)
    _event(api, view, rec, "Marked", item.message)
    if skipped:
        _event(api, view, rec, "NodesSkipped", f"not marked: {_skips(skipped)}", "Warning")


def _none_marked(st: store.Store, view: cache.BatchStore, api: kube.Kube, w: flow.Work,
                 base: model.Status, skipped: Sequence[Fate], gone: Sequence[str], now: str,
                 previous: dict[str, Any] | None = None) -> None:
    """No node was marked: Failed when some had to be skipped (the reason names the
    annotation or taint), Applied when every one is already gone."""
    rec, item = w.rec, w.item
    assert isinstance(rec, model.NodeGroupRecommendation)
    if skipped:
        item.phase = model.FAILED
        item.message = f"no node could be marked: {_skips(skipped)}"
        if gone:
            item.message += f"; {', '.join(gone)} already gone"
        report.save_status(st, rec, replace(
            base, phase=model.FAILED, message=item.message,
            previous=previous or {}).with_condition(
            status.condition("Applied", False, "NodesSkipped", item.message, now)))
        _event(api, view, rec, "NodesSkipped", item.message, "Warning")
        return
    item.phase = model.APPLIED
    item.message = f"{', '.join(gone) or 'no node'} already gone: nothing to mark"
    report.save_status(st, rec, replace(
        base, phase=model.APPLIED, appliedAt=now, message=item.message,
        previous=previous or {}).with_condition(
        status.condition("Applied", True, "AlreadyRemoved", item.message, now)))


def _marking_failed(st: store.Store, view: cache.BatchStore, api: kube.Kube, w: flow.Work,
                    base: model.Status, nodes: Sequence[str], marked: Sequence[str],
                    e: errors.ReconcilerError, now: str) -> None:
    """A mark could not be written: the marks made so far are removed (those that cannot
    be stay listed in ``previous.marked`` for a rollback or the sweep). The API unavailable
    leaves the recommendation Pending to be tried again; a refusal fails it."""
    rec, item = w.rec, w.item
    left = []
    for n in marked:
        try:
            unmark_node(api, n, rec.id)
        except errors.ReconcilerError:
            left.append(n)
    undone = (f"; the marks on {', '.join(m for m in marked if m not in left)} were removed"
              if len(left) < len(marked) else "")
    if left:
        undone += f"; could not remove the marks on {', '.join(left)}"
    prev = {"marked": left, "nodes": list(nodes)} if left else {}
    if isinstance(e, errors.TemporaryError):
        conflict = isinstance(e, errors.ConflictError)
        item.phase, item.retry = model.PENDING, "Conflict" if conflict else "ApiUnavailable"
        item.message = (f"could not mark the nodes, "
                        f"{'a node kept changing' if conflict else 'the API is unavailable'}"
                        f": {e}{undone}")
        report.save_status(st, rec, status.retrying(replace(base, previous=prev),
                                                    item.retry, item.message, now))
        return
    item.phase = model.FAILED
    item.message = f"could not mark the nodes: {e}{undone}"
    report.save_status(st, rec, replace(
        base, phase=model.FAILED, message=item.message, previous=prev).with_condition(
        status.condition("Applied", False, type(e).__name__.replace("Error", "") or "Refused",
                         item.message, now)))
    _event(api, view, rec, "MarkFailed", item.message, "Warning")


def follow(st: store.Store, view: cache.BatchStore, api: kube.Kube, w: flow.Work, now: str,
           deadline: float) -> bool:
    """Look again at a recommendation whose nodes are marked (Applying, ``previous.marked``,
    spec unchanged since): Applied once every marked node is gone; past the deadline the
    marks are removed and it is Failed; else it stays Applying. Not decided again: the
    policy allowed it when the nodes were marked, and a node the node operator removed
    would now read as missing. False for any other recommendation (decided as usual)."""
    rec, item = w.rec, w.item
    stored = st.get(rec.kind, rec.id)
    if (not isinstance(rec, model.NodeGroupRecommendation) or stored is None
            or stored.phase != model.APPLYING or not stored.observed):
        return False
    prev = stored.status.get("previous") or {}
    if not isinstance(prev, dict) or "marked" not in prev or not prev.get("markedAt"):
        return False
    marked = [str(n) for n in prev.get("marked") or []]
    base = status.from_dict(stored.status)
    decision_id = str((stored.status.get("decision") or {}).get("decisionId", ""))
    when = clock.parse_rfc3339(now)
    left = seconds_left(stored.status, when, deadline)
    try:
        present = [n for n in marked if api.refresh_node(n) is not None]
        removed = [n for n in marked if n not in present]
        if not present:
            item.phase = model.APPLIED
            item.message = f"the node operator removed {', '.join(marked) or 'the nodes'}"
            report.save_status(st, rec, replace(
                base, phase=model.APPLIED, appliedAt=now, message=item.message
            ).with_condition(status.condition("Applied", True, "Removed", item.message, now)))
            _audit("consolidated", api, rec, decision_id, removed=marked)
            _event(api, view, rec, "Consolidated", item.message)
            return True
        if left is not None and left <= 0:
            unmarked = unmark_all(api, present, rec.id)
            item.phase = model.FAILED
            item.message = (f"not removed within {_minutes(deadline)}: "
                            f"{', '.join(present)} still present; marks removed")
            if removed:
                item.message += f" ({', '.join(removed)} removed)"
            report.save_status(st, rec, replace(
                base, phase=model.FAILED, message=item.message).with_condition(
                status.condition("Applied", False, "NotRemoved", item.message, now)))
            _audit("unmark", api, rec, decision_id, reason="deadline", unmarked=unmarked,
                   present=present, removed=removed)
            _event(api, view, rec, "NotRemoved", item.message, "Warning")
            return True
    except errors.ReconcilerError as e:
        item.phase = model.APPLYING
        item.message = f"could not look at the marked nodes: {e}"
        item.retry = "ApiUnavailable" if isinstance(e, errors.TemporaryError) else ""
        return True
    due = clock.rfc3339(when + dt.timedelta(seconds=left or 0.0))
    item.phase = model.APPLYING
    item.message = (f"waiting for the node operator to remove {', '.join(present)}"
                    + (f" ({', '.join(removed)} removed)" if removed else "")
                    + f"; the marks are removed at {due} if not")
    report.save_status(st, rec, replace(base, message=item.message).with_condition(
        status.condition("Applied", False, "Marked", item.message, now)))
    return True


def rollback_message(unmarked: Sequence[str]) -> str:
    return (f"removed the consolidation marks from "
            f"{', '.join(unmarked) or 'no node (none left marked by this recommendation)'}; "
            "a node the node operator already took is not brought back")


def sweep(api: kube.Kube, phase_of: Callable[[str], str | None], now: dt.datetime,
          ttl: float) -> list[Stale]:
    """Remove stale marks (``stale``) from the marked nodes (one LIST by label); the marks
    removed. A mark whose node changed meanwhile is read and judged again."""
    nodes, _ = api.list_nodes(SELECTOR)
    done: list[Stale] = []
    for s in stale(nodes, phase_of, now, ttl):
        if not s.node:
            continue
        fresh = api.refresh_node(s.node)
        if fresh is None or not stale([fresh], phase_of, now, ttl):
            continue
        if unmark_node(api, s.node, s.owner):
            done.append(s)
            log.info("removed a stale consolidation mark from node %s (%s)",
                     txt.one_line(s.node), txt.one_line(s.why))
    if done:
        audit_log.info(json.dumps({
            "event": "change", "action": "unmark", "reason": "stale", "who": api.who,
            "object": {"kind": "Node"}, "nodes": {s.node: s.why for s in done},
            "at": clock.rfc3339()}, sort_keys=True))
    return done
