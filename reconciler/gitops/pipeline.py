"""One batch through the whole flow: intake -> store -> decide -> plan -> execute -> report.

Every stage turns failures of one recommendation into a result for that recommendation;
only unusable settings or an unreachable repository stop the batch. Policy is asked once
for the whole batch (the engine may evaluate it in one call) and nothing is written for a
recommendation unless its decision allows it: no answer, no change.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from reconciler.adapters import git, kube
from reconciler.adapters.forge import port as forge
from reconciler.adapters.opa import engine as opa
from reconciler.adapters.store import port as store
from reconciler.config import settings
from reconciler.domain import decision, errors, model, planner, policy_input, results, validation
from reconciler.flow import facts
from reconciler.gitops import layout
from reconciler.gitops import writer as gitops

log = logging.getLogger(__name__)


@dataclass
class Batch:
    items: list[results.ItemResult] = field(default_factory=list)
    branch: str = ""
    commit: str = ""
    created_commit: bool = False
    pull_requests: list[forge.PullRequest] = field(default_factory=list)
    stats: layout.Stats = field(default_factory=layout.Stats)

    def to_json(self) -> dict[str, Any]:
        return {
            "results": [it.to_json() for it in self.items],
            "pullRequests": [{"number": p.number, "url": p.url, "branch": p.branch,
                              "state": p.state} for p in self.pull_requests],
            "branch": self.branch,
            "commit": self.commit,
            "createdCommit": self.created_commit,
            "filesParsed": self.stats.files_parsed,
        }


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def decision_summary(d: decision.Decision) -> model.DecisionSummary:
    return model.DecisionSummary(allowed=d.allow, mode=d.mode, reasons=tuple(d.reasons),
                                 warnings=d.warnings, decisionId=d.decision_id)


def history(st: store.Store, kinds: set[str]) -> dict[tuple[str, str, str], dict[str, Any]]:
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


def save_status(st: store.Store, rec: model.Recommendation, status: model.Status) -> None:
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


def condition(type_: str, ok: bool, reason: str, message: str, now: str) -> model.Condition:
    return model.Condition(type=type_, status="True" if ok else "False", reason=reason,
                           message=message[:1000], lastTransitionTime=now)


def run(docs: Sequence[object], cfg: settings.Settings, st: store.Store,
        engine: opa.PolicyEngine, prs: forge.Forge, *, dry_run: bool = False,
        cluster_api: kube.Kube | None = None) -> Batch:
    """Run one batch in GitOps mode, holding the lock of the repository's working clone.

    ``cluster_api``: read the live cluster's facts (HPA, PDBs, node facts) for the policy
    input; without it the policy sees the repository's manifests only.
    """
    with git.repo_lock(cfg.git.clone_dir):
        return _run(docs, cfg, st, engine, prs, dry_run=dry_run, cluster_api=cluster_api)


@dataclass
class Work:
    """One valid recommendation on its way through the batch."""

    rec: model.Recommendation
    item: results.ItemResult
    source: layout.Source | None = None  # GitOps: where the target's values live
    target: dict[str, Any] | None = None  # the manifest or the live object: what policy sees
    problem: str = ""  # why the target could not be found


def _run(docs: Sequence[object], cfg: settings.Settings, st: store.Store,
         engine: opa.PolicyEngine, prs: forge.Forge, *, dry_run: bool = False,
         cluster_api: kube.Kube | None = None) -> Batch:
    """Run one batch in GitOps mode against ``cfg.git.repo``.

    With ``dry_run`` everything is decided and planned but nothing is written: no record,
    no status, no commit, no push, no pull-request body.
    """
    now = cfg.now or now_rfc3339()
    if dry_run:
        st = ReadOnly(st)
    batch = Batch()
    live = intake(docs, st, batch)
    with git.Workspace.open(cfg.git.repo, cfg.git.clone_dir, cfg.git.base,
                            depth=cfg.git.depth) as ws:
        _locate(ws, cfg, live, batch)
        cluster: dict[str, dict[str, Any]] | None = None
        if cluster_api is not None:
            live, cluster = cluster_facts(st, cluster_api, live, now, nodes=cfg.cluster.nodes)
        decide(st, engine, cfg, live, now, cluster=cluster)
        to_write = [w for w in live if plan_item(st, w, now)]
        if dry_run:
            for w in to_write:
                mark_dry_run(w.item)
        elif to_write:
            for branch, group in _branches(cfg.git, to_write):
                _execute(ws, st, prs, cfg, branch, group, batch, now)
    return batch


def intake(docs: Sequence[object], st: store.Store, batch: Batch) -> list[Work]:
    """Validate and store; return the recommendations that still need work."""
    valid: list[Work] = []
    for p in validation.parse_many(docs):
        if p.recommendation is None:
            batch.items.append(results.ItemResult(
                id=p.raw_id, phase=model.REJECTED, errors=list(p.errors),
                message="invalid recommendation: nothing applied"))
            continue
        rec = p.recommendation
        item = results.ItemResult(id=rec.id, kind=rec.kind, namespace=rec.namespace,
                                  target=rec.target_label, savings=rec.projectedSavings)
        batch.items.append(item)
        st.upsert(rec.kind, rec.id, rec.namespace, rec.name, rec.spec_dict())
        valid.append(Work(rec, item))
    # A later recommendation for the same target supersedes an earlier one in the batch.
    latest = {w.rec.target_key: w.rec.id for w in valid}
    live: list[Work] = []
    for w in valid:
        if latest[w.rec.target_key] != w.rec.id:
            w.item.phase = model.SUPERSEDED
            w.item.message = f"superseded by {latest[w.rec.target_key]} for the same target"
            save_status(st, w.rec, model.Status(phase=model.SUPERSEDED, message=w.item.message))
            continue
        stored = st.get(w.rec.kind, w.rec.id)
        if stored is not None and not stored.observed:
            live.append(w)  # its spec changed since the last decision: look again
            continue
        if stored is not None and stored.phase in (model.APPLIED, model.ROLLED_BACK,
                                                   model.SUPERSEDED):
            w.item.phase = stored.phase
            w.item.message = f"already {stored.phase.lower()}: nothing to do"
            continue
        if stored is not None and stored.phase == model.REJECTED and any(
                c.get("reason") == forge.REASON_CLOSED
                for c in stored.status.get("conditions", [])):
            # A reviewer closed its pull request: not proposed again until a newer
            # recommendation (another id, or this id with a new spec) comes.
            w.item.phase = model.REJECTED
            w.item.message = "its pull request was closed without merging: not proposed again"
            continue
        live.append(w)
    _supersede_older(st, live)
    return live


def _supersede_older(st: store.Store, live: Sequence[Work]) -> None:
    """A newer recommendation for a target replaces any older one still in flight."""
    newest = {w.rec.target_key: w.rec.id for w in live}
    kinds = {w.rec.kind for w in live}
    for kind in kinds:
        for phase in (model.PENDING, model.APPROVED, model.APPLYING):
            for r in st.list(kind=kind, phase=phase):
                key = model.target_key_of(r.kind, r.namespace, r.spec)
                if key in newest and newest[key] != r.id:
                    status = dict(r.status)
                    status.update(phase=model.SUPERSEDED,
                                  message=f"superseded by {newest[key]}")
                    try:
                        st.update_status(r.kind, r.id, status, r.resource_version)
                    except errors.ConflictError:
                        log.info("%s changed while superseding it; left for the next batch",
                                 r.id)


def _locate(ws: git.Workspace, cfg: settings.Settings, live: Sequence[Work],
            batch: Batch) -> None:
    """Find where each target's values live, with one index over the repository, and what
    the cluster would get from it (the policy's ``target``)."""
    index = layout.Index.build(ws.root, cfg.git.layout, [w.rec.target_key for w in live])
    batch.stats = index.stats
    for w in live:
        key = w.rec.target_key
        try:
            w.source = index.locate(key)
        except errors.PermanentError as e:
            w.problem = str(e)
            continue
        w.target = index.observed(key)
        if w.target is None:
            w.problem = f"{w.rec.target_label}: its manifest could not be read"


def cluster_facts(st: store.Store, api: kube.Kube, live: Sequence[Work], now: str, *,
                  nodes: bool) -> tuple[list[Work], dict[str, dict[str, Any]]]:
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
            w.item.phase = model.PENDING
            w.item.message = f"not decided: {err} (tried again next batch)"
            continue
        w.item.phase, w.item.message = model.FAILED, f"not decided: {err}"
        save_status(st, w.rec, model.Status(phase=model.FAILED, message=w.item.message)
                    .with_condition(condition("Approved", False, "ClusterFactsUnreadable",
                                              w.item.message, now)))
    return [w for w in live if w.rec.id not in bad], facts.cluster_map(got)


def decide(st: store.Store, engine: opa.PolicyEngine, cfg: settings.Settings,
           live: Sequence[Work], now: str,
           cluster: Mapping[str, Mapping[str, Any]] | None = None) -> None:
    """Ask policy about the whole batch at once; no answer means deny (the engine's job).

    ``cluster`` adds facts per recommendation id (the live HPA, say) to the input.
    """
    last = history(st, {w.rec.kind for w in live})
    inputs = [policy_input.build(w.rec, w.target, now=now,
                                 cluster=(cluster or {}).get(w.rec.id),
                                 history={"lastApplied": last.get(w.rec.target_key)},
                                 operator_namespace=cfg.operator_namespace)
              for w in live]
    decisions = engine.decide_many(inputs) if inputs else []
    for w, dec in zip(live, decisions, strict=True):
        w.item.decision = dec


def decided_status(rec: model.Recommendation, dec: decision.Decision) -> model.Status:
    """The status every outcome of a decision starts from: the decision and the savings."""
    return model.Status(decision=decision_summary(dec), projectedSavings=(
        rec.projectedSavings.display() if rec.projectedSavings else ""))


def plan_item(st: store.Store, w: Work, now: str) -> bool:
    """Settle what the decision and the target allow; True when there is something to write."""
    rec, item, dec = w.rec, w.item, w.item.decision
    assert dec is not None
    status = decided_status(rec, dec)
    if not dec.allow:
        item.phase, item.message = model.REJECTED, "refused by policy"
        reasons = "; ".join(dec.reasons)
        save_status(st, rec, replace(status, phase=model.REJECTED, message=reasons)
                     .with_condition(condition("Approved", False, "PolicyDenied", reasons, now)))
        return False
    if dec.mode == "audit":
        item.phase, item.message = model.APPROVED, "audit mode: recorded, not applied"
        save_status(st, rec, replace(status, phase=model.APPROVED, message=item.message))
        return False
    if w.target is None:
        item.phase, item.message = model.FAILED, w.problem
        save_status(st, rec, replace(status, phase=model.FAILED, message=w.problem)
                     .with_condition(condition("Applied", False, "TargetNotFound",
                                                w.problem, now)))
        return False
    try:
        item.plan = (planner.plan_node_group(rec, w.target)
                     if isinstance(rec, model.NodeGroupRecommendation)
                     else planner.plan(rec, dec, w.target))
    except errors.PermanentError as e:
        item.phase, item.message = model.FAILED, str(e)
        save_status(st, rec, replace(status, phase=model.FAILED, message=str(e)))
        return False
    if item.plan.empty:
        item.phase, item.message = model.APPLIED, "the repository already holds these values"
        save_status(st, rec, replace(status, phase=model.APPLIED, appliedAt=now,
                                      message=item.message))
        return False
    return True


def mark_dry_run(item: results.ItemResult) -> None:
    assert item.plan is not None
    changes = [f"{e.container}.{e.section}.{e.resource} {e.old} -> {e.new}"
               for e in item.plan.resources]
    if item.plan.replicas is not None:
        changes.append(f"replicas {item.plan.replicas[0]} -> {item.plan.replicas[1]}")
    item.phase = model.APPROVED
    item.message = "dry run: would change " + ", ".join(changes)


def follow_pull_requests(st: store.Store, prs: forge.Forge, now: str) -> list[results.ItemResult]:
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
            status = dict(r.status)
            conds = [c for c in status.get("conditions", []) if c.get("type") != "Applied"]
            if phase == model.APPLIED:
                status.update(phase=phase, appliedAt=applied_at or now,
                              message=f"pull request #{number} merged")
                conds.append(condition("Applied", True, "PullRequestMerged",
                                       f"#{number} merged", now).to_dict())
            else:
                status.update(phase=phase, message=f"pull request #{number} closed unmerged")
                conds.append(condition("Applied", False, forge.REASON_CLOSED,
                                       f"#{number} closed without merging", now).to_dict())
            status["pullRequest"] = {**ref, "state": forge.MERGED if phase == model.APPLIED
                                     else forge.CLOSED}
            status["conditions"] = conds
            try:
                st.update_status(r.kind, r.id, status, r.resource_version)
            except errors.ConflictError:
                continue  # someone else moved it; the next pass looks again
            out.append(results.ItemResult(
                id=r.id, kind=r.kind, namespace=r.namespace, phase=phase,
                target="/".join(model.target_key_of(r.kind, r.namespace, r.spec)[1:]),
                message=str(status["message"]), pull_request=str(ref.get("url", ""))))
    return out


def _branches(g: settings.GitSettings,
              to_write: Sequence[Work]) -> list[tuple[str, list[Work]]]:
    """Group the batch by the configured scope into deterministic branch names.

    ``batch``: one branch named after the changes themselves (a rerun finds it again).
    ``namespace`` / ``workload``: one branch per namespace or workload, named after it, so a
    newer recommendation for the same workload updates the same branch and pull request.
    """
    if g.scope == "batch":
        name = gitops.branch_name(g.branch_prefix, "batch",
                                  [(w.rec.id, w.rec.spec_dict()) for w in to_write])
        return [(name, list(to_write))]
    groups: dict[str, list[Work]] = {}
    for w in to_write:
        ns, kind, target = w.rec.target_key
        ident = ns if g.scope == "namespace" else f"{ns}-{kind}-{target}"
        groups.setdefault(gitops.scope_branch(g.branch_prefix, ident), []).append(w)
    return sorted(groups.items())


def _execute(ws: git.Workspace, st: store.Store, prs: forge.Forge, cfg: settings.Settings,
             branch: str, group: Sequence[Work], batch: Batch, now: str) -> None:
    """One branch, one commit, one push, one pull request; then the statuses."""
    ids = ", ".join(w.rec.id for w in group)
    message = f"dakr: apply {len(group)} recommendation(s)\n\nRecommendations: {ids}\n"
    edits = [(w.source, w.item.plan) for w in group
             if w.source is not None and w.item.plan is not None]
    written = gitops.write(ws, cfg.git.base, branch, edits, message=message,
                           retries=cfg.git.push_retries)
    for w in group:
        problem = written.failed.get(w.rec.id)
        if problem is not None:
            w.item.phase, w.item.message = model.FAILED, problem
            save_status(st, w.rec, model.Status(
                phase=model.FAILED, message=problem,
                decision=decision_summary(w.item.decision) if w.item.decision else None))
    group = [w for w in group if w.rec.id not in written.failed]
    if not group:
        return
    if not batch.branch:
        batch.branch, batch.commit = written.branch, written.commit
        batch.created_commit = written.created_commit
    items = [w.item for w in group]
    for w in group:
        w.item.branch, w.item.commit = written.branch, written.commit
        where = written.lines.get(w.rec.id, [])
        w.item.file = ", ".join(path for path, _ in where)
        w.item.lines = sorted({ln for _, lns in where for ln in lns})
    pr: forge.PullRequest | None = None
    if written.branch:
        title = results.pull_request_title(items)
        body = results.pull_request_body(batch.items if cfg.git.scope == "batch" else items,
                                         branch=written.branch, base=cfg.git.base)
        pr = prs.open_or_update(branch=written.branch, base=cfg.git.base, title=title,
                                body=body, labels=cfg.forge.labels)
        batch.pull_requests.append(pr)
    ref = model.PullRequestRef(url=pr.url if pr else "", number=pr.number if pr else 0,
                               branch=written.branch, commit=written.commit,
                               state=pr.state if pr else "")
    for w in group:
        item, plan, dec = w.item, w.item.plan, w.item.decision
        assert plan is not None and dec is not None
        item.pull_request = ref.url
        item.phase = model.APPLYING
        item.message = (f"pull request #{ref.number} open on {written.branch}" if pr
                        else "the branch already holds these values")
        savings = w.rec.projectedSavings
        save_status(st, w.rec, model.Status(
            phase=model.APPLYING, decision=decision_summary(dec), previous=plan.previous(),
            pullRequest=ref, projectedSavings=savings.display() if savings else "",
            message=item.message,
        ).with_condition(condition("PullRequestOpen", True, "Opened",
                                   f"#{ref.number} on {written.branch}", now)))


class ReadOnly:
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
