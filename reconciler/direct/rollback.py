"""Rolling back a direct-mode change: put back the values it replaced, if they are still
ours.

The restore is a JSON Patch guarded by ``test`` operations on the values the change SET:
when someone has changed them since, putting the old ones back would undo their change, so
nothing is written and the recommendation keeps its finalizer with a condition naming the
value. A node-group drain is rolled back by uncordoning its nodes (evicted pods are not
brought back: their controllers replaced them when they were evicted).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from reconciler.adapters import kube
from reconciler.adapters.store import port as store
from reconciler.direct import cache, drain, mark, patches
from reconciler.direct import live as live_migration
from reconciler.domain import clock, decision, errors, model, planner, results, status
from reconciler.domain import text as txt
from reconciler.flow import report

log = logging.getLogger(__name__)
audit_log = logging.getLogger("reconciler.audit")


def rollback(rec_id: str, st: store.Store, api: kube.Kube, *, now: str = "",
             kind: str = model.WORKLOAD) -> results.ItemResult:
    """Put back the values a direct-mode recommendation replaced, if they are still ours.

    The restore is a JSON Patch guarded by ``test`` operations on the values WE set: when
    someone changed them since, nothing is written, the recommendation keeps its finalizer
    and gets a ``RolledBack=False/ChangedSince`` condition naming the value. On success the
    phase becomes RolledBack and the finalizer is released (a deleted recommendation is
    then gone).
    """
    now = now or clock.rfc3339()
    # One read per record for the whole rollback (the status writes and the Events reuse it).
    st = st if isinstance(st, cache.BatchStore) else cache.BatchStore(st)
    rec = st.get(kind, rec_id)
    item = results.ItemResult(id=rec_id, kind=kind)
    if rec is None:
        raise errors.NotFoundError(f"{kind} {rec_id} not found")
    item.namespace = rec.namespace
    tref = rec.spec.get("targetRef") or {}
    item.target = f"{tref.get('kind', '')}/{tref.get('name', '')}"
    if rec.phase == model.ROLLED_BACK:
        item.phase, item.message = model.ROLLED_BACK, "already rolled back: nothing to do"
        cache.release(st, kind, rec_id)
        return item
    prev = rec.status.get("previous") or {}
    if kind == model.NODE_GROUP and (prev.get("cordoned") or prev.get("marked")):
        return _rollback_nodes(st, rec, api, item, now)
    if rec.phase not in (model.APPLIED, model.APPLYING) or not prev.get("set"):
        item.phase = rec.phase
        item.message = (f"nothing to roll back: phase {rec.phase} and no change recorded by "
                        "direct mode")
        cache.release(st, kind, rec_id)
        return item
    tkind, ns, name = str(tref.get("kind")), rec.namespace, str(tref.get("name"))
    target = api.refresh(tkind, ns, name)
    hpa_name = str(prev.get("hpaName") or "")
    hpa = api.refresh(kube.HPA, ns, hpa_name) if hpa_name else None
    plan = restore_plan(rec_id, tkind, ns, name, prev)
    migrated = rec.status.get("liveMigration") or {}
    resized_back: list[str] = []
    if migrated:
        # A live migration: the pods it resized go back in place (the admission webhook
        # stops with the phase); the template only when it was changed too.
        resized_back, left = live_migration.roll_back(
            api, target, migrated, dict((prev.get("set") or {}).get("containers") or {}))
        if left:
            log.warning("%s: pods not resized back: %s", txt.one_line(rec_id),
                        txt.one_line("; ".join(left)))
        if not migrated.get("template"):
            plan = replace(plan, resources=(), replicas=None, hpa=None)
    problem = foreign_change(plan, target, hpa, hpa_name)
    if problem is None:
        try:
            assert target is not None
            _send_restore(api, plan, target, hpa)
        except errors.ConflictError as e:
            problem = f"the workload changed while rolling back ({e})"
    kept = status.from_dict(rec.status)
    if problem is not None:
        item.phase = rec.phase
        item.message = f"rollback refused: {problem}; the finalizer is kept"
        report.save_status(st, rec, kept.with_condition(status.condition(
            "RolledBack", False, "ChangedSince", item.message, now)))
        api.event(cache.object_ref(st, kind, rec_id, ns), "RollbackRefused",
                  txt.one_line(item.message, txt.EVENT_LIMIT), type_="Warning")
        return item
    item.phase, item.message = model.ROLLED_BACK, "previous values restored"
    if migrated:
        item.message = (f"{len(resized_back)} pod(s) resized back in place"
                        + ("; the pod template restored" if migrated.get("template") else ""))
    report.save_status(st, rec, replace(
        kept, phase=model.ROLLED_BACK, message=item.message).with_condition(
        status.condition("RolledBack", True, "Restored", patches.describe(plan), now)))
    dec = decision.Decision(allow=True, mode="direct", decision_id=str(
        (rec.status.get("decision") or {}).get("decisionId", "")))
    who = api.who
    for line in patches.audit_lines(plan, hpa, dec, "rollback", who):
        audit_log.info(json.dumps(line, sort_keys=True))
    if target is not None:
        api.event(target, "DakrRecommendationRolledBack",
                  txt.one_line(f"{rec_id}: {patches.describe(plan)}", txt.EVENT_LIMIT))
    api.event(cache.object_ref(st, kind, rec_id, ns), "RolledBack",
              txt.one_line(patches.describe(plan), txt.EVENT_LIMIT))
    cache.release(st, kind, rec_id)
    return item


def _rollback_nodes(st: store.Store, rec: store.Record, api: kube.Kube,
                    item: results.ItemResult, now: str) -> results.ItemResult:
    """Make the nodes a drain cordoned schedulable again (those still there). Evicted pods
    are not brought back: their controllers replaced them when they were evicted. Nodes
    marked for the node operator lose the marks of this recommendation (only its own)."""
    prev = rec.status.get("previous") or {}
    if prev.get("marked") and not prev.get("cordoned"):
        unmarked = mark.unmark_all(api, [str(n) for n in prev["marked"]], rec.id)
        done: dict[str, Any] = {"unmarked": unmarked}
        reason, item.message = "Unmarked", mark.rollback_message(unmarked)
    else:
        nodes = [str(n) for n in prev.get("cordoned") or []]
        uncordoned = [n for n in nodes if _uncordon_if_present(api, n)]
        done = {"uncordoned": uncordoned}
        reason = "Uncordoned"
        item.message = (f"uncordoned {', '.join(uncordoned) or 'no node (none left cordoned)'}"
                        "; evicted pods are not restored")
    item.phase = model.ROLLED_BACK
    report.save_status(st, rec, replace(
        status.from_dict(rec.status), phase=model.ROLLED_BACK,
        message=item.message).with_condition(
        status.condition("RolledBack", True, reason, item.message, now)))
    audit_log.info(json.dumps({
        "event": "change", "action": "rollback", "who": api.who,
        "recommendationId": rec.id, "object": {"kind": "NodeGroup",
                                               "name": str(rec.spec.get("nodeGroup", ""))},
        **done, "at": clock.rfc3339()}, sort_keys=True))
    api.event(cache.object_ref(st, rec.kind, rec.id, ""), "RolledBack",
              txt.one_line(item.message, txt.EVENT_LIMIT))
    cache.release(st, rec.kind, rec.id)
    return item


def _uncordon_if_present(api: kube.Kube, node: str) -> bool:
    try:
        return drain.uncordon(api, node)
    except errors.NotFoundError:
        return False  # removed by the autoscaler meanwhile: nothing to put back


def restore_plan(rec_id: str, kind: str, ns: str, name: str,
                  prev: Mapping[str, Any]) -> planner.Plan:
    """The edits of the original change, old and new swapped back: ``old`` = what we set,
    ``new`` = what was there before."""
    applied = prev.get("set") or {}
    edits: list[planner.ValueEdit] = []
    for cname, secs in (applied.get("containers") or {}).items():
        for section, vals in secs.items():
            for res, ours in vals.items():
                before = (((prev.get("containers") or {}).get(cname) or {}).get(section)
                          or {}).get(res)
                edits.append(planner.ValueEdit(cname, section, res, ours, before))  # type: ignore[arg-type]
    replicas = None
    if "replicas" in applied:
        # A workload that had no replicas field ran 1: that is what goes back.
        before_r = prev.get("replicas")
        replicas = (int(applied["replicas"]), int(before_r) if before_r is not None else 1)
    hpa = None
    if "hpa" in applied and isinstance(prev.get("hpa"), dict):
        hpa = (dict(applied["hpa"]), dict(prev["hpa"]))
    return planner.Plan(rec_id=rec_id, kind=kind, namespace=ns, name=name,
                        resources=tuple(edits), replicas=replicas, hpa=hpa)


def foreign_change(plan: planner.Plan, target: Mapping[str, Any] | None,
                    hpa: Mapping[str, Any] | None, hpa_name: str) -> str | None:
    """Why the values we set are no longer there (a readable reason), or None."""
    if target is None:
        return f"{plan.kind}/{plan.name} no longer exists"
    current = planner.current_resources(target)
    for e in plan.resources:
        now_v = (current.get(e.container) or {}).get(e.section, {}).get(e.resource)
        if now_v != e.old:
            return (f"container {e.container} {e.section}.{e.resource} is {now_v or '(unset)'}"
                    f", not the {e.old} this recommendation set: someone changed it since")
    if plan.replicas is not None:
        cur = (target.get("spec") or {}).get("replicas")
        if cur != plan.replicas[0]:
            return (f"replicas is {cur}, not the {plan.replicas[0]} this recommendation set: "
                    "someone changed it since")
    if plan.hpa is not None:
        if hpa is None:
            return f"HorizontalPodAutoscaler {hpa_name} no longer exists"
        spec = hpa.get("spec") or {}
        for key, ours in plan.hpa[0].items():
            if spec.get(key, 1 if key == "minReplicas" else None) != ours:
                return (f"HPA {hpa_name} {key} is {spec.get(key)}, not the {ours} this "
                        "recommendation set: someone changed it since")
    return None


def _send_restore(api: kube.Kube, plan: planner.Plan, target: dict[str, Any],
                  hpa: dict[str, Any] | None) -> None:
    if plan.resources:
        ops = patches.container_ops(target, plan.resources, "new")
        api.json_patch(plan.kind, plan.namespace, plan.name, ops, dry_run=True)
        api.json_patch(plan.kind, plan.namespace, plan.name, ops)
    if plan.replicas is not None and plan.replicas[1] is not None:
        api.scale(plan.kind, plan.namespace, plan.name, plan.replicas[0], plan.replicas[1])
    if plan.hpa is not None and hpa is not None:
        api.json_patch(kube.HPA, plan.namespace, hpa["metadata"]["name"],
                       patches.hpa_ops(plan.hpa[0], plan.hpa[1], hpa))
