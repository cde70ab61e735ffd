"""Every Kustomize edit verified by a build, before anything is committed.

The writer edits an overlay's files as text, and what the cluster gets from them depends on
Kustomize: which patch wins, which name a patch must use once ``namePrefix`` and components
are at work, whether a `replicas:` entry matches. An edit that Kustomize reads differently
from the index (a patch that no longer matches, a name that misses) would give a pull
request that looks right and changes nothing, or changes more. So where a Kustomize binary
is available (``adapters.kustomize``) the overlay is built twice, with the files as they
are and with the edited ones, and compared: each target object must carry exactly the
recommended values, and nothing else in the output may change. A mismatch refuses the
recommendations it comes from, with the reason.

Builds are per overlay and batch (two, whatever the number of recommendations). A
difference in a target object refuses that target's recommendation; any other difference
cannot be told apart and refuses every recommendation of the overlay. A build that already
fails before the edit cannot judge the edit: nothing is refused and ``Outcome.skipped``
says why (the caller logs it, as it does when no binary is found).
"""

from __future__ import annotations

import copy
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from reconciler.adapters import kustomize
from reconciler.domain import errors, mappings, planner, quantity
from reconciler.domain import text as txt
from reconciler.gitops import index as repo_index
from reconciler.gitops import render
from reconciler.yamledit import workload

Item = tuple[repo_index.Source, planner.Plan]
_Key = tuple[str, str, str]  # (kind, namespace or "", name) of an object in a build
_KUSTOMIZE_KINDS = ("manifest", "kustomize-patch", "kustomize-new-patch", "kustomize-replicas")
_SKIP_DIRS = (".git",)


@dataclass
class Outcome:
    failed: dict[str, str] = field(default_factory=dict)  # rec id -> why it is refused
    builds: int = 0  # Kustomize builds this check ran
    skipped: dict[str, str] = field(default_factory=dict)  # overlay -> why it was not checked


def check(root: Path, items: Sequence[Item], rendered: render.Rendered,
          builder: kustomize.Kustomize) -> Outcome:
    """Verify the Kustomize edits of ``rendered`` (the batch ``items`` rendered against the
    files under ``root``, which must still hold the texts the edits started from): the
    recommendations to refuse, with the reason. ``root`` is never written to."""
    out = Outcome()
    groups: dict[str, list[Item]] = {}
    for source, plan in items:
        if (source.kind not in _KUSTOMIZE_KINDS or not source.kustomization or plan.empty
                or plan.hpa is not None or plan.rec_id in rendered.errors):
            continue
        overlay = PurePosixPath(source.kustomization).parent.as_posix()
        groups.setdefault("" if overlay == "." else overlay, []).append((source, plan))
    if not groups or not rendered.texts:
        return out
    for overlay, group in sorted(groups.items()):
        _check_overlay(root, overlay, group, rendered.texts, builder, out)
    return out


def _check_overlay(root: Path, overlay: str, group: list[Item], texts: Mapping[str, str],
                   builder: kustomize.Kustomize, out: Outcome) -> None:
    shown = overlay or "."
    try:
        before = _objects(builder.build(root / overlay), shown)
    except errors.ReconcilerError as e:
        out.builds += 1
        out.skipped[shown] = f"the build of {shown} fails before the edit: {e}"
        return
    out.builds += 1
    with tempfile.TemporaryDirectory(prefix="dakr-kustomize-") as tmp:
        copy_root = Path(tmp) / "repo"
        shutil.copytree(root, copy_root, symlinks=True,
                        ignore=shutil.ignore_patterns(*_SKIP_DIRS))
        for rel, text in texts.items():
            path = copy_root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(text.encode("utf-8"))
        try:
            out.builds += 1
            after = _objects(builder.build(copy_root / overlay), shown)
        except errors.ReconcilerError as e:
            for _, plan in group:
                out.failed[plan.rec_id] = (f"the edit of {shown} cannot be verified: "
                                           f"{str(e).replace(str(copy_root), '<edited copy>')}")
            return
    targets: dict[_Key, planner.Plan] = {}
    for _, plan in group:
        key = _find(before, plan)
        if key is None:
            out.failed[plan.rec_id] = (
                f"{plan.kind}/{plan.name} in namespace {plan.namespace or '-'} is not in the "
                f"build of {shown}")
            continue
        targets[key] = plan
        problem = _compare(plan, before[key], after.get(key))
        if problem:
            out.failed[plan.rec_id] = f"{shown}: {plan.kind}/{plan.name}: {problem}"
    others = sorted(k for k in set(before) | set(after)
                    if k not in targets and before.get(k) != after.get(k))
    if others:
        kind, ns, name = others[0]
        more = f" (and {len(others) - 1} more)" if len(others) > 1 else ""
        reason = (f"the edit of {shown} also changes {kind}/{name}"
                  f"{' in namespace ' + ns if ns else ''}{more}, which no recommendation "
                  "asked for; refusing to write")
        for _, plan in group:
            out.failed.setdefault(plan.rec_id, reason)


def _objects(stream: str, overlay: str) -> dict[_Key, Any]:
    """The build's objects by (kind, namespace, name)."""
    try:
        docs = [d for d in yaml.safe_load_all(stream) if d is not None]
    except yaml.YAMLError as e:
        raise errors.PermanentError(f"the build of {overlay} is not YAML: {e}") from e
    objs: dict[_Key, Any] = {}
    for d in docs:
        meta = d.get("metadata") if isinstance(d, Mapping) else None
        if not isinstance(meta, Mapping):
            continue
        objs[(str(d.get("kind", "")), str(meta.get("namespace") or ""),
              str(meta.get("name", "")))] = d
    return objs


def _find(objs: Mapping[_Key, Any], plan: planner.Plan) -> _Key | None:
    """The plan's target in a build: by its namespace, or without one where the overlay
    sets none (the Argo CD application's destination namespace then applies)."""
    for key in ((plan.kind, plan.namespace, plan.name), (plan.kind, "", plan.name)):
        if key in objs:
            return key
    return None


def _expected(plan: planner.Plan, before: Any) -> Any:
    """``before`` with exactly the plan's values set."""
    obj = copy.deepcopy(before)
    if plan.replicas is not None and isinstance(obj, dict):
        obj.setdefault("spec", {})["replicas"] = plan.replicas[1]
    pod = obj
    for key in workload.pod_spec_path(plan.kind):
        pod = pod.get(key) if isinstance(pod, dict) else None
    listed = [c for lk in ("containers", "initContainers")
              for c in ((pod.get(lk) if isinstance(pod, dict) else None) or [])
              if isinstance(c, dict)]
    for e in plan.resources:
        # A container the build does not have stays absent: the comparison then names it.
        for c in (c for c in listed if c.get("name") == e.container):
            res = c.setdefault("resources", {})
            res.setdefault(e.section, {})[e.resource] = e.new
    return obj


def _compare(plan: planner.Plan, before: Any, after: Any) -> str:
    """Why ``after`` is not ``before`` with exactly the plan's values; "" when it is."""
    if after is None:
        return "it is no longer in the build after the edit"
    want = _normal(_expected(plan, before))
    got = _normal(after)
    if want == got:
        return ""
    path, w, g = mappings.first_difference(want, got)
    return (f"after the edit the build has {txt.one_line(repr(g), 120)} at {path or '.'}, "
            f"not {txt.one_line(repr(w), 120)}")


def _normal(obj: Any, in_resources: bool = False) -> Any:
    """Quantities under ``resources`` in canonical form (``0.5`` is ``500m``; a build may
    write them as the patch did or as a number)."""
    if isinstance(obj, Mapping):
        return {str(k): _normal(v, in_resources or k == "resources") for k, v in obj.items()}
    if isinstance(obj, list):
        return [_normal(v, in_resources) for v in obj]
    if in_resources and isinstance(obj, (str, int, float)) and not isinstance(obj, bool):
        try:
            return quantity.canonical(obj)
        except quantity.QuantityError:
            return obj
    return obj
