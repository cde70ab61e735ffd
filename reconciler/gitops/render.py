"""Rendering a batch's edits: the new texts of the files the index located.

Rendering is pure: it returns new file texts computed from the base branch's texts
(``base_text``), so a rerun computes the same bytes, and it never writes; the writer
commits what it returns. Edits to one file are made in one pass, and a recommendation
whose edit fails is left out without stopping the others.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from reconciler.domain import errors, planner
from reconciler.gitops import index as repo_index
from reconciler.yamledit import kustomize, splice, values, workload

_NO_NS = "<none>"  # never a valid namespace: matches only documents without one
_HEADER = "Written by the dakr reconciler: resource settings for {kind}/{name}."


@dataclass
class Rendered:
    texts: dict[str, str]  # repo-relative path -> new full text (only files that change)
    lines: dict[str, list[tuple[str, list[int]]]]  # rec id -> [(path, changed lines)]
    errors: dict[str, str]  # rec id -> why nothing was rendered for it


def change_of(plan: planner.Plan, namespace: str | None) -> workload.WorkloadChange:
    return workload.WorkloadChange(
        kind=plan.kind, name=plan.name, namespace=namespace,
        containers=tuple(
            workload.ContainerChange(name=c, requests=v["requests"], limits=v["limits"])
            for c, v in plan.container_changes().items()),
        replicas=plan.replicas[1] if plan.replicas is not None else None,
    )


def render(root: Path, source: repo_index.Source, plan: planner.Plan, *,
           base_text: Callable[[str], str]) -> dict[str, str]:
    """Repo-relative path -> new full text for every file this plan touches; never writes.

    Empty when nothing changes. Raises the error that stopped it (see ``render_many``
    for a batch that isolates failures per recommendation).
    """
    out = render_many(root, [(source, plan)], base_text=base_text)
    if out.errors:
        raise errors.PermanentError(next(iter(out.errors.values())))
    return out.texts


class _Files:
    """Texts of the batch: the base branch's, then each edit's result."""

    def __init__(self, base_text: Callable[[str], str]) -> None:
        self.base_text = base_text
        self.current: dict[str, str] = {}
        self.base: dict[str, str | None] = {}

    def get(self, path: str, *, may_be_new: bool = False) -> str | None:
        if path in self.current:
            return self.current[path]
        if path not in self.base:
            try:
                self.base[path] = self.base_text(path)
            except (errors.NotFoundError, FileNotFoundError):
                if not may_be_new:
                    raise
                self.base[path] = None
        return self.base[path]

    def changed(self) -> dict[str, str]:
        return {p: t for p, t in self.current.items() if t != self.base.get(p)}


def render_many(root: Path, items: Sequence[tuple[repo_index.Source, planner.Plan]], *,
                base_text: Callable[[str], str]) -> Rendered:
    """Render a batch: edits to one file are made in one pass (a values file holding a
    thousand workloads is parsed once, not a thousand times). A recommendation whose edit
    fails is reported in ``errors`` and left out; the others still render."""
    files = _Files(base_text)
    lines: dict[str, list[tuple[str, list[int]]]] = {}
    problems: dict[str, str] = {}
    manifests: dict[str, list[tuple[repo_index.Source, planner.Plan]]] = {}
    values_files: dict[str, list[tuple[repo_index.Source, planner.Plan,
                                       dict[str, str | int]]]] = {}
    patches: list[tuple[repo_index.Source, planner.Plan]] = []
    kust_replicas: dict[str, list[tuple[repo_index.Source, planner.Plan]]] = {}
    for source, plan in items:
        if plan.empty:
            continue
        if source.name_in_file:  # kustomize: the file names it before namePrefix/nameSuffix
            plan = dataclasses.replace(plan, name=source.name_in_file)
        if plan.hpa is not None:
            problems[plan.rec_id] = "HPA changes are not written to the repository"
            continue
        if source.kind == "manifest" or (source.kind == "node-group"
                                         and not source.values_prefix):
            if source.replicas_in_kustomization and plan.replicas is not None:
                # The overlay's `replicas:` field runs last: a count in the manifest
                # would be overridden, so it goes to the field.
                kust_replicas.setdefault(source.kustomization, []).append((source, plan))
                plan = dataclasses.replace(plan, replicas=None)
                if plan.empty:
                    continue
            manifests.setdefault(source.path, []).append((source, plan))
        elif source.kind == "helm-values":
            try:
                by_file = _helm_changes(source, plan)
            except errors.PermanentError as e:
                problems[plan.rec_id] = str(e)
                continue
            for path, changes in by_file.items():
                values_files.setdefault(path, []).append((source, plan, changes))
        elif source.kind == "node-group":
            if plan.replicas is None:
                continue
            values_files.setdefault(source.path, []).append(
                (source, plan, {source.values_prefix: plan.replicas[1]}))
        elif source.kind in ("kustomize-patch", "kustomize-new-patch", "kustomize-replicas"):
            if source.replicas_in_kustomization and plan.replicas is not None:
                kust_replicas.setdefault(source.kustomization, []).append((source, plan))
            patches.append((source, plan))
        else:
            problems[plan.rec_id] = f"unknown source kind {source.kind!r}"

    def note(rec: str, path: str, changed: Iterable[int]) -> None:
        ls = sorted(set(changed))
        if not ls:
            return
        mine = lines.setdefault(rec, [])
        for i, (p, old) in enumerate(mine):
            if p == path:
                mine[i] = (p, sorted(set(old) | set(ls)))
                return
        mine.append((path, ls))

    for path, group in sorted(manifests.items()):
        _render_manifests(files, path, group, note, problems)
    for path, vgroup in sorted(values_files.items()):
        _render_values(files, path, vgroup, note, problems)
    _render_patches(files, patches, note, problems)
    for path, rgroup in sorted(kust_replicas.items()):
        counts = {}
        for source, plan in rgroup:
            if plan.rec_id not in problems and plan.replicas is not None:
                counts[source.replicas_name or source.target[2]] = plan.replicas[1]
        if not counts:
            continue
        try:
            text = files.get(path) or ""
            res = kustomize.edit_kustomize_replicas(text, counts)
        except errors.PermanentError as e:
            for _, plan in rgroup:
                problems[plan.rec_id] = str(e)
            continue
        files.current[path] = res.text
        for source, plan in rgroup:
            for c in res.changes:
                if c.path == f"replicas[{source.replicas_name or source.target[2]}].count":
                    note(plan.rec_id, path, [c.line])
    return Rendered(files.changed(), {r: ls for r, ls in lines.items() if r not in problems},
                    problems)


_Note = Callable[[str, str, Iterable[int]], None]
_T = TypeVar("_T")


def _edit_file(files: _Files, path: str, group: list[_T],
               attempt: Callable[[str, list[_T]], str], rec_id: Callable[[_T], str],
               problems: dict[str, str]) -> None:
    """Edit one file for a group of recommendations in one pass; when that fails, apply
    them one at a time so that only the failing ones are refused."""
    try:
        files.current[path] = attempt(files.get(path) or "", group)
        return
    except errors.PermanentError:
        pass
    text = files.get(path) or ""
    for item in group:
        try:
            text = attempt(text, [item])
        except errors.PermanentError as e:
            problems[rec_id(item)] = f"{path}: {e}"
    files.current[path] = text


def _render_manifests(files: _Files, path: str, group: list[tuple[repo_index.Source, planner.Plan]],
                      note: _Note, problems: dict[str, str]) -> None:
    def changes(g: list[tuple[repo_index.Source, planner.Plan]]) -> list[workload.WorkloadChange]:
        out = []
        for s, p in g:
            change = change_of(p, s.namespace_in_file or _NO_NS)
            if s.kind == "node-group":  # a Cluster API MachineDeployment's spec.replicas
                change = workload.WorkloadChange(repo_index.MACHINE_DEPLOYMENT, s.target[2],
                                                 change.namespace, (), change.replicas)
            out.append(change)
        return out

    def attempt(text: str, g: list[tuple[repo_index.Source, planner.Plan]]) -> str:
        res = workload.edit_many(text, changes(g), default_namespace=_NO_NS)
        if res.changes:
            spans = splice.document_lines(res.text)
            for s, p in g:
                first, last = spans[s.doc_index] if s.doc_index < len(spans) else (0, 0)
                if s.kind == "manifest" or s.kind == "node-group":
                    note(p.rec_id, path, [c.line for c in res.changes if first <= c.line <= last])
        return res.text

    _edit_file(files, path, group, attempt, lambda item: item[1].rec_id, problems)


def _helm_changes(source: repo_index.Source, plan: planner.Plan
                  ) -> dict[str, dict[str, str | int]]:
    """File -> values path in it -> value: the environment's own values file, and the
    HelmRelease or Application for a key it sets inline (the layer that wins)."""
    paths = dict(source.values_containers)
    out: dict[str, str | int] = {}
    for e in plan.resources:
        if e.container not in paths:
            raise errors.NotFoundError(
                f"container {e.container!r} of {plan.kind}/{plan.name} has no values path "
                f"(configured: {', '.join(sorted(paths)) or 'none'})")
        out[values.child_path(paths[e.container], e.section, e.resource)] = e.new
    if plan.replicas is not None:
        out[source.values_replicas] = plan.replicas[1]
    shadowed = dict(source.values_shadowed)
    for key in out:
        if key in shadowed:
            raise errors.PermanentError(
                f"{key} of {plan.kind}/{plan.name} is set by {shadowed[key]}, which the "
                f"cluster applies after {source.path}: a value written to {source.path} "
                f"would change nothing, and {shadowed[key]} is not this environment's own "
                + ("values file (name it valuesFile in the layout to edit it there)"
                   if shadowed[key] in source.values_files else
                   "values file (change it there by hand)"))
    redirect = {key: (file, at) for key, file, at in source.values_redirect}
    by_file: dict[str, dict[str, str | int]] = {}
    for key, value in out.items():
        file, at = redirect.get(key, (source.path, key))
        by_file.setdefault(file, {})[at] = value
    return by_file


def _render_values(files: _Files, path: str,
                   group: list[tuple[repo_index.Source, planner.Plan, dict[str, str | int]]],
                   note: _Note, problems: dict[str, str]) -> None:
    def attempt(text: str,
                g: list[tuple[repo_index.Source, planner.Plan, dict[str, str | int]]]) -> str:
        merged: dict[str, str | int] = {}
        owner: dict[str, str] = {}
        for _, p, ch in g:
            for k, v in ch.items():
                merged[k] = v
                owner[k] = p.rec_id
        res = values.edit_values(text, merged)
        for c in res.changes:
            note(owner[c.path], path, [c.line])
        return res.text

    _edit_file(files, path, group, attempt, lambda item: item[1].rec_id, problems)


def _render_patches(files: _Files, group: list[tuple[repo_index.Source, planner.Plan]], note: _Note,
                    problems: dict[str, str]) -> None:
    new_entries: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for source, plan in group:
        change = change_of(plan, None)
        if source.replicas_in_kustomization:
            change = workload.WorkloadChange(change.kind, change.name, None, change.containers)
        if not change.containers and change.replicas is None:
            continue
        try:
            existing = files.get(source.path, may_be_new=source.kind != "kustomize-patch")
            if source.kind == "kustomize-patch" or (existing is not None
                                                    and source.path in files.current):
                res = kustomize.edit_patch(existing or "", change)
                files.current[source.path] = res.text
                note(plan.rec_id, source.path, [c.line for c in res.changes])
                continue
            kust = files.get(source.kustomization) or ""
            eol = "\r\n" if "\r\n" in kust else "\n"
            text = kustomize.new_patch(source.api_version or "apps/v1", change, eol=eol,
                                       header=_HEADER.format(kind=plan.kind, name=plan.name))
            files.current[source.path] = text
            note(plan.rec_id, source.path, range(1, text.count("\n") + 1))
            rel = PurePosixPath(source.path).relative_to(
                PurePosixPath(source.kustomization).parent).as_posix()
            new_entries.setdefault(source.kustomization, []).append(
                (plan.rec_id, {"path": rel, "target": {"kind": plan.kind, "name": plan.name}}))
        except (errors.PermanentError, ValueError) as e:
            problems[plan.rec_id] = f"{source.path}: {e}"
    for kpath, entries in sorted(new_entries.items()):
        try:
            res = kustomize.add_kustomize_patches(files.get(kpath) or "", [e for _, e in entries])
        except errors.PermanentError as e:
            for rec, entry in entries:
                problems[rec] = f"{kpath}: {e}"
                files.current.pop(repo_index.join(str(PurePosixPath(kpath).parent),
                                                  entry["path"]), None)
            continue
        files.current[kpath] = res.text
        by_path = {e["path"]: rec for rec, e in entries}
        for c in res.changes:
            if c.new in by_path:
                note(by_path[c.new], kpath, [c.line])
