"""One GitOps batch: intake -> store -> decide -> plan -> edit, commit, push, pull request
-> report.

The stages every writer shares live in ``reconciler/flow``; what is GitOps here is finding
where each target's values live in the repository (one index per batch), and writing the
approved changes as one commit per branch with its pull request. Only unusable settings or
an unreachable repository stop the batch; any other failure is one recommendation's result.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from reconciler.adapters import git, kube, kustomize
from reconciler.adapters.forge import port as forge
from reconciler.adapters.opa import engine as opa
from reconciler.adapters.store import port as store
from reconciler.config import settings
from reconciler.domain import clock, errors, model, results, status
from reconciler.domain import text as txt
from reconciler.flow import batch as flow
from reconciler.flow import decide, report
from reconciler.gitops import index as repo_index
from reconciler.gitops import writer as gitops

log = logging.getLogger(__name__)


def run(docs: Sequence[object], cfg: settings.Settings, st: store.Store,
        engine: opa.PolicyEngine, prs: forge.Forge, *, dry_run: bool = False,
        cluster_api: kube.Kube | None = None, routed: bool = True) -> flow.Batch:
    """Run one batch in GitOps mode, holding the lock of the repository's working clone.

    ``cluster_api``: read the live cluster's facts (HPA, PDBs, node facts) for the policy
    input; without it the policy sees the repository's manifests only. ``routed``: a
    decision for direct mode goes to ``batch.handoff`` (or fails WriterNotConfigured when
    the process has no direct writer); False for a batch direct mode handed over.
    """
    with git.repo_lock(cfg.git.clone_dir):
        return _run(docs, cfg, st, engine, prs, dry_run=dry_run, cluster_api=cluster_api,
                    routed=routed)


def _run(docs: Sequence[object], cfg: settings.Settings, st: store.Store,
         engine: opa.PolicyEngine, prs: forge.Forge, *, dry_run: bool = False,
         cluster_api: kube.Kube | None = None, routed: bool = True) -> flow.Batch:
    """Run one batch in GitOps mode against ``cfg.git.repo``.

    With ``dry_run`` everything is decided and planned but nothing is written: no record,
    no status, no commit, no push, no pull-request body.
    """
    now = cfg.now or clock.rfc3339()
    if dry_run:
        st = flow.ReadOnly(st)
    batch = flow.Batch()
    live = flow.intake(docs, st, batch)
    with git.Workspace.open(cfg.git.repo, cfg.git.clone_dir, cfg.git.base,
                            depth=cfg.git.depth,
                            author=(cfg.git.author_name, cfg.git.author_email)) as ws:
        sources = _locate(ws, cfg, live, batch)
        cluster: dict[str, dict[str, Any]] | None = None
        if cluster_api is not None:
            live, cluster = decide.cluster_facts(st, cluster_api, live, now,
                                                 nodes=cfg.cluster.nodes)
        decide.decide(st, engine, live, now, cluster, operator=cfg.operator())
        writers = decide.Writers("gitops", cfg.writers, routed=routed)
        to_write = [w for w in live if decide.route(st, w, writers, batch, now)
                    and decide.plan_item(st, w, now)]
        if dry_run:
            for w in to_write:
                decide.mark_dry_run(w.item)
        elif to_write:
            for branch, group in _branches(cfg.git, to_write):
                _execute(ws, st, prs, cfg, branch, group, sources, batch, now)
    return batch


def _locate(ws: git.Workspace, cfg: settings.Settings, live: Sequence[flow.Work],
            batch: flow.Batch) -> dict[str, repo_index.Source]:
    """Find where each target's values live, with one index over the repository, and what
    the cluster would get from it (the policy's ``target``); by recommendation id."""
    index = repo_index.Index.build(ws.root, cfg.git.layout, [w.rec.target_key for w in live],
                                  cfg.limits, repo_index.names(cfg.git.repo, cfg.forge.repo))
    batch.files_parsed = index.stats.files_parsed
    sources: dict[str, repo_index.Source] = {}
    for w in live:
        key = w.rec.target_key
        try:
            sources[w.rec.id] = index.locate(key)
        except errors.PermanentError as e:
            w.problem = str(e)
            continue
        w.target = index.observed(key)
        if w.target is None:
            w.problem = f"{w.rec.target_label}: its manifest could not be read"
    return sources


def _builder(g: settings.GitSettings) -> kustomize.Kustomize | None:
    """The Kustomize binary that verifies a Kustomize layout's edits (``GitSettings
    .kustomize``); None when verification is off, the layout is not Kustomize, or no
    binary is found (then the edits go unchecked, and the log says so)."""
    if not g.verify_renders or g.layout.kind != "kustomize":
        return None
    found = kustomize.find(g.kustomize)
    if found is None and g.kustomize.strip().lower() not in kustomize.OFF:
        log.warning("no Kustomize binary found (%s): Kustomize edits are committed without "
                    "a build to verify them; install kustomize or kubectl, or set "
                    "--kustomize (DAKR_GITOPS_KUSTOMIZE)", txt.one_line(g.kustomize))
    return found


def _branches(g: settings.GitSettings,
              to_write: Sequence[flow.Work]) -> list[tuple[str, list[flow.Work]]]:
    """Group the batch by the configured scope into deterministic branch names.

    ``batch``: one branch named after the changes themselves (a rerun finds it again).
    ``namespace`` / ``workload``: one branch per namespace or workload, named after it, so a
    newer recommendation for the same workload updates the same branch and pull request.
    """
    if g.scope == "batch":
        name = gitops.branch_name(g.branch_prefix, "batch",
                                  [(w.rec.id, w.rec.spec_dict()) for w in to_write])
        return [(name, list(to_write))]
    groups: dict[str, list[flow.Work]] = {}
    for w in to_write:
        ns, kind, target = w.rec.target_key
        ident = ns if g.scope == "namespace" else f"{ns}-{kind}-{target}"
        groups.setdefault(gitops.scope_branch(g.branch_prefix, ident), []).append(w)
    return sorted(groups.items())


def _execute(ws: git.Workspace, st: store.Store, prs: forge.Forge, cfg: settings.Settings,
             branch: str, group: Sequence[flow.Work], sources: dict[str, repo_index.Source],
             batch: flow.Batch, now: str) -> None:
    """One branch, one commit, one push, one pull request; then the statuses."""
    message = gitops.commit_message(f"dakr: apply {len(group)} recommendation(s)",
                                    "Recommendations:", [w.rec.id for w in group])
    edits = [(sources[w.rec.id], w.item.plan) for w in group
             if w.rec.id in sources and w.item.plan is not None]
    written = gitops.write(ws, cfg.git.base, branch, edits, message=message,
                           retries=cfg.git.push_retries, verify_renders=cfg.git.verify_renders,
                           builder=_builder(cfg.git))
    for w in group:
        problem = written.failed.get(w.rec.id)
        if problem is not None:
            w.item.phase, w.item.message = model.FAILED, problem
            report.save_status(st, w.rec, model.Status(
                phase=model.FAILED, message=problem,
                decision=status.decision_summary(w.item.decision) if w.item.decision
                else None))
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
        report.save_status(st, w.rec, model.Status(
            phase=model.APPLYING, decision=status.decision_summary(dec),
            previous=plan.previous(),
            pullRequest=ref, projectedSavings=savings.display() if savings else "",
            message=item.message,
        ).with_condition(status.condition("PullRequestOpen", True, "Opened",
                                          f"#{ref.number} on {written.branch}", now)))
        if pr is not None and dec.live is not None and dec.live.resize_running:
            batch.resize_now.append(w)
