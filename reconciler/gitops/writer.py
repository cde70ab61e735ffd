"""The GitOps writer: render the batch's edits where each value lives, commit, push.

One branch per scope (batch, namespace or workload) and one commit per branch. The branch
name is derived from the changes (batch scope) or from the scope itself, so a rerun of the
same recommendations lands on the same branch, finds the same bytes already there and
makes no commit. Where each value lives (a plain manifest, a Kustomize overlay's patch, a
Helm values file) is the business of the index (``gitops.index``) and rendering
(``gitops.render``); this module owns the branch, the commit and the push.
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from reconciler.adapters import git
from reconciler.adapters import kustomize as kustomize_adapter
from reconciler.domain import errors, planner
from reconciler.domain import text as txt
from reconciler.gitops import index as repo_index
from reconciler.gitops import kustomize_verify, render, verify

log = logging.getLogger(__name__)


def branch_name(prefix: str, scope: str, items: Sequence[tuple[str, Mapping[str, Any]]]) -> str:
    """``dakr/<scope>-<hash>``: the same changes always map to the same branch."""
    h = hashlib.sha256()
    for rec_id, payload in sorted(items, key=lambda kv: kv[0]):
        h.update(rec_id.encode())
        h.update(repr(sorted(payload.items())).encode())
    return f"{prefix}{scope}-{h.hexdigest()[:10]}"


def scope_branch(prefix: str, ident: str) -> str:
    """``dakr/<ident>-<hash>`` for a namespace or workload scope: stable for the scope, so
    later changes to the same workload land on the same branch and pull request."""
    slug = re.sub(r"[^a-z0-9.-]+", "-", ident.lower()).strip("-.")[:80] or "scope"
    return f"{prefix}{slug}-{hashlib.sha256(ident.encode()).hexdigest()[:10]}"


# A subject line, and one value line, of a commit message (git shows 72 columns; an
# id that passed validation is far shorter than either).
SUBJECT_LIMIT = 120
VALUE_LIMIT = 256


def commit_message(subject: str, heading: str, values: Sequence[str]) -> str:
    """A commit message: the subject line, then ``heading`` and one ``- value`` line per
    value. The subject and each value are escaped and bounded (``text.one_line``): a value
    from a recommendation cannot add a line, forge a trailer (``Signed-off-by:``) or carry
    an escape sequence into the terminal that shows ``git log``."""
    lines = [txt.one_line(subject, SUBJECT_LIMIT), "", heading,
             *(f"- {txt.one_line(v, VALUE_LIMIT)}" for v in values)]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Written:
    branch: str
    commit: str            # the branch head after the write (new commit or the existing one)
    created_commit: bool   # False: the branch already held exactly these bytes
    lines: dict[str, list[tuple[str, list[int]]]]  # rec id -> [(file, changed lines)]
    failed: Mapping[str, str] = field(default_factory=dict)  # rec id -> why not rendered
    # chart renders and Kustomize builds that verified the edits (``gitops.verify``,
    # ``gitops.kustomize_verify``)
    renders: int = 0


def _free_branch(ws: git.Workspace, base: str, branch: str) -> str:
    """``branch``, unless a human has committed on it: then the first ``branch-N`` that is
    still ours. Once a person touches a branch the writer stops rewriting it (Renovate's
    rule) and proposes its change on a new one instead."""
    candidate, n = branch, 1
    while ws.remote_branch_exists(candidate) and ws.foreign_commits(base, candidate):
        n += 1
        candidate = f"{branch}-{n}"
    return candidate


def write(ws: git.Workspace, base: str, branch: str,
          edits: Sequence[tuple[repo_index.Source, planner.Plan]], *,
          message: str, retries: int = 3, verify_renders: bool = True,
          builder: kustomize_adapter.Kustomize | None = None) -> Written:
    """Render every plan on ``branch`` (from ``base``), commit once, push; retry a lost race.

    Edits are rendered on the branch as it is, so nobody else's commit on it is undone; a
    branch a human has committed on is left alone (see ``_free_branch``). A non-fast-forward
    rejection means someone pushed the branch meanwhile: fetch, start again from their
    commit, re-render, and push again. Never a force push. A recommendation whose edit
    cannot be rendered is reported in ``Written.failed`` (by ``plan.rec_id``, as are the
    lines); the others go ahead. With ``verify_renders`` a Helm edit is committed only
    once a render of the edited chart shows it does what it should (``gitops.verify``);
    one that does not is in ``Written.failed``, naming the chart and the key; with a
    Kustomize ``builder`` too, a Kustomize edit is committed only once a build of its
    overlay shows exactly the recommended values and nothing else changed.
    """
    items = list(edits)
    attempt = 0
    while True:
        branch_now = _free_branch(ws, base, branch)
        existed = ws.checkout_branch(branch_now, base)
        rendered, renders = _render_verified(ws, items, verify_renders, builder)
        lines = dict(rendered.lines)
        if existed:
            # A rerun finds its change already on the branch: report where it is by
            # rendering on the base.
            missing = [(s, p) for s, p in items
                       if p.rec_id not in lines and p.rec_id not in rendered.errors]
            if missing:
                on_base = render.render_many(ws.root, missing,
                                             base_text=_reader(ws, f"origin/{base}"))
                lines.update(on_base.lines)
        touched: list[str] = []
        for rel, text in sorted(rendered.texts.items()):
            path = ws.root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            new = text.encode("utf-8")
            if not path.exists() or path.read_bytes() != new:
                path.write_bytes(new)
                touched.append(rel)
        commit = ws.commit(touched, message) if touched else None
        if commit is None:
            if not existed:
                # Nothing differs from base: no branch, nothing to review.
                return Written("", "", False, lines, rendered.errors, renders)
            return Written(branch_now, ws.head(), False, lines, rendered.errors, renders)
        try:
            ws.push(branch_now)
            return Written(branch_now, commit, True, lines, rendered.errors, renders)
        except errors.ConflictError:
            attempt += 1
            if attempt > retries:
                raise
            time.sleep(min(2.0, 0.1 * 2**attempt) * (0.8 + 0.4 * random.random()))
            ws.fetch()


def _render_verified(ws: git.Workspace,
                     items: Sequence[tuple[repo_index.Source, planner.Plan]],
                     verify_renders: bool, builder: kustomize_adapter.Kustomize | None = None,
                     ) -> tuple[render.Rendered, int]:
    """The batch rendered, less the recommendations whose Helm edit fails verification
    (in ``errors``), and the number of chart renders (and Kustomize builds) that took. A
    refused edit changes the texts of the others in the same file, so the batch is rendered
    again without it and verified again; every round refuses at least one, so this ends."""
    read = _reader(ws, None)
    refused: dict[str, str] = {}
    renders = 0
    while True:
        todo = [(s, p) for s, p in items if p.rec_id not in refused]
        rendered = render.render_many(ws.root, todo, base_text=read)
        if not verify_renders:
            return rendered, renders
        outcome = verify.check(ws.root, todo, rendered, read=read)
        renders += outcome.renders
        failed = dict(outcome.failed)
        if builder is not None:
            built = kustomize_verify.check(ws.root, todo, rendered, builder)
            renders += built.builds
            for overlay, why in built.skipped.items():
                log.warning("Kustomize edits of %s not verified: %s", txt.one_line(overlay),
                            txt.one_line(why))
            failed.update(built.failed)
        if not failed:
            rendered.errors.update(refused)
            return rendered, renders
        refused.update(failed)


def _reader(ws: git.Workspace, ref: str | None) -> Any:
    """Text of a repository file on the checked-out branch (``ref`` None) or at ``ref``;
    NotFoundError for a file that does not exist there (a new patch file)."""
    def read(rel: str) -> str:
        if ref is not None:
            return ws.read_at(ref, rel).decode("utf-8")
        path = ws.root / rel
        if not path.is_file():
            raise errors.NotFoundError(f"{rel} does not exist")
        return path.read_text(encoding="utf-8")
    return read
