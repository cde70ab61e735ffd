"""The GitOps writer: find each target's manifest, edit it in place, commit, push.

One batch is one branch and one commit. The branch name is derived from the changes, so a
rerun of the same recommendations lands on the same branch, finds the same bytes already
there and makes no commit. Manifests are located by a cheap text scan first; only files
that mention a target's name are parsed, and only the documents that can match.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from reconciler import errors
from reconciler.adapters import git
from reconciler.core import planner, yamledit

log = logging.getLogger(__name__)

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_NAME = re.compile(r"^\s*name:\s*[\"']?([a-z0-9][-a-z0-9.]*)[\"']?\s*(?:#.*)?$", re.MULTILINE)
_SKIP_DIRS = {".git", "node_modules", ".venv"}

Key = tuple[str, str, str]  # (namespace, kind, name)


@dataclass(frozen=True)
class Location:
    path: str          # relative to the repository root, with forward slashes
    doc_index: int
    line: int


@dataclass
class IndexStats:
    files_seen: int = 0
    files_parsed: int = 0


def yaml_files(root: Path) -> Iterable[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for f in sorted(filenames):
            if f.endswith((".yaml", ".yml")):
                yield Path(dirpath) / f


def build_index(root: Path, targets: Iterable[Key], default_namespace: str,
                stats: IndexStats | None = None) -> dict[Key, list[Location]]:
    """Where each target is defined. Files that never mention a target name are not parsed."""
    wanted = set(targets)
    names = {name for _, _, name in wanted}
    kinds = {kind for _, kind, _ in wanted}
    found: dict[Key, list[Location]] = {k: [] for k in wanted}
    stats = stats if stats is not None else IndexStats()
    for path in yaml_files(root):
        stats.files_seen += 1
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if not names.intersection(_NAME.findall(text)):
            continue
        stats.files_parsed += 1
        try:
            refs = yamledit.scan_workloads(text, kinds)
        except errors.ReconcilerError as e:
            log.warning("skipping %s: %s", path, e)
            continue
        rel = path.relative_to(root).as_posix()
        for ref in refs:
            ns = ref.namespace or default_namespace
            key = (ns, ref.kind, ref.name)
            if key in found:
                found[key].append(Location(rel, ref.doc_index, ref.line))
    return found


def read_document(root: Path, loc: Location) -> dict[str, Any]:
    """The manifest document at ``loc`` as data (what the policy sees as ``target``)."""
    text = (root / loc.path).read_text(encoding="utf-8")
    for i, doc in enumerate(yaml.load_all(text, Loader=_Loader)):
        if i == loc.doc_index:
            if not isinstance(doc, dict):
                break
            return doc
    raise errors.NotFoundError(f"{loc.path}: document {loc.doc_index} is gone")


def change_of(p: planner.Plan) -> yamledit.WorkloadChange:
    return yamledit.WorkloadChange(
        kind=p.kind, name=p.name, namespace=p.namespace,
        containers=tuple(
            yamledit.ContainerChange(name=c, requests=v["requests"], limits=v["limits"])
            for c, v in p.container_changes().items()
        ),
        replicas=p.replicas[1] if p.replicas is not None else None,
    )


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


@dataclass(frozen=True)
class Written:
    branch: str
    commit: str            # the branch head after the write (new commit or the existing one)
    created_commit: bool   # False: the branch already held exactly these bytes
    lines: dict[str, tuple[str, list[int]]]  # rec id -> (file, changed lines)


def _free_branch(ws: git.Workspace, base: str, branch: str) -> str:
    """``branch``, unless a human has committed on it: then the first ``branch-N`` that is
    still ours. Once a person touches a branch the writer stops rewriting it (Renovate's
    rule) and proposes its change on a new one instead."""
    candidate, n = branch, 1
    while ws.remote_branch_exists(candidate) and ws.foreign_commits(base, candidate):
        n += 1
        candidate = f"{branch}-{n}"
    return candidate


def _render(ws: git.Workspace, rel: str, text: str, group: Sequence[tuple[str, planner.Plan]],
            default_namespace: str) -> tuple[str, dict[str, list[int]]]:
    lines: dict[str, list[int]] = {}
    for rec_id, p in group:
        result = yamledit.edit_workload(text, change_of(p), default_namespace=default_namespace)
        text = result.text
        lines[rec_id] = sorted({c.line for c in result.changes})
    return text, lines


def write(ws: git.Workspace, base: str, branch: str,
          edits: Sequence[tuple[str, Location, planner.Plan]], *, default_namespace: str,
          message: str, retries: int = 3) -> Written:
    """Apply every plan on ``branch`` (from ``base``), commit once, push; retry a lost race.

    Edits are rendered on the branch as it is, so nobody else's commit on it is undone; a
    branch a human has committed on is left alone (see ``_free_branch``). A non-fast-forward
    rejection means someone pushed the branch meanwhile: fetch, start again from their
    commit, re-render, and push again. Never a force push.
    """
    by_file: dict[str, list[tuple[str, planner.Plan]]] = {}
    for rec_id, loc, p in edits:
        by_file.setdefault(loc.path, []).append((rec_id, p))
    attempt = 0
    while True:
        branch_now = _free_branch(ws, base, branch)
        existed = ws.checkout_branch(branch_now, base)
        lines: dict[str, tuple[str, list[int]]] = {}
        touched: list[str] = []
        for rel, group in sorted(by_file.items()):
            path = ws.root / rel
            raw = path.read_bytes()
            text, found = _render(ws, rel, raw.decode("utf-8"), group, default_namespace)
            if not any(found.values()):
                # Already applied on this branch (a rerun): report the lines the change
                # holds by rendering it on the base.
                base_text = ws.read_at(f"origin/{base}", rel).decode("utf-8")
                found = _render(ws, rel, base_text, group, default_namespace)[1]
            lines.update({rid: (rel, ln) for rid, ln in found.items()})
            new = text.encode("utf-8")
            if new != raw:
                path.write_bytes(new)
                touched.append(rel)
        commit = ws.commit(touched, message) if touched else None
        if commit is None:
            if not existed:
                # Nothing differs from base: no branch, nothing to review.
                return Written(branch="", commit="", created_commit=False, lines=lines)
            return Written(branch_now, ws.head(), False, lines)
        try:
            ws.push(branch_now)
            return Written(branch_now, commit, True, lines)
        except errors.ConflictError:
            attempt += 1
            if attempt > retries:
                raise
            time.sleep(min(2.0, 0.1 * 2**attempt) * (0.8 + 0.4 * random.random()))
            ws.fetch()
