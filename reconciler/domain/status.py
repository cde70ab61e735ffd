"""Status bookkeeping as pure functions: conditions, and the status a decision starts from.

Both writers (GitOps and direct) and the operator write the same status shapes; keeping
the builders here, apart from any mode, means a condition or a timestamp is spelled one
way everywhere and no mode has to import another to write one (timestamps: ``clock.rfc3339``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.domain import decision, model

MESSAGE_LIMIT = 1000  # condition messages are for people; the audit log has the rest

# The condition a temporary outcome leaves: why the recommendation is not settled yet and
# (once the operator has scheduled it) when it is tried next. Its phase stays Pending.
RETRYING = "Retrying"


def condition(type_: str, ok: bool, reason: str, message: str, now: str) -> model.Condition:
    """A metav1.Condition with True/False from ``ok`` and the message cut to a readable size."""
    return model.Condition(type=type_, status="True" if ok else "False", reason=reason,
                           message=message[:MESSAGE_LIMIT], lastTransitionTime=now)


def retrying(base: model.Status, reason: str, message: str, now: str) -> model.Status:
    """A temporary outcome: still Pending, with a Retrying condition saying why."""
    return model.Status(phase=model.PENDING, decision=base.decision,
                        projectedSavings=base.projectedSavings, previous=base.previous,
                        message=message).with_condition(
        condition(RETRYING, True, reason, message, now))


def set_condition(status: Mapping[str, Any], cond: model.Condition) -> dict[str, Any]:
    """``status`` (a stored status dict) with ``cond`` replacing any condition of its type."""
    out = dict(status)
    out["conditions"] = [*(c for c in status.get("conditions") or []
                           if c.get("type") != cond.type), cond.to_dict()]
    return out


def decision_summary(d: decision.Decision) -> model.DecisionSummary:
    return model.DecisionSummary(allowed=d.allow, mode=d.mode, reasons=tuple(d.reasons),
                                 warnings=d.warnings, decisionId=d.decision_id,
                                 policyRevision=d.policy_revision)


def decided(rec: model.Recommendation, dec: decision.Decision) -> model.Status:
    """The status every outcome of a decision starts from: the decision and the savings."""
    return model.Status(decision=decision_summary(dec), projectedSavings=(
        rec.projectedSavings.display() if rec.projectedSavings else ""))


def same(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Equal but for the decision id and condition times: a rerun that reaches the same
    decision and the same state is not a change worth a write."""
    def norm(st: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(st)
        if isinstance(out.get("decision"), dict):
            out["decision"] = {k: v for k, v in out["decision"].items() if k != "decisionId"}
        out["conditions"] = [{k: v for k, v in c.items() if k != "lastTransitionTime"}
                             for c in out.get("conditions", [])]
        return out
    return norm(old) == norm(new)


def from_dict(status: Mapping[str, Any]) -> model.Status:
    """A stored status read back as ``model.Status`` (unknown keys dropped), so that a
    writer can change one part of it and keep the rest."""
    conds = tuple(model.Condition(**{k: v for k, v in c.items() if k in (
        "type", "status", "reason", "message", "lastTransitionTime", "observedGeneration")})
        for c in status.get("conditions") or [])
    d = status.get("decision")
    summary = model.DecisionSummary(
        allowed=bool(d.get("allowed")), mode=str(d.get("mode", "direct")),
        reasons=tuple(d.get("reasons") or ()), warnings=tuple(d.get("warnings") or ()),
        decisionId=str(d.get("decisionId", "")),
        policyRevision=str(d.get("policyRevision", ""))) if isinstance(d, dict) else None
    pr = status.get("pullRequest")
    ref = model.PullRequestRef(**{k: v for k, v in pr.items() if k in (
        "url", "number", "branch", "commit", "state")}) if isinstance(pr, dict) else None
    return model.Status(
        phase=str(status.get("phase", model.PENDING)), conditions=conds, decision=summary,
        previous=dict(status.get("previous") or {}), pullRequest=ref,
        liveMigration=dict(status.get("liveMigration") or {}),
        appliedAt=str(status.get("appliedAt", "")),
        projectedSavings=str(status.get("projectedSavings", "")),
        message=str(status.get("message", "")))
