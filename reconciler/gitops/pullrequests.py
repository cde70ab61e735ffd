"""Following the pull requests the writer opened: merged -> Applied, closed -> Rejected;
and the revert pull requests: merged -> RolledBack, closed -> the change stays.

A GitOps change is not applied when its pull request opens but when a reviewer merges it,
so the recommendation stays ``Applying`` until then; this module carries it to its end.
"""

from __future__ import annotations

from reconciler.adapters.forge import port as forge
from reconciler.adapters.store import port as store
from reconciler.domain import errors, model, results, status
from reconciler.gitops import revert


def follow_all(st: store.Store, prs: forge.Forge, now: str) -> list[results.ItemResult]:
    """Every open pull request, changes and reverts alike (what a resync looks at)."""
    return follow(st, prs, now) + follow_reverts(st, prs, now)


def follow(st: store.Store, prs: forge.Forge, now: str) -> list[results.ItemResult]:
    """Carry open pull requests to their end: merged -> Applied (at the merge time), closed
    without merge -> Rejected (PullRequestClosed, not proposed again)."""
    out: list[results.ItemResult] = []
    for kind in model.KINDS:
        for r in st.list(kind=kind, phase=model.APPLYING):
            ref = r.status.get("pullRequest") or {}
            number = ref.get("number")
            if not isinstance(number, int) or number <= 0:
                continue
            phase, applied_at = forge.follow(prs, number)
            if phase == model.APPLYING:
                continue
            new = dict(r.status)
            if phase == model.APPLIED:
                new.update(phase=phase, appliedAt=applied_at or now,
                           message=f"pull request #{number} merged")
                cond = status.condition("Applied", True, "PullRequestMerged",
                                        f"#{number} merged", now)
            else:
                new.update(phase=phase, message=f"pull request #{number} closed unmerged")
                cond = status.condition("Applied", False, forge.REASON_CLOSED,
                                        f"#{number} closed without merging", now)
            new = status.set_condition(new, cond)
            new["pullRequest"] = {**ref, "state": forge.MERGED if phase == model.APPLIED
                                  else forge.CLOSED}
            try:
                st.update_status(r.kind, r.id, new, r.resource_version)
            except errors.ConflictError:
                continue  # someone else moved it; the next pass looks again
            out.append(results.ItemResult(
                id=r.id, kind=r.kind, namespace=r.namespace, phase=phase,
                target="/".join(model.target_key_of(r.kind, r.namespace, r.spec)[1:]),
                message=str(new["message"]), pull_request=str(ref.get("url", ""))))
    return out


def follow_reverts(st: store.Store, prs: forge.Forge, now: str) -> list[results.ItemResult]:
    """Revert pull requests to their end: merged -> RolledBack; closed -> the change stays."""
    out: list[results.ItemResult] = []
    for kind in model.KINDS:
        for r in st.list(kind=kind, phase=model.APPLIED):
            conds = r.status.get("conditions", [])
            if not any(c.get("type") == revert.ROLLBACK_PENDING and c.get("status") == "True"
                       for c in conds):
                continue
            ref = r.status.get("pullRequest") or {}
            number = ref.get("number")
            if not isinstance(number, int):
                continue
            phase, _ = forge.follow(prs, number)
            if phase == model.APPLYING:
                continue
            merged = phase == model.APPLIED
            message = (f"rolled back by #{number}" if merged
                       else f"revert #{number} closed: the change stays")
            new = status.set_condition(r.status, status.condition(
                revert.ROLLBACK_PENDING, False, "RevertMerged" if merged else "RevertClosed",
                message, now))
            new["phase"] = model.ROLLED_BACK if merged else model.APPLIED
            new["message"] = message
            new["pullRequest"] = {**ref, "state": forge.MERGED if merged else forge.CLOSED}
            try:
                st.update_status(r.kind, r.id, new, r.resource_version)
            except errors.ConflictError:
                continue
            out.append(results.ItemResult(id=r.id, kind=r.kind, namespace=r.namespace,
                                          phase=str(new["phase"]), message=message))
    return out
