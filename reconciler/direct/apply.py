"""Direct mode: approved recommendations change the live workloads through the API.

The batch runs the stages every writer shares (``reconciler/flow``: intake, policy, status)
with the live object as the target policy and the planner see. Safety comes from four rules:

- never clobber another writer: every workload write is a JSON Patch whose ``test``
  operations check the very values the plan was computed from (``patches``); when they no
  longer hold, the server refuses the patch and the recommendation is re-read and
  re-decided (a bounded number of times), never re-sent as it was;
- never fight an HPA: when one targets the workload, replica recommendations move its
  min/max, never ``spec.replicas``;
- always able to put things back: the previous values are written to the recommendation's
  status before the workload is touched, and a finalizer keeps a deleted recommendation
  until its change has been rolled back (``rollback``, ``deletions``);
- a rerun changes nothing: an applied recommendation is skipped, and equal values are not
  edits at all.

Reads go through ``kube.Kube``'s cache and the store through a batch view primed with one
LIST per kind (``cache``), so a batch costs a handful of reads however many recommendations
it holds. Node group recommendations mark their nodes for the node operator (``mark``), or
cordon and drain them (``drain``), as the decision says.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from reconciler.adapters import kube
from reconciler.adapters.opa import engine as opa
from reconciler.adapters.store import port as store
from reconciler.config import settings
from reconciler.direct import cache, drain, mark, move, patches
from reconciler.direct import live as live_migration
from reconciler.direct import rollback as restore
from reconciler.domain import clock, decision, errors, model, policy_input, status
from reconciler.domain import text as txt
from reconciler.flow import batch as flow
from reconciler.flow import decide, report

log = logging.getLogger(__name__)
audit_log = logging.getLogger("reconciler.audit")

MAX_ATTEMPTS = 3  # reads + decisions per recommendation when the target keeps changing


@dataclass
class _Live:
    """What was read about one target."""

    hpa: dict[str, Any] | None = None


def run(docs: Sequence[object], cfg: settings.Settings, st: store.Store,
        engine: opa.PolicyEngine, kube_api: kube.Kube, *,
        dry_run: bool = False, drain_options: drain.DrainOptions | None = None,
        routed: bool = True) -> flow.Batch:
    """Run one batch in direct mode. ``dry_run``: server-side dry-run only, no status.

    Node group recommendations mark (or drain) the nodes they name (``_carry_out_nodes``). A
    decision for a pull request goes to ``batch.handoff`` (or fails WriterNotConfigured
    without a repository); ``routed=False`` for a batch the GitOps writer handed over."""
    now = cfg.now or clock.rfc3339()
    view = cache.BatchStore(st)
    view.prime()
    sv: store.Store = flow.ReadOnly(view) if dry_run else view
    batch = flow.Batch()
    live = flow.intake(docs, sv, batch)
    for w in [w for w in live if (w.rec.kind, w.rec.id) in view.unstored]:
        w.item.phase = model.FAILED
        why = view.unstored[(w.rec.kind, w.rec.id)]
        w.item.message = f"cannot store the recommendation: {why}"
        live.remove(w)
    read = {w.rec.id: _read_target(kube_api, w) for w in live}
    # Node groups whose nodes are marked for the node operator are followed, not decided
    # again (a node it removed would read as missing to the policy).
    live = [w for w in live if not _follow_marks(sv, view, kube_api, w, cfg, now, dry_run)]
    # A change recorded as Applying by a process that stopped before recording the result
    # is settled first: deciding again would see nothing left to change.
    # The HPA and PDBs for the policy (the same cached LISTs the HPA routing uses), and
    # the pods on the nodes a node group recommendation would drain.
    nodes = any(isinstance(w.rec, model.NodeGroupRecommendation) for w in live)
    live, cluster = decide.cluster_facts(sv, kube_api, live, now, nodes=nodes)
    decide.decide(sv, engine, live, now, cluster, operator=cfg.operator())
    if not dry_run:
        live = [w for w in live
                if not _found_in_place(sv, view, kube_api, w, read[w.rec.id], now)]
    writers = decide.Writers("direct", cfg.writers, routed=routed)
    for w in live:
        if not decide.route(sv, w, writers, batch, now):
            continue
        if isinstance(w.rec, model.NodeGroupRecommendation):
            _carry_out_nodes(w, sv, view, kube_api, now, dry_run, drain_options or
                             drain.DrainOptions(timeout=cfg.direct.drain_timeout,
                                                moving=move.MoveOptions.from_settings(
                                                    cfg.move)))
            continue
        _carry_out(w, sv, view, kube_api, engine, cfg, read[w.rec.id], now, dry_run)
    return batch


def _found_in_place(st: store.Store, view: cache.BatchStore, api: kube.Kube, w: flow.Work,
                    fact: _Live, now: str) -> bool:
    """True when ``w`` was being applied (Applying, the way back recorded) by a process
    that stopped before it wrote the result, and the workload holds the values it set:
    the change happened, so it is Applied now, never sent twice. False: not applied (or
    not all of it): decide and apply as usual."""
    rec = w.rec
    stored = st.get(rec.kind, rec.id)
    if (stored is None or stored.phase != model.APPLYING or w.target is None
            or stored.status.get("pullRequest") or not stored.observed):
        return False
    prev = stored.status.get("previous") or {}
    tref = prev.get("target") or {}
    if (not prev.get("set") or not isinstance(rec, model.WorkloadRecommendation)
            or rec.action == model.LIVE_MIGRATION):
        return False  # a live migration is resumed by running it again: pods done are skipped
    undo = restore.restore_plan(rec.id, str(tref.get("kind", rec.targetRef.kind)),
                                rec.namespace, str(tref.get("name", rec.targetRef.name)),
                                prev)
    hpa_name = str(prev.get("hpaName") or "")
    if restore.foreign_change(undo, w.target, fact.hpa, hpa_name) is not None:
        return False
    # The change itself: the undo's edits turned round (old = before, new = what was set).
    done = replace(undo, resources=tuple(replace(e, old=e.new, new=str(e.old))
                                         for e in undo.resources),
                   replicas=(undo.replicas[1], int(undo.replicas[0] or 0))
                   if undo.replicas else None,
                   hpa=(undo.hpa[1], undo.hpa[0]) if undo.hpa else None)
    w.item.phase = model.APPLIED
    w.item.message = "applied to the live workload (found in place after a restart)"
    report.save_status(st, rec, replace(
        status.from_dict(stored.status), phase=model.APPLIED, appliedAt=now,
        message=w.item.message).with_condition(
        status.condition("Applied", True, "Patched", patches.describe(done), now)))
    cache.ensure_finalizer(view, rec)
    dec = decision.Decision(allow=True, mode="direct", decision_id=str(
        (stored.status.get("decision") or {}).get("decisionId", "")))
    for line in patches.audit_lines(done, fact.hpa, dec, "apply", api.who):
        audit_log.info(json.dumps(line, sort_keys=True))
    api.event(w.target, "DakrRecommendationApplied",
              txt.one_line(f"{rec.id}: {patches.describe(done)}", txt.EVENT_LIMIT))
    return True


def _read_target(api: kube.Kube, w: flow.Work) -> _Live:
    rec = w.rec
    if not isinstance(rec, model.WorkloadRecommendation):
        return _Live()  # a node group: its facts are the nodes' (decide.cluster_facts)
    try:
        w.target = api.workload(rec.targetRef.kind, rec.namespace, rec.targetRef.name)
        hpa = api.hpa_for(rec.targetRef.kind, rec.namespace, rec.targetRef.name)
    except errors.ReconcilerError as e:
        w.target, w.problem = None, f"cannot read {rec.target_label}: {e}"
        return _Live()
    if w.target is None:
        w.problem = f"{rec.target_label} not found in namespace {rec.namespace}"
    return _Live(hpa=hpa)


def _input(w: flow.Work, fact: _Live, cfg: settings.Settings, now: str,
           history: Mapping[tuple[str, str, str], Any]) -> dict[str, Any]:
    return policy_input.build(w.rec, w.target, now=now, cluster={"hpa": fact.hpa},
                              history={"lastApplied": history.get(w.rec.target_key)},
                              operator=cfg.operator())


def _carry_out(w: flow.Work, st: store.Store, view: cache.BatchStore, api: kube.Kube,
               engine: opa.PolicyEngine, cfg: settings.Settings, fact: _Live, now: str,
               dry_run: bool) -> None:
    """Plan, apply, and on a lost race re-read, re-decide and re-plan (bounded)."""
    rec, item = w.rec, w.item
    for attempt in range(MAX_ATTEMPTS):
        dec = item.decision
        assert dec is not None
        if not _settle(st, w, dec, fact, now):
            return
        assert isinstance(rec, model.WorkloadRecommendation) and w.target is not None
        assert item.plan is not None
        change = patches.Change(item.plan, w.target, fact.hpa)
        try:
            if dry_run and rec.action == model.LIVE_MIGRATION:
                live_migration.carry_out(st, view, api, w, change, dec, now, dry_run=True,
                                         webhook=cfg.live.webhook)
                return
            if dry_run:
                patches.send(api, rec, change, dry_run=True)
                item.phase = model.APPROVED
                item.message = "dry run (server-side): would change " + patches.describe(item.plan)
                return
            if rec.action == model.LIVE_MIGRATION:
                live_migration.carry_out(st, view, api, w, change, dec, now, dry_run=False,
                                         webhook=cfg.live.webhook,
                                         moving=move.MoveOptions.from_settings(cfg.move))
                return
            _apply(st, view, api, w, change, dec, now, dry_run_first=cfg.direct.server_dry_run)
            return
        except errors.ConflictError as e:
            log.info("%s: the target changed while applying (%s); reading it again",
                     txt.one_line(rec.id), txt.one_line(str(e)))
            if attempt == MAX_ATTEMPTS - 1:
                _retry(st, w, f"the target keeps changing under us: {e}", "Conflict", now)
                return
            fact = _Live()
            w.target = api.refresh(rec.targetRef.kind, rec.namespace, rec.targetRef.name)
            if w.target is None:
                w.problem = f"{rec.target_label} not found in namespace {rec.namespace}"
            else:
                fact.hpa = _fresh_hpa(api, rec, change.hpa)
            hist = flow.history(st, {rec.kind})
            item.decision = engine.decide(_input(w, fact, cfg, now, hist))
        except errors.ReconcilerError as e:
            _fail_for(st, w, e, now)
            return


def _fresh_hpa(api: kube.Kube, rec: model.WorkloadRecommendation,
               old: dict[str, Any] | None) -> dict[str, Any] | None:
    if old is not None:
        return api.refresh(kube.HPA, rec.namespace, old["metadata"]["name"])
    return api.hpa_for(rec.targetRef.kind, rec.namespace, rec.targetRef.name)


def _settle(st: store.Store, w: flow.Work, dec: decision.Decision, fact: _Live,
            now: str) -> bool:
    """What the decision and the live target allow; True when there is a change to send.
    Mirrors ``decide.plan_item`` with HPA routing and direct-mode wording."""
    rec, item = w.rec, w.item
    base = status.decided(rec, dec)
    if not dec.allow or dec.mode == "audit" or w.target is None:
        return decide.plan_item(st, w, now)  # refused / audit / not found: same as GitOps
    assert isinstance(rec, model.WorkloadRecommendation)
    try:
        item.plan = patches.plan(rec, dec, w.target, fact.hpa)
    except errors.PermanentError as e:
        _fail(st, w, str(e), "NotApplicable", now)
        return False
    if item.plan.empty:
        item.phase, item.message = model.APPLIED, "the workload already has these values"
        stored = st.get(rec.kind, rec.id)
        prev = stored.status.get("previous", {}) if stored is not None else {}
        save_to = replace(base, phase=model.APPLIED, message=item.message,
                          previous=prev if isinstance(prev, dict) else {},
                          appliedAt=(stored.status.get("appliedAt") if stored else "") or now)
        report.save_status(st, rec, save_to.with_condition(
            status.condition("Applied", True, "AlreadyApplied", item.message, now)))
        return False
    return True


def _follow_marks(st: store.Store, view: cache.BatchStore, api: kube.Kube, w: flow.Work,
                  cfg: settings.Settings, now: str, dry_run: bool) -> bool:
    """True when ``w`` is a node group whose nodes are marked for the node operator
    (Applying): it is followed (``mark.follow``: Applied once they are gone, the marks
    removed past the deadline), not decided again."""
    if dry_run or not isinstance(w.rec, model.NodeGroupRecommendation):
        return False
    return mark.follow(st, view, api, w, now, cfg.direct.mark_deadline)


def _carry_out_nodes(w: flow.Work, st: store.Store, view: cache.BatchStore, api: kube.Kube,
                     now: str, dry_run: bool, options: drain.DrainOptions) -> None:
    """Consolidate a node group as the decision's ``execution.nodeConsolidation`` says:
    ``mark`` (also when the policy does not say) marks the nodes it names for the node
    operator, which cordons, drains and removes them (``mark.py``); ``drain`` cordons and
    drains them here, through the Eviction API so that PodDisruptionBudgets hold
    (reconciler/drain.py). The empty nodes are then removed by the cluster's autoscaler;
    nothing here deletes a node or a machine.

    The nodes that will be cordoned are recorded in status first, so a rollback (or the
    deletion of the recommendation) can make them schedulable again; evicted pods are not
    restored, their controllers have already replaced them elsewhere."""
    rec, item, dec = w.rec, w.item, w.item.decision
    assert isinstance(rec, model.NodeGroupRecommendation) and dec is not None
    base = status.decided(rec, dec)
    if not dec.allow or dec.mode == "audit":
        decide.plan_item(st, w, now)  # refused, or recorded only: as in GitOps mode
        return
    nodes = list(dict.fromkeys(rec.nodesToRemove))
    if not nodes:
        _fail(st, w, "direct mode consolidates the nodes named in nodesToRemove (it marks "
              "or drains them) and this recommendation names none; resizing a node group "
              "is left to GitOps mode", "NotApplicable", now)
        return
    if dec.node_consolidation != "drain":  # "mark", or a policy that does not say
        try:
            mark.carry_out(w, st, view, api, now, dry_run)
        except errors.ReconcilerError as e:
            _fail_for(st, w, e, now)
        return
    try:
        if dry_run:
            plans = [drain.plan_drain(n, api.refresh_pods_on_node(n), options) for n in nodes]
            item.phase = model.APPROVED
            item.message = "dry run: " + "; ".join(_describe_drain_plan(p) for p in plans)
            return
        schedulable, present = [], []
        for n in nodes:
            node = api.refresh_node(n)
            if node is None:
                continue  # already removed (by the autoscaler, say): nothing to drain
            present.append(n)
            if not (node.get("spec") or {}).get("unschedulable"):
                schedulable.append(n)
        # The way back is recorded before the first node is cordoned.
        report.save_status(st, rec, replace(
            base, phase=model.APPLYING, message="draining",
            previous={"cordoned": schedulable, "nodes": nodes}).with_condition(
            status.condition("Applied", False, "Draining",
                               f"cordoning and draining {', '.join(nodes)}", now)))
        cache.ensure_finalizer(view, rec)
        results_ = drain.drain_nodes(api, present, options)
    except errors.ReconcilerError as e:
        _fail_for(st, w, e, now)
        return
    cordoned = [r.node for r in results_ if r.cordoned_by_us]
    evicted = [f"{ns}/{name}" for r in results_ for ns, name in r.evicted]
    done = len(results_) == len(present) and all(r.complete or not r.node_found
                                                  for r in results_)
    gone = [n for n in nodes if n not in present]
    previous = {"cordoned": cordoned, "nodes": nodes, "evicted": evicted}
    who = api.who
    audit_log.info(json.dumps({
        "event": "change", "action": "drain", "who": who, "recommendationId": rec.id,
        "decisionId": dec.decision_id, "object": {"kind": "NodeGroup", "name": rec.nodeGroup},
        "nodes": nodes, "cordoned": cordoned, "evicted": evicted, "complete": done,
        "at": clock.rfc3339()}, sort_keys=True))
    if done:
        item.phase = model.APPLIED
        item.message = (f"drained {len(present)} node(s), {len(evicted)} pod(s) evicted; the "
                        "cluster's autoscaler removes the empty nodes"
                        + (f" ({', '.join(gone)} already gone)" if gone else ""))
        report.save_status(st, rec, replace(
            base, phase=model.APPLIED, appliedAt=now, message=item.message,
            previous=previous).with_condition(
            status.condition("Applied", True, "Drained", item.message, now)))
        api.event(cache.object_ref(view, rec.kind, rec.id, ""), "Drained",
                  txt.one_line(item.message, txt.EVENT_LIMIT))
        return
    last = results_[-1].message if results_ else "nothing drained"
    item.phase, item.message = model.FAILED, f"drain incomplete: {last}"
    report.save_status(st, rec, replace(
        base, phase=model.FAILED, message=item.message, previous=previous).with_condition(
        status.condition("Applied", False, "DrainIncomplete", item.message, now)))
    api.event(cache.object_ref(view, rec.kind, rec.id, ""), "DrainIncomplete",
              txt.one_line(item.message, txt.EVENT_LIMIT), type_="Warning")


def _describe_drain_plan(p: drain.DrainPlan) -> str:
    if not p.ok:
        return f"{p.node}: refused ({'; '.join(f'{ns}/{n}: {why}' for ns, n, why in p.blocking)})"
    return (f"{p.node}: would evict {len(p.evict)} pod(s), skip {len(p.skipped)}"
            + (f", wait for {len(p.wait)}" if p.wait else ""))


def _fail_for(st: store.Store, w: flow.Work, e: errors.ReconcilerError, now: str) -> None:
    """By the error class: the API unavailable is temporary (still Pending, a Retrying
    condition, tried again with backoff); a refusal (403, 404, 422...) fails for good
    with the server's reason."""
    if isinstance(e, errors.TemporaryError):
        _retry(st, w, f"the API server is unavailable: {e}", "ApiUnavailable", now)
    else:
        _fail(st, w, str(e), type(e).__name__.replace("Error", "") or "Refused", now)


def _retry(st: store.Store, w: flow.Work, reason: str, code: str, now: str) -> None:
    """A temporary outcome: nothing was changed, the recommendation stays Pending."""
    w.item.phase, w.item.message, w.item.retry = model.PENDING, reason, code
    dec = w.item.decision
    base = status.decided(w.rec, dec) if dec is not None else model.Status()
    try:
        report.save_status(st, w.rec, status.retrying(base, code, reason, now))
    except errors.ReconcilerError as e:
        log.warning("%s: could not record the retry: %s", txt.one_line(w.rec.id),
                    txt.one_line(str(e)))


def _fail(st: store.Store, w: flow.Work, reason: str, code: str, now: str) -> None:
    w.item.phase, w.item.message = model.FAILED, reason
    dec = w.item.decision
    failed = model.Status(phase=model.FAILED, message=reason, decision=(
        status.decision_summary(dec) if dec is not None else None))
    try:
        report.save_status(st, w.rec, failed.with_condition(
            status.condition("Applied", False, code or "Failed", reason, now)))
    except errors.ReconcilerError as e:
        log.warning("%s: could not record the failure: %s", txt.one_line(w.rec.id),
                    txt.one_line(str(e)))


def _apply(st: store.Store, view: cache.BatchStore, api: kube.Kube, w: flow.Work,
           change: patches.Change, dec: decision.Decision, now: str, *,
           dry_run_first: bool = True) -> None:
    rec, item = w.rec, w.item
    assert isinstance(rec, model.WorkloadRecommendation)
    base = replace(status.decided(rec, dec), previous=patches.previous(change))
    # Dry-run first: an invalid change or a lost race is found before anything is written.
    if dry_run_first:
        patches.send(api, rec, change, dry_run=True)
    # The way back is recorded before the workload moves.
    report.save_status(st, rec, replace(base, phase=model.APPLYING,
                                          message="applying").with_condition(
        status.condition("Applied", False, "Applying", "patching the workload", now)))
    cache.ensure_finalizer(view, rec)
    patches.send(api, rec, change, dry_run=False)
    item.phase = model.APPLIED
    item.message = "applied to the live workload"
    report.save_status(st, rec, replace(base, phase=model.APPLIED, appliedAt=now,
                                          message=item.message).with_condition(
        status.condition("Applied", True, "Patched", patches.describe(change.plan), now)))
    who = api.who
    for line in patches.audit_lines(change.plan, change.hpa, dec, "apply", who):
        audit_log.info(json.dumps(line, sort_keys=True))
    target_ref = change.target
    api.event(target_ref, "DakrRecommendationApplied",
              txt.one_line(f"{rec.id}: {patches.describe(change.plan)}", txt.EVENT_LIMIT))
    api.event(cache.object_ref(view, rec.kind, rec.id, rec.namespace), "Applied",
              txt.one_line(f"applied to {rec.target_label}: {patches.describe(change.plan)}",
                           txt.EVENT_LIMIT))
