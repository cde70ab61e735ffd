"""A LiveMigration in direct mode: the running pods resized in place, no restart.

What the decision's ``execution.liveMigration`` says decides the rest:

- ``persist``: pods created later get the new values from the admission webhook
  (``webhook``, which reads ``status.liveMigration`` of an Applying or Applied
  recommendation) or from the pod template, changed after the resize (``template``: a
  rollout for Deployments, as any template change);
- ``move``: a pod whose resize is Infeasible on its node (over the node's capacity) is
  moved to another node with its process state when the policy says ``checkpoint`` and
  the cluster declares it can restore (``move.move_pod``); the other pods go on resizing;
- ``fallback``: when a pod cannot be resized in place (``resize.Resizer`` says why) nor
  moved, ``none`` ends Failed and resizes back the pods already resized; ``recreate`` makes
  the ordinary template change instead, a rolling restart that honours
  PodDisruptionBudgets.

The way back is recorded first: ``status.previous`` (the template's values, as every direct
change) and ``status.liveMigration.pods`` (each pod's values before its resize) are written
before the first pod moves, and kept up to date as pods finish.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from reconciler.adapters import kube
from reconciler.adapters.store import port as store
from reconciler.direct import cache, move, patches
from reconciler.direct import resize as rsz
from reconciler.domain import decision, errors, model, status
from reconciler.domain import text as txt
from reconciler.flow import batch as flow
from reconciler.flow import report

log = logging.getLogger(__name__)
audit_log = logging.getLogger("reconciler.audit")

MOVED = "Moved"  # a pod moved to another node with its state (checkpoint/restore)
NO_WEBHOOK = ("the admission webhook is not deployed (chart value liveMigration.enabled): "
              "pods created later start with the template's values; set "
              "liveMigration.persist: template in the policy data to change the template too")


def record(policy: decision.LivePolicy, changes: list[rsz.PodChange], *,
           template: bool, webhook: bool,
           moves: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """``status.liveMigration``: what the webhook and a rollback read, and where each
    checkpoint archive was (``moves``: a move's steps, archives and their cleanup)."""
    out = {"persist": policy.persist, "fallback": policy.fallback, "template": template,
           "webhook": webhook, "pods": [c.to_dict() for c in changes]}
    if moves:
        out["moves"] = moves
    return out


def carry_out(st: store.Store, view: cache.BatchStore, api: kube.Kube, w: flow.Work,
              change: patches.Change, dec: decision.Decision, now: str, *,
              dry_run: bool, webhook: bool, moving: move.MoveOptions | None = None) -> None:
    """Resize ``w``'s running pods to its recommendation, then persist or fall back.
    ``moving``: how an Infeasible pod is moved (checkpoint/restore), when the policy asks."""
    try:
        _carry_out(st, view, api, w, change, dec, now, dry_run=dry_run, webhook=webhook,
                   moving=moving or move.MoveOptions())
    except kube.Forbidden as e:
        raise kube.Forbidden(f"{e}; in-place resize needs pods get/list/watch, pods/resize "
                             "patch and replicasets list (chart value liveMigration.enabled)",
                             e.code, e.reason, e.causes) from e


def _carry_out(st: store.Store, view: cache.BatchStore, api: kube.Kube, w: flow.Work,
               change: patches.Change, dec: decision.Decision, now: str, *,
               dry_run: bool, webhook: bool, moving: move.MoveOptions) -> None:
    rec, item = w.rec, w.item
    assert isinstance(rec, model.WorkloadRecommendation)
    policy = dec.live or decision.LivePolicy()
    want = change.plan.container_changes()
    want = {c: {s: v for s, v in secs.items() if v} for c, secs in want.items()}
    resizer = rsz.Resizer(api, change.target, want, policy)
    changes, code, why = resizer.prepare()
    base = replace(status.decided(rec, dec), previous=patches.previous(change))
    if dry_run:
        if not code:
            resizer.dry_run(changes)
        todo = [c.name for c in changes if c.state == rsz.PLANNED]
        item.phase = model.APPROVED
        item.message = (f"dry run (server-side): would resize {len(todo)} pod(s) in place "
                        f"({patches.describe(change.plan)})" if not code else
                        f"dry run: cannot resize in place ({why}); fallback "
                        f"{policy.fallback}")
        return

    moves: list[dict[str, Any]] = []

    def save(phase: str, message: str, cond: model.Condition, *,
             template: bool = False) -> None:
        report.save_status(st, rec, replace(
            base, phase=phase, message=message,
            appliedAt=now if phase == model.APPLIED else "",
            liveMigration=record(policy, changes, template=template, webhook=webhook,
                                 moves=moves)).with_condition(cond))

    if code:
        _stopped(view, api, w, change, dec, now, policy, changes, code, why, save)
        return
    save(model.APPLYING, "resizing pods in place", status.condition(
        "Applied", False, "Resizing",
        f"resizing {sum(c.state == rsz.PLANNED for c in changes)} pod(s) in place", now))
    cache.ensure_finalizer(view, rec)

    # Every pod's previous values are recorded above, before the first resize; the states
    # are written when the resize ends (a rollback checks each pod's values, not its state).
    outcome = resizer.run(changes)
    while outcome.code == rsz.INFEASIBLE and policy.move == "checkpoint":
        moved = _move(api, resizer, changes, outcome, want, moving)
        moves.append(moved.to_dict())
        if not moved.moved:
            outcome.reason += f"; the pod could not be moved either: {moved.reason}"
            break
        outcome = resizer.run(changes)  # the others go on; pods done are skipped
    if not outcome.done:
        _stopped(view, api, w, change, dec, now, policy, changes, outcome.code,
                 outcome.reason, save)
        return
    template = policy.persist == "template"
    if template:
        patches.send(api, rec, change, dry_run=False)
    msg = f"{_count(changes)} in place"
    if template:
        msg += "; the pod template changed too (persist: template)"
    elif webhook:
        msg += "; pods created later get the values from the admission webhook"
    else:
        msg += f"; warning: {NO_WEBHOOK}"
    item.phase, item.message = model.APPLIED, msg
    save(model.APPLIED, msg, status.condition("Applied", True, "ResizedInPlace", msg, now),
         template=template)
    _report(api, view, w, change, dec, "ResizedInPlace", msg)


def _move(api: kube.Kube, resizer: rsz.Resizer, changes: list[rsz.PodChange],
          outcome: rsz.Outcome, want: dict[str, Any],
          moving: move.MoveOptions) -> move.MoveResult:
    """Move the pod whose resize was Infeasible to another node with its state and the new
    values; the pods stopped with it are planned again (their resize is sent anew)."""
    pod = api.pod(resizer.namespace, outcome.pod)
    if pod is None:
        result = move.MoveResult(f"{resizer.namespace}/{outcome.pod}", "")
        result.moved = True  # gone meanwhile: its replacement comes from the template
    else:
        result = move.move_pod(api, pod, want, moving)
    for c in changes:
        if c.name == outcome.pod:
            c.state = MOVED if result.moved else rsz.STOPPED
            c.message = result.reason or outcome.reason
        elif c.state == rsz.STOPPED and result.moved:
            c.state = rsz.PLANNED
    if result.moved:
        resizer.view.pop(outcome.pod, None)
        log.info("%s: pod %s moved with its state (%s)", txt.one_line(outcome.pod),
                 txt.one_line(result.pod), txt.one_line(result.replacement))
    return result


def _stopped(view: cache.BatchStore, api: kube.Kube, w: flow.Work,
             change: patches.Change, dec: decision.Decision, now: str,
             policy: decision.LivePolicy, changes: list[rsz.PodChange], code: str, why: str,
             save: Callable[..., None]) -> None:
    """A pod could not be resized in place: the policy's fallback."""
    rec, item = w.rec, w.item
    assert isinstance(rec, model.WorkloadRecommendation)
    if policy.fallback == "recreate":
        cache.ensure_finalizer(view, rec)
        save(model.APPLYING, "falling back to a template change", status.condition(
            "Applied", False, "Recreating", why, now), template=True)
        try:
            patches.send(api, rec, change, dry_run=False)
        except errors.ReconcilerError as e:
            item.phase = model.FAILED
            item.message = f"cannot resize in place ({why}) and the template change failed: {e}"
            save(model.FAILED, item.message, status.condition(
                "Applied", False, code, item.message, now), template=False)
            return
        msg = (f"cannot resize in place ({why}); fell back to a rolling change of the pod "
               f"template (fallback: recreate): {patches.describe(change.plan)}")
        item.phase, item.message = model.APPLIED, msg
        save(model.APPLIED, msg, status.condition("Applied", True, "Recreated", msg, now),
             template=True)
        _report(api, view, w, change, dec, "Recreated", msg)
        return
    back = rsz.put_back(api, change.target, changes, policy)
    undone = [c.name for c in back.changes if c.state == rsz.RESIZED]
    left = [f"{c.name} ({c.message or c.state})" for c in back.changes
            if c.state not in (rsz.RESIZED, rsz.UNCHANGED, rsz.GONE)]
    for c in changes:
        if c.name in undone:
            c.state = "PutBack"
    msg = (f"cannot resize in place: {why}; nothing else was tried (liveMigration.fallback "
           "is none; set it to recreate in the policy data to restart the pods with the new "
           "values instead)")
    if undone:
        msg += f"; resized back: {', '.join(undone)}"
    if left:
        msg += f"; could not resize back: {', '.join(left)}"
    if back.code:
        msg += f" ({back.reason})"
    item.phase, item.message = model.FAILED, msg
    save(model.FAILED, msg, status.condition("Applied", False, code, msg, now))
    api.event(change.target, "DakrResizeFailed", txt.one_line(f"{rec.id}: {msg}",
                                                              txt.EVENT_LIMIT),
              type_="Warning")


def _count(changes: list[rsz.PodChange]) -> str:
    by: dict[str, int] = {}
    for c in changes:
        by[c.state] = by.get(c.state, 0) + 1
    done = by.get(rsz.RESIZED, 0)
    parts = [f"{done} pod(s) resized"]
    for state in (MOVED, rsz.RESIZING, rsz.PLANNED, rsz.UNCHANGED, rsz.GONE):
        if by.get(state):
            parts.append(f"{by[state]} {state.lower()}")
    return ", ".join(parts)


def _report(api: kube.Kube, view: cache.BatchStore, w: flow.Work, change: patches.Change,
            dec: decision.Decision, reason: str, msg: str) -> None:
    rec = w.rec
    for line in patches.audit_lines(change.plan, change.hpa, dec, "resize", api.who):
        audit_log.info(json.dumps(line, sort_keys=True))
    api.event(change.target, "DakrRecommendationApplied",
              txt.one_line(f"{rec.id}: {msg}", txt.EVENT_LIMIT))
    api.event(cache.object_ref(view, rec.kind, rec.id, rec.namespace), reason,
              txt.one_line(msg, txt.EVENT_LIMIT))


def roll_back(api: kube.Kube, target: dict[str, Any] | None,
              live: dict[str, Any], set_values: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Resize back the pods a live migration resized (those still there and still holding
    our values). Returns (resized back, left alone with why)."""
    if target is None:
        return [], []
    recorded = [p for p in live.get("pods") or [] if p.get("state") in (
        rsz.PLANNED, rsz.RESIZED, rsz.RESIZING, rsz.STOPPED)]
    back = [rsz.PodChange.back(p, set_values) for p in recorded]
    out = rsz.restore(api, target, back, decision.LivePolicy())
    done = [c.name for c in out.changes if c.state == rsz.RESIZED]
    left = [f"{c.name}: {c.message or c.state}" for c in out.changes
            if c.state not in (rsz.RESIZED, rsz.UNCHANGED, rsz.GONE)]
    if out.code:
        left.append(out.reason)
    return done, left


# ------------------------------------------------------------------ beside a pull request

IN_PLACE = "ResizedInPlace"  # the condition a GitOps live migration's in-place step sets
NO_API = ("the running pods were not resized in place: this process does not read the "
          "cluster (set --cluster-facts / DAKR_CLUSTER_FACTS, or use the kube store)")


def beside_pull_request(st: store.Store, api: kube.Kube | None, w: flow.Work,
                        now: str) -> None:
    """GitOps mode, ``resizeRunning: true``: the pull request is open and carries the
    template change; the running pods get the new values in place now, so the savings do
    not wait for the review.

    The recommendation stays Applying (the merge makes it Applied, and the rollout it
    starts brings pods with the same values). What the in-place step did is the
    ``ResizedInPlace`` condition and ``status.liveMigration`` (``persist: template``: the
    admission webhook leaves these pods alone; pods created before the merge start with
    the template's values), written before the first pod is resized. When a pod cannot be
    resized, ``fallback: none`` resizes back the pods already resized; ``recreate`` leaves
    them, since the pull request restarts every pod with these values once merged. A
    pull request closed unmerged resizes them back (``put_back_rejected``). Moves
    (checkpoint/restore) are direct mode only."""
    rec, item = w.rec, w.item
    dec, plan = item.decision, item.plan
    if not isinstance(rec, model.WorkloadRecommendation) or dec is None or plan is None \
            or dec.live is None:
        return
    if api is None:
        item.message += f"; {NO_API}"
        _note(st, rec, status.condition(IN_PLACE, False, "NoClusterAccess", NO_API, now),
              None)
        return
    policy = replace(dec.live, persist="template")
    want = {c: {s: v for s, v in secs.items() if v}
            for c, secs in plan.container_changes().items()}
    try:
        target = api.refresh(plan.kind, plan.namespace, plan.name)
        if target is None:
            why = f"{rec.target_label} is not in the cluster"
            item.message += f"; the running pods were not resized in place: {why}"
            _note(st, rec, status.condition(IN_PLACE, False, "TargetNotFound", why, now),
                  None)
            return
        def recorded(changes: list[rsz.PodChange]) -> dict[str, Any]:
            """``status.liveMigration`` for the pods' states now, with the values set."""
            return _with_set(record(policy, changes, template=True, webhook=False), want)

        resizer = rsz.Resizer(api, target, want, policy)
        changes, code, why = resizer.prepare()
        if not code:
            _note(st, rec, status.condition(IN_PLACE, False, "Resizing", (
                f"resizing {sum(c.state == rsz.PLANNED for c in changes)} pod(s) in place"),
                now), recorded(changes))
            outcome = resizer.run(changes)
            code, why = outcome.code, outcome.reason
        if not code:
            msg = f"{_count(changes)} in place while the pull request is open"
            item.message += f"; {msg}"
            _note(st, rec, status.condition(IN_PLACE, True, IN_PLACE, msg, now),
                  recorded(changes))
            api.event(target, "DakrResizedInPlace", txt.one_line(f"{rec.id}: {msg}",
                                                                 txt.EVENT_LIMIT))
            return
        msg = f"the running pods could not all be resized in place: {why}"
        if policy.fallback == "none":
            back = rsz.put_back(api, target, changes, policy)
            undone = [c.name for c in back.changes if c.state == rsz.RESIZED]
            for c in changes:
                if c.name in undone:
                    c.state = "PutBack"
            msg += ("; the pods already resized were put back (liveMigration.fallback: "
                    "none); the pull request is unchanged")
            if undone:
                msg += f": {', '.join(undone)}"
        else:
            msg += ("; the pods already resized keep the new values, and the pull request "
                    "restarts every pod with them once merged (liveMigration.fallback: "
                    "recreate)")
        item.message += f"; {msg}"
        _note(st, rec, status.condition(IN_PLACE, False, code, msg, now),
              recorded(changes))
        api.event(target, "DakrResizeFailed", txt.one_line(f"{rec.id}: {msg}",
                                                           txt.EVENT_LIMIT), type_="Warning")
    except errors.ReconcilerError as e:
        # The pull request stands whatever happens here: the in-place step is a bonus.
        why = f"the running pods were not resized in place: {e}"
        if isinstance(e, kube.Forbidden):
            why += ("; in-place resize needs pods get/list/watch, pods/resize patch and "
                    "replicasets list (chart value liveMigration.enabled)")
        item.message += f"; {why}"
        log.warning("%s: %s", txt.one_line(rec.id), txt.one_line(why))
        try:
            _note(st, rec, status.condition(IN_PLACE, False, "ResizeFailed", why, now),
                  None)
        except errors.ReconcilerError as again:
            log.warning("%s: status not written: %s", txt.one_line(rec.id), again)


def put_back_rejected(st: store.Store, api: kube.Kube | None, rec_id: str, kind: str,
                      now: str) -> str:
    """A pull request closed unmerged: its values were never accepted, so the pods the
    in-place step resized go back (each only while it still holds our values). Returns
    what was done, for the result's message ("" when there was nothing to do)."""
    r = st.get(kind, rec_id)
    live = (r.status.get("liveMigration") or {}) if r is not None else {}
    if r is None or not live.get("pods") or not live.get("set"):
        return ""
    if api is None:
        return "the pods resized in place were not put back: this process does not read " \
               "the cluster"
    _, tkind, name = model.target_key_of(r.kind, r.namespace, r.spec)
    target = api.refresh(tkind, r.namespace, name)
    done, left = roll_back(api, target, live, dict(live["set"]))
    msg = f"{len(done)} pod(s) resized in place put back"
    if left:
        msg += f"; not put back: {'; '.join(left)}"
    kept = status.from_dict(r.status)
    pods = [{**p, "state": "PutBack"} if p.get("name") in done else p
            for p in live.get("pods") or []]
    report.save_status(st, r, replace(kept, liveMigration={**live, "pods": pods})
                       .with_condition(status.condition(IN_PLACE, False, "PutBack", msg,
                                                        now)))
    return msg


def _with_set(live: dict[str, Any], want: dict[str, Any]) -> dict[str, Any]:
    """The record plus the values set (``set``): what a put-back checks each pod still
    holds (direct mode keeps them in ``status.previous.set``, which GitOps does not
    write: its way back is a revert pull request)."""
    return {**live, "set": want}


def _note(st: store.Store, rec: model.Recommendation, cond: model.Condition,
          live: dict[str, Any] | None) -> None:
    """Add the in-place step's condition (and record) to the status the pipeline wrote."""
    r = st.get(rec.kind, rec.id)
    if r is None:
        return
    kept = status.from_dict(r.status)
    if live is not None:
        kept = replace(kept, liveMigration=live)
    report.save_status(st, rec, kept.with_condition(cond))
