"""Audit mode: every recommendation is taken in, decided and reported; nothing is written.

An operator with neither a repository (``--repo``, ``DAKR_GITOPS_REPO_URL``) nor direct
mode has no writer. Failing at start would leave a fresh ``helm install`` with nothing to
show, and denying would hide what the policy thinks; so it records each decision, says in
the status that nothing was written because of the mode, and names the setting that gives
it a writer. When the process is later started with a writer, the recommendations it only
audited are decided again (``needs_work`` looks for the ``AuditMode`` condition).

Where the cluster can be read (the custom-resource store), the policy sees the live
target and its facts, as it would in direct mode, so the audit says what would happen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from reconciler.adapters import kube
from reconciler.adapters.opa import engine as opa
from reconciler.adapters.store import port as store
from reconciler.domain import errors, model, planner, policy_input, status
from reconciler.flow import batch as flow
from reconciler.flow import decide, report

AUDIT_MODE = "AuditMode"
# What gives an audit-mode operator a writer, for the message each status carries.
HOW = ("this operator has no writer (audit mode): set a repository (--repo, "
       "DAKR_GITOPS_REPO_URL, chart value gitops.repoURL) for pull requests, or direct "
       "mode (--mode direct, DAKR_MODE, chart value mode=direct)")


def run(docs: Sequence[object], st: store.Store, engine: opa.PolicyEngine,
        api: kube.Kube | None, *, now: str, operator: policy_input.Operator, node_facts: bool,
        dry_run: bool = False) -> flow.Batch:
    """Take in, decide and record ``docs``; with ``dry_run`` nothing is recorded either."""
    if dry_run:
        st = flow.ReadOnly(st)
    out = flow.Batch()
    live = flow.intake(docs, st, out)
    cluster: dict[str, dict[str, Any]] | None = None
    if api is not None:
        for w in live:
            _read_target(api, w)
        live, cluster = decide.cluster_facts(st, api, live, now, nodes=node_facts)
    decide.decide(st, engine, live, now, cluster,
                  operator=replace(operator, mode="audit"))
    for w in live:
        dec = w.item.decision
        assert dec is not None
        if dec.allow:
            _record(st, w, now)
        else:
            decide.plan_item(st, w, now)  # refusals, no answer: as with any writer
    return out


def _read_target(api: kube.Kube, w: flow.Work) -> None:
    rec = w.rec
    if not isinstance(rec, model.WorkloadRecommendation):
        return  # a node group: its facts are the nodes' (decide.cluster_facts)
    try:
        w.target = api.workload(rec.targetRef.kind, rec.namespace, rec.targetRef.name)
    except errors.ReconcilerError as e:
        w.problem = f"cannot read {rec.target_label}: {e}"
        return
    if w.target is None:
        w.problem = f"{rec.target_label} not found in namespace {rec.namespace}"


def _record(st: store.Store, w: flow.Work, now: str) -> None:
    """Allowed, with no writer to carry it out: Approved, with what it would change when
    the target is known, and the settings that give the operator a writer. (Unrouted
    changes follow the operator's own mode, audit here; a rule may still route some to
    gitops or direct, which the message names.)"""
    dec = w.item.decision
    assert dec is not None
    what = ("" if dec.mode == "audit" else
            " for " + decide.WRITER_SETTINGS.get(dec.mode, (f"mode {dec.mode}", ""))[0]
            + f" (mode {dec.mode})")
    would = ""
    if w.target is not None and isinstance(w.rec, model.WorkloadRecommendation):
        try:
            plan = planner.plan(w.rec, dec, w.target)
        except errors.PermanentError:
            plan = None
        if plan is not None:
            would = (": nothing to change" if plan.empty
                     else ": would change " + ", ".join(decide.describe_plan(plan)))
    w.item.phase = model.APPROVED
    w.item.message = f"allowed by policy{what}{would}; nothing written: {HOW}"
    report.save_status(st, w.rec, replace(
        status.decided(w.rec, dec), phase=model.APPROVED, message=w.item.message
    ).with_condition(status.condition("Applied", False, AUDIT_MODE, w.item.message, now)))
