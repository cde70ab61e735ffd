"""One batch through the whole flow: intake -> store -> decide -> plan -> execute -> report.

Every stage turns failures of one recommendation into a result for that recommendation;
only unusable settings or an unreachable repository stop the batch. Policy is asked once
for the whole batch (the engine may evaluate it in one call) and nothing is written for a
recommendation unless its decision allows it: no answer, no change.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from reconciler import errors, gitops, settings
from reconciler.adapters import git, opa, store
from reconciler.core import decision, model, planner, policy_input, results, validation

log = logging.getLogger(__name__)


@dataclass
class Batch:
    items: list[results.ItemResult] = field(default_factory=list)
    branch: str = ""
    commit: str = ""
    created_commit: bool = False
    pr_body: str = ""
    pr_title: str = ""
    stats: gitops.IndexStats = field(default_factory=gitops.IndexStats)

    def to_json(self) -> dict[str, Any]:
        return {
            "results": [it.to_json() for it in self.items],
            "branch": self.branch,
            "commit": self.commit,
            "createdCommit": self.created_commit,
            "filesParsed": self.stats.files_parsed,
        }


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _decision_summary(d: decision.Decision) -> model.DecisionSummary:
    return model.DecisionSummary(allowed=d.allow, mode=d.mode, reasons=tuple(d.reasons),
                                 warnings=d.warnings, decisionId=d.decision_id)


def _history(st: store.Store, kinds: set[str]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """The last change applied to each target (what cooldown rules look at), read once per
    batch: one list per kind instead of one per recommendation."""
    last: dict[tuple[str, str, str], dict[str, Any]] = {}
    for kind in sorted(kinds):
        for r in st.list(kind=kind, phase=model.APPLIED):
            key = model.target_key_of(r.kind, r.namespace, r.spec)
            at = str(r.status.get("appliedAt", ""))
            if key not in last or at > last[key]["at"]:
                last[key] = {"recommendationId": r.id, "at": at}
    return last


def _save_status(st: store.Store, rec: model.Recommendation, status: model.Status) -> None:
    """Write the status unless it already says exactly this; one re-read on a conflict."""
    for _ in range(3):
        cur = st.get(rec.kind, rec.id)
        if cur is None:
            return
        new = status.to_dict()
        new.setdefault("observedGeneration", cur.generation)
        if _same_status(cur.status, new):
            return
        try:
            st.update_status(rec.kind, rec.id, new, cur.resource_version)
            return
        except errors.ConflictError:
            continue
    raise errors.ConflictError(f"status of {rec.id} keeps changing under us")


def _same_status(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Equal but for the decision id and condition times: a rerun that reaches the same
    decision and the same state is not a change worth a write."""
    def norm(st: dict[str, Any]) -> dict[str, Any]:
        out = dict(st)
        if isinstance(out.get("decision"), dict):
            out["decision"] = {k: v for k, v in out["decision"].items() if k != "decisionId"}
        out["conditions"] = [{k: v for k, v in c.items() if k != "lastTransitionTime"}
                             for c in out.get("conditions", [])]
        return out
    return norm(old) == norm(new)


def _condition(type_: str, ok: bool, reason: str, message: str, now: str) -> model.Condition:
    return model.Condition(type=type_, status="True" if ok else "False", reason=reason,
                           message=message[:1000], lastTransitionTime=now)


def run(docs: Sequence[object], cfg: settings.Settings, st: store.Store,
        engine: opa.PolicyEngine, *, dry_run: bool = False) -> Batch:
    """Run one batch in GitOps mode against ``cfg.git.repo``.

    With ``dry_run`` everything is decided and planned but nothing is written: no record,
    no status, no commit, no push, no pull-request body.
    """
    now = cfg.now or now_rfc3339()
    if dry_run:
        st = _ReadOnly(st)
    batch = Batch()
    parsed = validation.parse_many(docs)
    valid: list[tuple[model.Recommendation, results.ItemResult]] = []
    for p in parsed:
        if p.recommendation is None:
            batch.items.append(results.ItemResult(
                id=p.raw_id, phase=model.REJECTED, errors=list(p.errors),
                message="invalid recommendation: nothing applied"))
            continue
        rec = p.recommendation
        item = results.ItemResult(
            id=rec.id, kind=rec.kind, namespace=rec.namespace,
            target=rec.target_label, savings=rec.projectedSavings)
        batch.items.append(item)
        st.upsert(rec.kind, rec.id, rec.namespace, rec.name, rec.spec_dict())
        valid.append((rec, item))

    # A later recommendation for the same target supersedes an earlier one in the batch.
    latest: dict[tuple[str, str, str], str] = {}
    for rec, _ in valid:
        latest[rec.target_key] = rec.id
    live: list[tuple[model.Recommendation, results.ItemResult]] = []
    for rec, item in valid:
        if latest[rec.target_key] != rec.id:
            item.phase = model.SUPERSEDED
            item.message = f"superseded by {latest[rec.target_key]} for the same target"
            _save_status(st, rec, model.Status(phase=model.SUPERSEDED, message=item.message))
            continue
        stored = st.get(rec.kind, rec.id)
        if stored is not None and stored.phase in (model.APPLIED, model.ROLLED_BACK):
            item.phase = stored.phase
            item.message = f"already {stored.phase.lower()}: nothing to do"
            continue
        live.append((rec, item))

    ws = git.Workspace.open(cfg.git.repo, cfg.git.clone_dir, cfg.git.base)
    keys = [r.target_key for r, _ in live if isinstance(r, model.WorkloadRecommendation)]
    index = gitops.build_index(ws.root, keys, cfg.git.default_namespace, batch.stats)

    targets: dict[str, tuple[gitops.Location | None, dict[str, Any] | None, str]] = {}
    for rec, _ in live:
        if not isinstance(rec, model.WorkloadRecommendation):
            targets[rec.id] = (None, None, "node group recommendations need a node-group "
                               "layout in GitOps mode, which this repository does not configure")
            continue
        locs = index.get(rec.target_key, [])
        if not locs:
            targets[rec.id] = (None, None, f"{rec.targetRef.kind}/{rec.targetRef.name} in "
                               f"namespace {rec.namespace} is not defined in the repository")
        elif len(locs) > 1:
            where = " and ".join(f"{loc.path} (document {loc.doc_index + 1}, line {loc.line})"
                                 for loc in locs)
            targets[rec.id] = (None, None, f"ambiguous target: defined in {where}")
        else:
            targets[rec.id] = (locs[0], gitops.read_document(ws.root, locs[0]), "")

    history = _history(st, {rec.kind for rec, _ in live})
    inputs = [policy_input.build(rec, targets[rec.id][1], now=now,
                                 history={"lastApplied": history.get(rec.target_key)},
                                 operator_namespace=cfg.operator_namespace)
              for rec, _ in live]
    decisions = engine.decide_many(inputs) if inputs else []

    to_write: list[tuple[model.Recommendation, results.ItemResult, gitops.Location]] = []
    for (rec, item), dec in zip(live, decisions, strict=True):
        item.decision = dec
        loc, target, problem = targets[rec.id]
        status = model.Status(decision=_decision_summary(dec),
                              projectedSavings=rec.projectedSavings.display()
                              if rec.projectedSavings else "")
        if not dec.allow:
            item.phase = model.REJECTED
            item.message = "refused by policy"
            _save_status(st, rec, replace(status, phase=model.REJECTED, message="; ".join(
                dec.reasons)).with_condition(_condition(
                    "Approved", False, "PolicyDenied", "; ".join(dec.reasons), now)))
            continue
        if dec.mode == "audit":
            item.phase = model.APPROVED
            item.message = "audit mode: recorded, not applied"
            _save_status(st, rec, replace(status, phase=model.APPROVED, message=item.message))
            continue
        if loc is None:
            item.phase = model.FAILED
            item.message = problem
            _save_status(st, rec, replace(status, phase=model.FAILED, message=problem)
                         .with_condition(_condition("Applied", False, "TargetNotFound",
                                                    problem, now)))
            continue
        try:
            item.plan = planner.plan(rec, dec, target)
        except errors.PermanentError as e:
            item.phase = model.FAILED
            item.message = str(e)
            _save_status(st, rec, replace(status, phase=model.FAILED, message=str(e)))
            continue
        if item.plan.empty:
            item.phase = model.APPLIED
            item.message = "the repository already holds these values"
            _save_status(st, rec, replace(status, phase=model.APPLIED, appliedAt=now,
                                          message=item.message))
            continue
        to_write.append((rec, item, loc))

    if to_write and dry_run:
        for _, item, _ in to_write:
            assert item.plan is not None
            item.phase = model.APPROVED
            item.message = "dry run: would change " + ", ".join(
                f"{e.container}.{e.section}.{e.resource} {e.old} -> {e.new}"
                for e in item.plan.resources) + (
                f" replicas {item.plan.replicas[0]} -> {item.plan.replicas[1]}"
                if item.plan.replicas else "")
    elif to_write:
        branch = gitops.branch_name(cfg.git.branch_prefix, "batch",
                                    [(r.id, r.spec_dict()) for r, _, _ in to_write])
        ids = ", ".join(r.id for r, _, _ in to_write)
        message = (f"dakr: apply {len(to_write)} recommendation(s)\n\n"
                   f"Recommendations: {ids}\n")
        written = gitops.write(
            ws, cfg.git.base, branch,
            [(r.id, loc, it.plan) for r, it, loc in to_write if it.plan is not None],
            default_namespace=cfg.git.default_namespace, message=message,
            retries=cfg.git.push_retries)
        batch.branch, batch.commit = written.branch, written.commit
        batch.created_commit = written.created_commit
        for rec, item, _ in to_write:
            assert item.plan is not None
            item.branch, item.commit = written.branch, written.commit
            item.file, item.lines = written.lines.get(rec.id, ("", []))
            item.phase = model.APPLYING
            item.message = f"pull request open on {written.branch}"
            pr = model.PullRequestRef(url=str(cfg.git.pr_body_path or ""), branch=written.branch,
                                      commit=written.commit, state="open")
            assert item.decision is not None
            _save_status(st, rec, model.Status(
                phase=model.APPLYING, decision=_decision_summary(item.decision),
                previous=item.plan.previous(), pullRequest=pr,
                projectedSavings=rec.projectedSavings.display() if rec.projectedSavings else "",
                message=item.message,
            ).with_condition(_condition("PullRequestOpen", True, "Opened",
                                        f"branch {written.branch}", now)))
        batch.pr_title = results.pull_request_title(batch.items)
        batch.pr_body = results.pull_request_body(batch.items, branch=written.branch,
                                                  base=cfg.git.base)
        if cfg.git.pr_body_path is not None:
            _write_if_changed(cfg.git.pr_body_path,
                              f"# {batch.pr_title}\n\n{batch.pr_body}")
    return batch


class _ReadOnly:
    """A store view for dry runs: reads pass through, writes are dropped."""

    def __init__(self, inner: store.Store) -> None:
        self._inner = inner

    def get(self, kind: str, rec_id: str) -> store.Record | None:
        return self._inner.get(kind, rec_id)

    def list(self, kind: str | None = None, phase: str | None = None) -> list[store.Record]:
        return self._inner.list(kind, phase)

    def upsert(self, kind: str, rec_id: str, namespace: str, name: str,
               spec: dict[str, Any]) -> store.UpsertResult:
        cur = self._inner.get(kind, rec_id)
        rec = cur or store.Record(kind, rec_id, namespace, name, spec)
        return store.UpsertResult(rec, created=cur is None, changed=cur is None or
                                  cur.spec != spec)

    def update_status(self, kind: str, rec_id: str, status: dict[str, Any],
                      resource_version: str) -> store.Record:
        cur = self._inner.get(kind, rec_id)
        if cur is None:
            raise errors.NotFoundError(f"{kind} {rec_id} not found")
        return cur

    def watch(self, since: str = "", timeout: float = 0.0) -> Iterator[store.Change]:
        return self._inner.watch(since, timeout)

    def close(self) -> None:
        self._inner.close()


def _write_if_changed(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")
