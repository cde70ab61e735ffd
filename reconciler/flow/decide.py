"""The decide stage: the cluster facts policy needs, one policy call for the batch, and
what each decision leaves to write.

Fail closed throughout: a recommendation whose facts could not be read is not decided, an
engine that cannot answer denies (the engine's job), and nothing is planned for a
recommendation its decision does not allow.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from reconciler.adapters import kube
from reconciler.adapters.opa import engine as opa
from reconciler.adapters.store import port as store
from reconciler.domain import decision, errors, model, planner, policy_input, results, status
from reconciler.flow import batch, facts, report

log = logging.getLogger(__name__)


def cluster_facts(st: store.Store, api: kube.Kube, live: Sequence[batch.Work], now: str, *,
                  nodes: bool) -> tuple[list[batch.Work], dict[str, dict[str, Any]]]:
    """The live cluster's facts for each recommendation, and the ones that can be decided.

    Fail closed: a recommendation whose facts could not be read is not decided, since a
    policy that saw ``hpa: null`` for want of a read would allow what it must refuse. A
    temporary failure (the API unreachable) leaves it Pending with nothing written, so the
    next batch tries again; a permanent one (a forbidden LIST) fails it with the reason, as
    a forbidden write would. Recommendations whose target is already missing are left to
    fail for that reason.
    """
    asked = [w for w in live if not w.problem]
    got = facts.collect(api, [w.rec for w in asked], {w.rec.id: w.target for w in asked},
                        nodes=nodes)
    bad = facts.failures(got)
    for w in asked:
        err = bad.get(w.rec.id)
        if err is None:
            continue
        log.warning("%s: not decided: %s", w.rec.id, err)
        if isinstance(err, errors.TemporaryError):
            w.item.phase, w.item.retry = model.PENDING, "ClusterFactsUnavailable"
            w.item.message = f"not decided: {err} (tried again)"
            try:
                report.save_status(st, w.rec, status.retrying(
                    model.Status(), w.item.retry, w.item.message, now))
            except errors.ReconcilerError as e:
                log.warning("%s: could not record the retry: %s", w.rec.id, e)
            continue
        w.item.phase, w.item.message = model.FAILED, f"not decided: {err}"
        report.save_status(st, w.rec, model.Status(phase=model.FAILED, message=w.item.message)
                           .with_condition(status.condition(
                               "Approved", False, "ClusterFactsUnreadable", w.item.message,
                               now)))
    return [w for w in live if w.rec.id not in bad], facts.cluster_map(got)


def decide(st: store.Store, engine: opa.PolicyEngine, live: Sequence[batch.Work], now: str,
           cluster: Mapping[str, Mapping[str, Any]] | None = None, *,
           operator: policy_input.Operator) -> None:
    """Ask policy about the whole batch at once; no answer means deny (the engine's job).

    ``cluster`` adds facts per recommendation id (the live HPA, say) to the input;
    ``operator`` is what the input says of this process (its mode: where the library sends
    a change its configuration does not route).
    """
    last = batch.history(st, {w.rec.kind for w in live})
    inputs = [policy_input.build(w.rec, w.target, now=now,
                                 cluster=(cluster or {}).get(w.rec.id),
                                 history={"lastApplied": last.get(w.rec.target_key)},
                                 operator=operator)
              for w in live]
    decisions = engine.decide_many(inputs) if inputs else []
    for w, dec in zip(live, decisions, strict=True):
        w.item.decision = dec


# What a person must set to give the operator a writer it lacks.
WRITER_SETTINGS = {
    "gitops": ("a pull request", "no repository is configured: set --repo "
               "(DAKR_GITOPS_REPO_URL)"),
    "direct": ("a direct change through the Kubernetes API", "this operator does not write "
               "to a cluster: run it with --mode direct (DAKR_MODE) or --store kube"),
}
WRITER_NOT_CONFIGURED = "WriterNotConfigured"


@dataclass(frozen=True)
class Writers:
    """Which writer runs this batch, and which ones the process has."""

    mine: str                        # gitops | direct
    available: frozenset[str]
    routed: bool = True              # False: a handed-over batch carries out every change


def route(st: store.Store, w: batch.Work, writers: Writers, into: batch.Batch,
          now: str) -> bool:
    """True when this writer carries the decision out (or plan_item settles it: a refusal,
    audit). A decision for the other writer joins ``into.handoff`` when the process has
    it, else it ends Failed with a WriterNotConfigured condition naming the setting."""
    dec = w.item.decision
    assert dec is not None
    if not writers.routed or not dec.allow or dec.mode in ("audit", writers.mine):
        return True
    what, how = WRITER_SETTINGS.get(dec.mode, (f"mode {dec.mode}", "no writer for it"))
    if dec.mode in writers.available:
        w.item.phase = model.APPROVED
        w.item.message = f"routed to {what} (policy mode {dec.mode})"
        into.handoff.append(w)
        return False
    w.item.phase = model.FAILED
    w.item.message = f"needs {what} (policy mode {dec.mode}); {how}"
    report.save_status(st, w.rec, replace(status.decided(w.rec, dec), phase=model.FAILED,
                                          message=w.item.message).with_condition(
        status.condition("Applied", False, WRITER_NOT_CONFIGURED, w.item.message, now)))
    return False


def plan_item(st: store.Store, w: batch.Work, now: str) -> bool:
    """Settle what the decision and the target allow; True when there is something to write."""
    rec, item, dec = w.rec, w.item, w.item.decision
    assert dec is not None
    base = status.decided(rec, dec)
    if dec.policy_unavailable:
        # No answer is not a refusal: nothing is written to the target, and the same
        # question is asked again once the policy engine answers.
        item.phase, item.retry = model.PENDING, decision.POLICY_UNAVAILABLE
        item.message = "not decided: " + "; ".join(dec.reasons)
        report.save_status(st, rec, status.retrying(base, decision.POLICY_UNAVAILABLE,
                                                    item.message, now))
        return False
    if not dec.allow:
        item.phase, item.message = model.REJECTED, "refused by policy"
        reasons = "; ".join(dec.reasons)
        report.save_status(st, rec, replace(base, phase=model.REJECTED, message=reasons)
                           .with_condition(status.condition("Approved", False, "PolicyDenied",
                                                            reasons, now)))
        return False
    if dec.mode == "audit":
        item.phase, item.message = model.APPROVED, "audit mode: recorded, not applied"
        report.save_status(st, rec, replace(base, phase=model.APPROVED, message=item.message))
        return False
    if w.target is None:
        item.phase, item.message = model.FAILED, w.problem
        report.save_status(st, rec, replace(base, phase=model.FAILED, message=w.problem)
                           .with_condition(status.condition("Applied", False, "TargetNotFound",
                                                            w.problem, now)))
        return False
    try:
        item.plan = (planner.plan_node_group(rec, w.target)
                     if isinstance(rec, model.NodeGroupRecommendation)
                     else planner.plan(rec, dec, w.target))
    except errors.PermanentError as e:
        item.phase, item.message = model.FAILED, str(e)
        report.save_status(st, rec, replace(base, phase=model.FAILED, message=str(e)))
        return False
    if item.plan.empty:
        item.phase, item.message = model.APPLIED, "the repository already holds these values"
        report.save_status(st, rec, replace(base, phase=model.APPLIED, appliedAt=now,
                                            message=item.message))
        return False
    return True


def describe_plan(plan: planner.Plan) -> list[str]:
    """The values a plan changes, one "what old -> new" each, for people."""
    changes = [f"{e.container}.{e.section}.{e.resource} {e.old} -> {e.new}"
               for e in plan.resources]
    if plan.replicas is not None:
        changes.append(f"replicas {plan.replicas[0]} -> {plan.replicas[1]}")
    if plan.hpa is not None:
        changes.extend(f"hpa.{k} {plan.hpa[0].get(k)} -> {v}" for k, v in plan.hpa[1].items())
    return changes


def mark_dry_run(item: results.ItemResult) -> None:
    assert item.plan is not None
    item.phase = model.APPROVED
    item.message = "dry run: would change " + ", ".join(describe_plan(item.plan))
