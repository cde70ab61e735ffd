"""The units of work, the same whether a command runs one once or the operator runs them
over and over: a GitOps batch, a direct batch, the rollbacks, the release of deleted
recommendations.

Each takes the long-lived adapters (``wiring.Parts``) it works through, so a command opens
them for one job and the operator keeps them for its whole life; neither knows how the
other composes them.
"""

from __future__ import annotations

from collections.abc import Sequence

from reconciler import wiring
from reconciler.adapters.store import port as store
from reconciler.config import settings
from reconciler.direct import apply as direct
from reconciler.direct import deletions
from reconciler.direct import live as live_migration
from reconciler.direct import rollback as restore
from reconciler.domain import clock, errors, model, results
from reconciler.flow import audit, decide
from reconciler.flow import batch as flow
from reconciler.gitops import pipeline, pullrequests, revert


def batch(parts: wiring.Parts, cfg: settings.Settings, docs: Sequence[object], *,
            dry_run: bool = False) -> flow.Batch:
    """One batch through the configured mode's writer; what the policy routes to the other
    writer is carried out there in the same call (or fails WriterNotConfigured when this
    process has no such writer)."""
    if cfg.mode == "audit":
        return audit_batch(parts, cfg, docs, dry_run=dry_run)
    first, second = ((direct_batch, gitops_batch) if cfg.mode == "direct"
                     else (gitops_batch, direct_batch))
    out = first(parts, cfg, docs, dry_run=dry_run)
    if out.handoff:
        merge(out, second(parts, cfg, [w.document for w in out.handoff], dry_run=dry_run,
                          routed=False))
    return out


def merge(into: flow.Batch, other: flow.Batch) -> None:
    """``other``'s results replace ``into``'s for the recommendations it carried out."""
    done = {(it.kind, it.id): it for it in other.items}
    into.items = [done.pop((it.kind, it.id), it) for it in into.items] + list(done.values())
    into.handoff = [w for w in into.handoff if (w.rec.kind, w.rec.id) not in
                    {(it.kind, it.id) for it in other.items}]
    into.pull_requests += other.pull_requests
    into.files_parsed += other.files_parsed
    if other.branch and not into.branch:
        into.branch, into.commit = other.branch, other.commit
        into.created_commit = other.created_commit


def gitops_batch(parts: wiring.Parts, cfg: settings.Settings, docs: Sequence[object], *,
                 dry_run: bool = False, routed: bool = True) -> flow.Batch:
    """Follow the open pull requests first (a merge makes history the policy sees), then
    run the batch. A dry run follows nothing: it writes nothing."""
    engine, prs = parts.need_engine(), parts.need_prs()
    if not dry_run:
        follow_pull_requests(parts.store, parts, cfg.now or clock.rfc3339())
    out = pipeline.run(docs, cfg, parts.store, engine, prs, dry_run=dry_run,
                       cluster_api=parts.api if cfg.cluster.facts else None, routed=routed)
    resize_beside_pull_requests(parts.store, parts, cfg, out)
    return out


def resize_beside_pull_requests(st: store.Store, parts: wiring.Parts, cfg: settings.Settings,
                                out: flow.Batch) -> None:
    """The LiveMigrations whose policy says ``resizeRunning``: their pull request is open,
    their running pods are resized in place now (``live.beside_pull_request``)."""
    now = cfg.now or clock.rfc3339()
    for w in out.resize_now:
        live_migration.beside_pull_request(st, parts.api, w, now)
    out.resize_now = []


def follow_pull_requests(st: store.Store, parts: wiring.Parts,
                         now: str) -> list[results.ItemResult]:
    """Carry the open pull requests to their end (``pullrequests.follow_all``); one closed
    unmerged puts back the pods its LiveMigration resized in place."""
    done = pullrequests.follow_all(st, parts.need_prs(), now)
    for it in done:
        if it.phase == model.REJECTED:
            note = live_migration.put_back_rejected(st, parts.api, it.id, it.kind, now)
            if note:
                it.message += f"; {note}"
    return done


def direct_batch(parts: wiring.Parts, cfg: settings.Settings, docs: Sequence[object], *,
                 dry_run: bool = False, routed: bool = True) -> flow.Batch:
    """One batch straight through the Kubernetes API."""
    return direct.run(docs, cfg, parts.store, parts.need_engine(), parts.need_api(),
                      dry_run=dry_run, routed=routed)


def audit_batch(parts: wiring.Parts, cfg: settings.Settings, docs: Sequence[object], *,
                dry_run: bool = False, st: store.Store | None = None) -> flow.Batch:
    """No writer: decide and record (in ``st``, else the parts' store), with the live
    targets when the cluster is read."""
    return audit.run(docs, st if st is not None else parts.store, parts.need_engine(), parts.api,
                     now=cfg.now or clock.rfc3339(), operator=cfg.operator(),
                     node_facts=cfg.cluster.nodes, dry_run=dry_run)


def release_deletions(parts: wiring.Parts, cfg: settings.Settings
                      ) -> list[results.ItemResult]:
    """Roll back the recommendations whose deletion waits on our finalizer."""
    return deletions.reconcile(parts.store, parts.need_api(), now=cfg.now)


def gitops_rollback(parts: wiring.Parts, cfg: settings.Settings,
                    rec_id: str) -> results.ItemResult:
    """Propose the revert pull request of an applied recommendation (after following the
    open pull requests, so that a merge is known). Raises PermanentError when refused."""
    prs = parts.need_prs()
    now = cfg.now or clock.rfc3339()
    follow_pull_requests(parts.store, parts, now)
    return revert.propose(rec_id, cfg, parts.store, prs, now)


def direct_rollback(parts: wiring.Parts, rec_id: str, kind: str) -> results.ItemResult:
    """Restore the values a direct-mode change replaced, if they are still ours; a refusal
    is a result (its message starts with "rollback refused"), not an error."""
    return restore.rollback(rec_id, parts.store, parts.need_api(), kind=kind)


def refused(item: results.ItemResult) -> bool:
    """Whether a direct rollback was refused (the values were changed since)."""
    return item.message.startswith("rollback refused")


def rollback(parts: wiring.Parts, cfg: settings.Settings, rec_id: str,
             kind: str) -> tuple[results.ItemResult, bool]:
    """Take a change back through the writer that made it (a pull request is reverted by
    one, a direct change restored in the cluster; the configured mode when the record does
    not say), and whether it was carried out (or proposed). A refusal by the repository
    or the cluster comes back as a result; only temporary failures and unusable settings
    raise."""
    rec = parts.store.get(kind, rec_id)
    prev = (rec.status.get("previous") or {}) if rec is not None else {}
    direct_change = bool(prev.get("set") or prev.get("cordoned"))
    by_pr = rec is not None and bool(rec.status.get("pullRequest")) and not direct_change
    writer = "gitops" if by_pr else "direct" if direct_change else cfg.mode
    try:
        if writer not in cfg.writers:
            what, how = decide.WRITER_SETTINGS.get(writer, ("a writer", audit.HOW))
            raise errors.PermanentError(f"taking it back needs {what}; {how}")
        if writer == "gitops":
            return gitops_rollback(parts, cfg, rec_id), True
        item = direct_rollback(parts, rec_id, kind)
        return item, not refused(item)
    except errors.ConfigError:
        raise
    except (errors.NotFoundError, errors.PermanentError) as e:
        return results.ItemResult(id=rec_id, kind=kind, message=f"rollback refused: {e}"), False
