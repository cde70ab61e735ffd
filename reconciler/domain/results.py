"""Batch results as data, and the three ways they are shown: JSON, a terminal table, and a
pull-request body. Pure: the same results always render the same bytes, so a rerun that
changes nothing rewrites nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from reconciler.domain import decision, errors, model, planner
from reconciler.domain import text as txt


@dataclass
class ItemResult:
    """What happened to one recommendation of a batch."""

    id: str
    kind: str = model.WORKLOAD
    namespace: str = ""
    target: str = ""  # "Deployment/cartservice"
    phase: str = model.PENDING
    decision: decision.Decision | None = None
    errors: list[errors.FieldError] = field(default_factory=list)
    message: str = ""
    plan: planner.Plan | None = None
    savings: model.Savings | None = None
    file: str = ""
    lines: list[int] = field(default_factory=list)
    branch: str = ""
    commit: str = ""
    pull_request: str = ""
    # Why a temporary outcome will be tried again (the policy or the API unavailable);
    # empty for a terminal one. The phase of a temporary outcome stays Pending.
    retry: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "kind": self.kind, "phase": self.phase}
        if self.namespace:
            out["namespace"] = self.namespace
        if self.target:
            out["target"] = self.target
        out["decision"] = None if self.decision is None else {
            "allowed": self.decision.allow,
            "mode": self.decision.mode,
            "reasons": self.decision.reasons,
            "warnings": list(self.decision.warnings),
            **({"policyRevision": self.decision.policy_revision}
               if self.decision.policy_revision else {}),
        }
        out["errors"] = [{"field": e.field, "reason": e.reason} for e in self.errors]
        if self.message:
            out["message"] = self.message
        if self.plan is not None and not self.plan.empty:
            out["changes"] = [
                {"container": e.container, "field": f"{e.section}.{e.resource}",
                 "old": e.old, "new": e.new} for e in self.plan.resources
            ]
            if self.plan.replicas is not None:
                out["changes"].append({"field": "replicas", "old": self.plan.replicas[0],
                                       "new": self.plan.replicas[1]})
        if self.file:
            out["file"] = self.file
            out["lines"] = self.lines
        if self.branch:
            out["branch"] = self.branch
        if self.commit:
            out["commit"] = self.commit
        if self.pull_request:
            out["pullRequest"] = self.pull_request
        if self.retry:
            out["retry"] = self.retry
        return out


def _reason(it: ItemResult) -> str:
    """Why an item was not applied: its field errors, else the policy's deny reasons, else
    its message."""
    if it.errors:
        return "; ".join(str(e) for e in it.errors)
    if it.decision is not None and it.decision.deny:
        return "; ".join(it.decision.reasons)
    return it.message


def _md_number(n: object) -> str:
    """A replica count: ours when it is an int, otherwise read from a manifest (untrusted)."""
    return str(n) if isinstance(n, int) and not isinstance(n, bool) else txt.md_code(str(n))


def _arrow(old: object, new: object) -> str:
    return f"{'unset' if old is None else old} → {new}"


# Widths of the summary table's untrusted columns (the longest value, note included).
ID_WIDTH = 64
TARGET_WIDTH = 100
REASON_WIDTH = 80
# A workload's name in a pull-request title.
TITLE_NAME_LIMIT = 60


def summary_table(items: Sequence[ItemResult]) -> str:
    """The terminal summary: one row per recommendation, one line per row whatever the
    values hold (no line break, no escape sequence; see ``text.terminal``)."""
    rows = [("ID", "TARGET", "PHASE", "MODE", "CHANGES", "SAVINGS", "REASON")]
    for it in items:
        changes = ""
        if it.plan is not None:
            parts = [f"{e.container}.{e.section}.{e.resource} {_arrow(e.old, e.new)}"
                     for e in it.plan.resources]
            if it.plan.replicas is not None:
                parts.append(f"replicas {_arrow(*it.plan.replicas)}")
            changes = f"{len(parts)} value(s)" if parts else "none"
        # Every cell that did not come from us is escaped and bounded (domain/text.py).
        rows.append((
            txt.terminal(it.id, ID_WIDTH) or "(no id)",
            txt.terminal(f"{it.namespace}/{it.target}" if it.namespace else it.target,
                         TARGET_WIDTH),
            txt.terminal(it.phase, ID_WIDTH),
            it.decision.mode if it.decision is not None and it.decision.allow else "-",
            changes or "-",
            it.savings.display() if it.savings else "-",
            txt.terminal(_reason(it), REASON_WIDTH) or "-",
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in rows]
    return "\n".join(lines)


def pull_request_title(items: Sequence[ItemResult]) -> str:
    """One line; the workloads' names in code spans (forges render inline Markdown in
    titles, GitLab references too)."""
    changed = [it for it in items if it.plan is not None and not it.plan.empty and it.commit]
    targets = sorted({it.target.split("/")[-1] for it in changed})
    head = ", ".join(txt.md_code(t, TITLE_NAME_LIMIT) for t in targets[:3])
    if len(targets) > 3:
        head += f" and {len(targets) - 3} more"
    return f"dakr: apply {len(changed)} recommendation(s) to {head or 'no workloads'}"


def pull_request_body(items: Sequence[ItemResult], *, branch: str, base: str) -> str:
    """Markdown for reviewers: per workload before -> after, savings, decision, ids, rollback.

    Every value that did not come from us (ids, names, values read from the repository,
    policy reasons and warnings, file paths, messages) is in a code span it cannot close,
    escaped and bounded (``text.md_code``; ``text.md_cell`` in tables): no link, image,
    mention, HTML or table row can come from a recommendation, a policy or a repository.
    """
    changed = [it for it in items if it.plan is not None and not it.plan.empty and it.commit]
    changed_ids = {id(it) for it in changed}
    refused = [it for it in items if id(it) not in changed_ids and it.phase in (
        model.REJECTED, model.FAILED)]
    total = sum(it.savings.monthly for it in changed if it.savings is not None)
    out = [
        "## dakr reconciler: cost recommendations",
        "",
        f"This pull request applies **{len(changed)}** recommendation(s) approved by policy "
        f"(projected savings **${total:,.2f}/month**). Only the changed values move in the diff.",
        "",
    ]
    for it in changed:
        assert it.plan is not None
        out += [f"### {txt.md_code(f'{it.namespace}/{it.target}')}", ""]
        if it.plan.resources:
            out += ["| container | resource | before | after |", "| --- | --- | --- | --- |"]
            for e in it.plan.resources:
                before = txt.md_cell(e.old) if e.old is not None else "(unset)"
                out.append(f"| {txt.md_cell(e.container)} | "
                           f"{txt.md_cell(f'{e.section}.{e.resource}')} | "
                           f"{before} | {txt.md_cell(e.new)} |")
        if it.plan.replicas is not None:
            old, new = it.plan.replicas
            out += ["", f"Replicas: {_md_number(old) if old is not None else '(unset, 1)'} → "
                        f"{_md_number(new)}"]
        out += [""]
        facts = [f"recommendation {txt.md_code(it.id)}"]
        if it.savings is not None:
            facts.append(f"projected savings {it.savings.display()}")
        if it.decision is not None:
            facts.append(f"policy: allowed, mode {txt.md_code(it.decision.mode)}" + (
                f", revision {txt.md_code(it.decision.policy_revision)}"
                if it.decision.policy_revision else ""))
        out.append("- " + "; ".join(facts))
        if it.decision is not None:
            out += [f"- warning: {txt.md_code(w)}" for w in it.decision.warnings]
        if it.file:
            out.append(f"- file: {txt.md_code(it.file)} (lines {', '.join(map(str, it.lines))})")
        out.append("")
    if refused:
        out += ["### Not applied", "", "| recommendation | target | phase | reason |",
                "| --- | --- | --- | --- |"]
        for it in refused:
            out.append(f"| {txt.md_cell(it.id or '(no id)')} | "
                       f"{txt.md_cell(it.target or '-')} | {it.phase} | "
                       f"{txt.md_cell(_reason(it))} |")
        out.append("")
    out += [
        "### Rollback",
        "",
        f"Close this pull request without merging to reject the change. After merging, revert "
        f"the merge commit of {txt.md_code(branch)} (for example `git revert -m 1 <merge-sha>` "
        f"on {txt.md_code(base)});"
        " the previous values are also recorded in each recommendation's `status.previous`.",
        "",
        "Recommendation ids: " + ", ".join(txt.md_code(it.id) for it in changed),
        "",
    ]
    return "\n".join(out)
