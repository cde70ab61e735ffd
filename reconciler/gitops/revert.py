"""Rolling back an applied GitOps change: a revert pull request.

The values to restore are the ones recorded in ``status.previous`` when the change was
proposed. The revert is only proposed when the repository still holds exactly what the
recommendation set: if someone has changed a value since, putting the old one back would
undo their change, so the rollback is refused with the reason and nothing is written.
When the revert pull request merges, the recommendation is ``RolledBack``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.adapters import git
from reconciler.adapters.forge import port as forge
from reconciler.adapters.store import port as store
from reconciler.config import settings
from reconciler.domain import errors, model, planner, quantity, results, status
from reconciler.domain import text as txt
from reconciler.gitops import index as repo_index
from reconciler.gitops import writer as gitops

ROLLBACK_PENDING = "RollbackPending"
# An id or a target in the revert pull request's title.
TITLE_LIMIT = 80


def reverse_plan(rec_id: str, key: tuple[str, str, str], spec: Mapping[str, Any],
                 previous: Mapping[str, Any], observed: Mapping[str, Any]) -> planner.Plan:
    """The edits that put ``previous`` back, checked against what the repository holds now.

    Raises PermanentError naming the value when the repository no longer holds what the
    recommendation set (someone changed it since), or when restoring would mean deleting a
    key the change added (an edit for a person).
    """
    ns, kind, name = key
    current = planner.current_resources(observed)
    wanted: dict[tuple[str, str, str], str] = {}
    for c in spec.get("containers") or []:
        for section in ("requests", "limits"):
            for res, val in ((c.get("resources") or {}).get(section) or {}).items():
                wanted[(str(c.get("name")), section, str(res))] = str(val)
    edits: list[planner.ValueEdit] = []
    for cname, sections in (previous.get("containers") or {}).items():
        for section, values in sections.items():
            for res, old in values.items():
                path = f"{cname}.{section}.{res}"
                now = current.get(cname, {}).get(section, {}).get(res)
                if now is None or not quantity.same(wanted.get((cname, section, res), now), now):
                    raise errors.PermanentError(
                        f"{path} is {now or 'unset'} in the repository, not the value this "
                        "recommendation set: it was changed since, so it is not rolled back")
                if old is None:
                    raise errors.PermanentError(
                        f"{path} did not exist before this change; removing it is left to a "
                        "person (edit the manifest)")
                edits.append(planner.ValueEdit(cname, section, res, now, str(old)))
    replicas: tuple[int | None, int] | None = None
    if "replicas" in previous:
        old_r = previous["replicas"]
        now_r = (observed.get("spec") or {}).get("replicas")
        target = spec.get("replicas", spec.get("targetNodeCount"))
        if now_r != target:
            raise errors.PermanentError(
                f"replicas is {now_r} in the repository, not {target}: changed since, "
                "not rolled back")
        if old_r is None:
            raise errors.PermanentError("replicas did not exist before this change; removing "
                                        "it is left to a person")
        replicas = (now_r, int(old_r))
    return planner.Plan(rec_id, kind, ns, name, resources=tuple(edits), replicas=replicas)


def propose(rec_id: str, cfg: settings.Settings, st: store.Store, prs: forge.Forge,
            now: str) -> results.ItemResult:
    """Open (or update) the revert pull request for an applied recommendation."""
    rec = st.get(model.WORKLOAD, rec_id) or st.get(model.NODE_GROUP, rec_id)
    if rec is None:
        raise errors.NotFoundError(f"recommendation {rec_id} is not in the store")
    item = results.ItemResult(id=rec.id, kind=rec.kind, namespace=rec.namespace,
                              phase=rec.phase)
    key = model.target_key_of(rec.kind, rec.namespace, rec.spec)
    item.target = f"{key[1]}/{key[2]}"
    if rec.phase == model.ROLLED_BACK:
        item.message = "already rolled back"
        return item
    if rec.phase != model.APPLIED:
        raise errors.PermanentError(
            f"{rec_id} is {rec.phase}, not Applied: "
            + ("close its pull request to reject the change" if rec.phase == model.APPLYING
               else "there is no applied change to roll back"))
    previous = rec.status.get("previous") or {}
    if not previous:
        raise errors.PermanentError(f"{rec_id} has no recorded previous values")
    with git.repo_lock(cfg.git.clone_dir), \
            git.Workspace.open(cfg.git.repo, cfg.git.clone_dir, cfg.git.base,
                               depth=cfg.git.depth,
                               author=(cfg.git.author_name, cfg.git.author_email)) as ws:
        index = repo_index.Index.build(ws.root, cfg.git.layout, [key], cfg.limits,
                                      repo_index.names(cfg.git.repo, cfg.forge.repo))
        source = index.locate(key)
        observed = index.observed(key)
        if observed is None:
            raise errors.NotFoundError(f"{item.target} is no longer in the repository")
        plan = reverse_plan(rec.id, key, rec.spec, previous, observed)
        branch = gitops.scope_branch(cfg.git.branch_prefix, f"revert-{rec.id}")
        written = gitops.write(ws, cfg.git.base, branch, [(source, plan)],
                               message=gitops.commit_message(
                                   f"dakr: revert {rec.id}",
                                   "Rolls back, to the values before it:",
                                   [f"recommendation {rec.id}", f"target {item.target}"]),
                               retries=cfg.git.push_retries)
    if rec.id in written.failed:
        raise errors.PermanentError(written.failed[rec.id])
    item.plan, item.branch, item.commit = plan, written.branch, written.commit
    if not written.branch:
        item.message = "the repository already holds the previous values"
        return item
    body = _body(item, plan, cfg.git.base)
    pr = prs.open_or_update(branch=written.branch, base=cfg.git.base,
                            title=f"dakr: revert {txt.md_code(rec.id, TITLE_LIMIT)} "
                                  f"({txt.md_code(item.target, TITLE_LIMIT)})", body=body,
                            labels=(*cfg.forge.labels, "rollback"))
    item.pull_request = pr.url
    item.message = f"revert pull request #{pr.number} open on {written.branch}"
    new = status.set_condition(rec.status, status.condition(
        ROLLBACK_PENDING, True, "RevertOpened", item.message, now))
    new["pullRequest"] = {"url": pr.url, "number": pr.number, "branch": written.branch,
                          "commit": written.commit, "state": pr.state}
    new["message"] = item.message
    st.update_status(rec.kind, rec.id, new, rec.resource_version)
    return item


def _body(item: results.ItemResult, plan: planner.Plan, base: str) -> str:
    """The revert pull request's Markdown. Every value that did not come from us (the id,
    names, the values in the repository and in ``status.previous``) is in a code span it
    cannot close (``text.md_code``, ``text.md_cell`` in the table)."""
    rows = [f"| {txt.md_cell(e.container)} | {txt.md_cell(f'{e.section}.{e.resource}')} | "
            f"{txt.md_cell(str(e.old))} | {txt.md_cell(e.new)} |" for e in plan.resources]
    out = [f"## dakr reconciler: revert {txt.md_code(item.id)}", "",
           f"Puts {txt.md_code(f'{item.namespace}/{item.target}')} back to the values it had "
           f"before recommendation {txt.md_code(item.id)} was applied (recorded in its "
           "`status.previous`).", ""]
    if rows:
        out += ["| container | resource | now | restored |", "| --- | --- | --- | --- |", *rows,
                ""]
    if plan.replicas is not None:
        out += [f"Replicas: {txt.md_code(str(plan.replicas[0]))} → "
                f"{txt.md_code(str(plan.replicas[1]))}", ""]
    out += [f"Merging into {txt.md_code(base)} marks the recommendation RolledBack; closing "
            "this pull request keeps the change.", ""]
    return "\n".join(out)
