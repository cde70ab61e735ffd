"""Every Helm edit verified by a render, before anything is committed.

A values file is only text to the writer: a path that points at a key no template reads
gives a pull request that looks right and changes nothing, and a key that several
templates read changes more than the recommendation asked. So the writer renders the chart
with the real Helm library (``adapters.helm``) twice, with the files as they are and with
the edited ones (the same values files in the same order, the same release name and
namespace the cluster uses), and compares: the target workload's containers must carry
exactly the recommended values, and nothing else in the output may change. A mismatch
refuses the recommendations it comes from, naming the chart and the key.

Renders are per edited values-file set, not per recommendation: one batch edits a chart's
values once and renders it twice (before and after) whatever the number of
recommendations; only when the combined check fails are the recommendations of that chart
rendered one by one, to refuse exactly the ones at fault. Across batches the render
before an edit, the loaded chart and the parsed output of unchanged templates are kept by
digest (``domain.lru``), so a batch on a base already seen renders each edited chart once.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reconciler.adapters import helm
from reconciler.domain import errors, lru, mappings, planner, quantity
from reconciler.gitops import index as repo_index
from reconciler.gitops import render
from reconciler.yamledit import values

# What a refusal says to whoever cannot have verification (no chart in the repository, no
# Helm library on the machine): the setting that turns it off.
OFF = ("verification can be turned off with --no-verify-render "
       "(DAKR_GITOPS_VERIFY_RENDER=false), at the price of unverified edits")
_CHECKSUM = "checksum/"  # pod-template annotations that exist to change with the values
# Charts rendered at once: the library runs outside the interpreter's lock.
_THREADS = min(4, os.cpu_count() or 1)

Item = tuple[repo_index.Source, planner.Plan]
_Key = tuple[str, str, str, int]  # (kind, namespace, name, n-th of that name)


@dataclass
class Outcome:
    failed: dict[str, str] = field(default_factory=dict)  # rec id -> why it is refused
    renders: int = 0  # chart renders this check made


@dataclass(frozen=True)
class _Group:
    chart: str
    values_files: tuple[str, ...]
    release: str
    namespace: str
    inline: str = ""  # values given after the files (an Argo CD Application's), as JSON
    # those values layer by layer: (manifest the writer may edit, path in it, JSON)
    inline_layers: tuple[tuple[str, str, str], ...] = ()


def check(root: Path, items: Sequence[Item], rendered: render.Rendered, *,
          read: Callable[[str], str]) -> Outcome:
    """Verify the Helm edits of ``rendered`` (the batch ``items`` rendered on the texts
    ``read`` gives); the recommendations to refuse, with the reason. Charts are rendered
    on a few threads: the Helm library runs outside the interpreter's lock."""
    groups: dict[_Group, list[Item]] = {}
    for source, plan in items:
        if (source.kind != "helm-values" or plan.empty or plan.rec_id in rendered.errors
                or plan.hpa is not None):
            continue
        g = _Group(source.chart, source.values_files, source.release, source.release_namespace,
                   source.values_inline, source.values_inline_layers)
        groups.setdefault(g, []).append((source, plan))
    ordered = sorted(groups.items(), key=lambda kv: (kv[0].chart, kv[0].values_files,
                                                     kv[0].release, kv[0].namespace,
                                                     kv[0].inline, kv[0].inline_layers))
    out = Outcome()
    if not ordered:
        return out
    with futures.ThreadPoolExecutor(max_workers=min(_THREADS, len(ordered))) as pool:
        for one in pool.map(lambda kv: _check_group(root, kv[0], kv[1], rendered.texts, read),
                            ordered):
            out.failed.update(one.failed)
            out.renders += one.renders
    return out


def _check_group(root: Path, g: _Group, group: list[Item], texts: Mapping[str, str],
                 read: Callable[[str], str]) -> Outcome:
    out = Outcome()
    where = group[0][0].path
    if not g.chart:
        msg = (f"{where}: the edit cannot be verified: the chart is not in this repository "
               f"(no Chart.yaml above {where}, or the Argo CD Application takes it from a "
               "Helm repository or another Git repository), so it cannot be rendered here; "
               f"set `chart` in the layout to the chart's directory if it is here, or {OFF}")
        out.failed.update({p.rec_id: msg for _, p in group})
        return out
    if not _edits(g, texts):
        return out  # nothing of this chart changes (the branch already holds these values)
    try:
        before, after = _render_pair(root, g, texts, read, out)
        problems = _judge(g, group, before, after)
        if problems and len(group) > 1:
            alone: dict[str, str] = {}
            for item in group:
                one = render.render_many(root, [item], base_text=read)
                if item[1].rec_id in one.errors or not _edits(g, one.texts):
                    continue
                _, solo = _render_pair(root, g, one.texts, read, out, before=before)
                alone.update(_judge(g, [item], before, solo))
            problems = alone or problems  # only interacting edits: refuse them all
    except helm.HelmUnavailable as e:
        msg = f"{where}: the edit of chart {g.chart} cannot be verified: {e}; {OFF}"
        out.failed.update({p.rec_id: msg for _, p in group})
        return out
    except errors.PermanentError as e:
        msg = f"{where}: chart {g.chart} (release {g.release}): {e}"
        out.failed.update({p.rec_id: msg for _, p in group})
        return out
    out.failed.update(problems)
    return out


def _edits(g: _Group, texts: Mapping[str, str]) -> bool:
    manifests = {file for file, _, _ in g.inline_layers if file}
    return any(p in g.values_files or p in manifests or _under(p, g.chart) is not None
               for p in texts)


def _inline(g: _Group, texts: Mapping[str, str]) -> list[Any]:
    """The values given after the files, as the render sees them with ``texts``: a layer
    in a manifest the batch edited (the HelmRelease's spec.values, the Application's
    helm.valuesObject) is read back from the edited text, the others are as they were."""
    if not any(file in texts for file, _, _ in g.inline_layers if file):
        return [json.loads(g.inline)] if g.inline else []
    layers: list[Any] = []
    for file, at, data in g.inline_layers:
        if not file or file not in texts:
            layers.append(json.loads(data))
            continue
        node = mappings.at(values.read_values(texts[file]), values.split_path(at, root=True))
        if not isinstance(node, Mapping):
            raise errors.PermanentError(f"{file}: no values mapping at {at} after the edit")
        layers.append(node)
    return [helm.merge_values(layers)]


def _under(path: str, chart: str) -> str | None:
    """``path`` relative to the chart directory, or None when it lies outside. Both are
    the index's normalized repository paths, so a prefix test says it: this runs for every
    edited file against every chart of a batch, where a path object per call cost more
    than the render it decides on."""
    if chart == ".":
        return path
    if path.startswith(chart) and path[len(chart):len(chart) + 1] == "/":
        return path[len(chart) + 1:]
    return "." if path == chart else None


def _render_pair(root: Path, g: _Group, texts: Mapping[str, str], read: Callable[[str], str],
                 out: Outcome, *, before: Mapping[str, str] | None = None
                 ) -> tuple[Mapping[str, str], dict[str, str]]:
    """The chart rendered as it is (or ``before`` when already known) and with ``texts``
    in place of the files they replace; template path -> text.

    When the only chart file edited is the chart's own values.yaml (the common case), the
    chart is loaded once: the render before is the chart as it is, the render after gets
    the edited values.yaml as its first values layer, over the file it replaces (Helm
    coalesces the layer over those defaults; the edit only changes values and adds keys,
    so that is the edited file), and a before-and-after pair costs one load. An edit
    elsewhere in the chart (a subchart's values.yaml) renders the chart rebuilt with the
    edited file instead."""
    overrides = {rel: t for p, t in texts.items() if (rel := _under(p, g.chart)) is not None}
    chart_dir = root / g.chart
    own = "values.yaml" if g.chart == "." else f"{g.chart}/values.yaml"
    only_own = set(overrides) <= {"values.yaml"}

    def layers(tx: Mapping[str, str]) -> dict[str, Any]:
        first = [own] if only_own and own in tx else []
        inline = _inline(g, tx)
        return helm.merge_values([*(_values(tx[f] if f in tx else read(f), f)
                                    for f in [*first, *g.values_files]), *inline])

    release = g.release or "release"
    key = _digest(root, g, read)
    if before is None:
        before = _BEFORE.get(key)
    if only_own:
        sets = ([layers({})] if before is None else []) + [layers(texts)]
        out.renders += len(sets)
        found = helm.render_each(chart_dir, sets, release=release, namespace=g.namespace,
                                 digest=key)
        if before is None:
            before = _BEFORE.put(key, found[0])
        return before, found[-1]
    if before is None:
        out.renders += 1
        before = _BEFORE.put(key, helm.render(chart_dir, values=layers({}), release=release,
                                              namespace=g.namespace))
    out.renders += 1
    return before, helm.render(chart_dir, values=layers(texts), release=release,
                               namespace=g.namespace, overrides=overrides)


# Kept across batches. The base branch rarely moves between two batches, so the render of a
# chart before an edit is usually known already (by the digest of everything that went into
# it) and verifying costs one render per edited chart; the output of a template that did
# not change is not parsed again either (by its text; never changed by a reader: _compare
# copies).
_BEFORE: lru.Lru[str, Mapping[str, str]] = lru.Lru(256)
_PARSED: lru.Lru[str, list[Any]] = lru.Lru(2048)
_VALUES: lru.Lru[str, dict[str, Any]] = lru.Lru(512)  # values file text -> values


def forget_renders() -> None:
    """Drop what is kept across batches (a benchmark's cold start)."""
    _BEFORE.clear()
    _PARSED.clear()
    _VALUES.clear()
    helm.forget_charts()


def _values(text: str, name: str) -> dict[str, Any]:
    """A values file as Helm reads it, parsed once per text: the edited values.yaml is
    both the first layer and one of the files, and the files of the render before are
    those of the render after (never changed by a reader: merging copies)."""
    found = _VALUES.get(text)
    return found if found is not None else _VALUES.put(text, helm.parse_values(text, name))


def _digest(root: Path, g: _Group, read: Callable[[str], str]) -> str:
    """What a render of the chart as it is depends on: every file of the chart, the values
    files' texts, the release and namespace."""
    return helm.chart_digest(
        root / g.chart,
        repr((g.chart, g.values_files, g.release, g.namespace, g.inline)).encode(),
        *(f.encode() + b"\0" + read(f).encode() for f in g.values_files))


def _judge(g: _Group, group: Sequence[Item], before: Mapping[str, str],
           after: Mapping[str, str]) -> dict[str, str]:
    """``_compare`` on the objects of two renders. Only the templates whose text changed
    are parsed first (most of a chart's output does not move); when that finds a problem,
    everything is parsed again so that the reason is exact (a target whose template did
    not change at all, say)."""
    changed = {t for t in set(before) | set(after) if before.get(t) != after.get(t)}
    problems = _compare(g, group, _objects(before, g.namespace, changed),
                        _objects(after, g.namespace, changed))
    if problems:
        problems = _compare(g, group, _objects(before, g.namespace),
                            _objects(after, g.namespace))
    return problems


def _objects(manifests: Mapping[str, str], namespace: str,
             only: set[str] | None = None) -> dict[_Key, Any]:
    """Every rendered object (of the templates in ``only``, when given) by (kind,
    namespace, name); NOTES.txt is not an object."""
    objs: dict[_Key, Any] = {}
    for template in sorted(manifests):
        if template.endswith("NOTES.txt") or (only is not None and template not in only):
            continue
        text = manifests[template]
        docs = _PARSED.get(text)
        if docs is None:
            try:
                docs = [_without_checksums(d)
                        for d in yaml.load_all(text, Loader=yaml.CSafeLoader) if d is not None]
            except yaml.YAMLError:
                docs = [text]  # compared as text
            _PARSED.put(text, docs)
        for n, doc in enumerate(docs):
            meta = doc.get("metadata") if isinstance(doc, dict) else None
            if isinstance(meta, dict) and isinstance(meta.get("name"), str):
                key = (str(doc.get("kind", "")), str(meta.get("namespace") or namespace),
                       meta["name"], 0)
            else:
                key = (template, "", "", n)
            while key in objs:
                key = (*key[:3], key[3] + 1)
            objs[key] = doc
    return objs


def _without_checksums(doc: Any) -> Any:
    """A chart's ``checksum/...`` pod annotations change with the values by design (they
    roll the pods when a value changes); they are not part of the comparison."""
    if not isinstance(doc, dict):
        return doc
    for meta in (doc.get("metadata"),
                 ((doc.get("spec") or {}).get("template") or {}).get("metadata")
                 if isinstance(doc.get("spec"), dict) else None):
        ann = meta.get("annotations") if isinstance(meta, dict) else None
        if isinstance(ann, dict):
            for k in [k for k in ann if str(k).startswith(_CHECKSUM)]:
                del ann[k]
    return doc


def _containers(obj: Any) -> list[Any]:
    spec = obj.get("spec") if isinstance(obj, dict) else None
    template = spec.get("template") if isinstance(spec, dict) else None
    pod = template.get("spec") if isinstance(template, dict) else None
    if not isinstance(pod, dict):
        return []
    return [c for key in ("containers", "initContainers") for c in pod.get(key) or []
            if isinstance(c, dict)]


def _keys(source: repo_index.Source, plan: planner.Plan) -> list[str]:
    paths = dict(source.values_containers)
    keys = [values.child_path(paths[e.container], e.section, e.resource)
            for e in plan.resources if e.container in paths]
    if plan.replicas is not None:
        keys.append(source.values_replicas)
    return keys


def _compare(g: _Group, group: Sequence[Item], before: Mapping[_Key, Any],
             after: Mapping[_Key, Any]) -> dict[str, str]:
    """Rec id -> what is wrong with its edit; empty when every target carries exactly its
    recommended values and nothing else changed."""
    chart = f"chart {g.chart} (release {g.release}, namespace {g.namespace})"
    problems: dict[str, str] = {}
    by_target: dict[_Key, list[Item]] = {}
    for source, plan in group:
        by_target.setdefault((plan.kind, source.target[0], plan.name, 0), []).append(
            (source, plan))
    for key, items in by_target.items():
        kind, ns, name, _ = key
        old, new = before.get(key), after.get(key)
        if old is None or new is None:
            for s, p in items:
                problems[p.rec_id] = (
                    f"{chart}: the render holds no {kind}/{name} in namespace {ns}, so the "
                    f"edit of {', '.join(_keys(s, p))} cannot be verified (is `releaseName` "
                    "or `namespace` of the layout the release's?)")
            continue
        expected = copy.deepcopy(old)
        for source, plan in items:
            why = _expect(expected, new, source, plan, chart, f"{kind}/{name}")
            if why:
                problems[plan.rec_id] = why
        if any(p.rec_id in problems for _, p in items):
            continue
        if expected != new:
            at = mappings.first_difference(expected, new)[0] or "the whole object"
            for s, p in items:
                problems[p.rec_id] = (f"{chart}: editing {', '.join(_keys(s, p))} changes "
                                      f"{kind}/{name} beyond the recommendation (at {at})")
    others = sorted(k for k in set(before) | set(after)
                    if k not in by_target and before.get(k) != after.get(k))
    if others:
        shown = ", ".join(f"{k[0]}/{k[2]}" if k[2] else k[0] for k in others[:3])
        more = f" and {len(others) - 3} more" if len(others) > 3 else ""
        for s, p in group:
            problems.setdefault(p.rec_id, f"{chart}: editing {', '.join(_keys(s, p))} also "
                                          f"changes {shown}{more}, which the recommendation "
                                          "does not target")
    return problems


def _expect(expected: Any, actual: Any, source: repo_index.Source, plan: planner.Plan,
            chart: str, what: str) -> str:
    """Apply one plan to ``expected`` (the target as rendered before), checking that the
    render after the edit (``actual``) carries each value; the first value that does not
    arrive, else "". A value that arrives in another spelling of the same quantity
    (``0.5`` for ``500m``) is taken as the render spells it."""
    paths = dict(source.values_containers)
    want = {c.get("name"): c for c in _containers(expected)}
    got = {c.get("name"): c for c in _containers(actual)}
    for e in plan.resources:
        key = values.child_path(paths.get(e.container, "?"), e.section, e.resource)
        if e.container not in got or e.container not in want:
            return f"{chart}: {what} has no container {e.container!r} for values key {key}"
        res = got[e.container].get("resources") or {}
        value = (res.get(e.section) or {}).get(e.resource) if isinstance(res, dict) else None
        if value is None or not quantity.same(str(value), e.new):
            now = "nothing" if value is None else repr(str(value))
            return (f"{chart}: values key {key} does not reach {what} (container {e.container} "
                    f"{e.section}.{e.resource}: the render gives {now}, the recommendation "
                    f"{e.new!r}): no template reads that key as this workload's value")
        mine = want[e.container].setdefault("resources", {})
        if not isinstance(mine, dict):
            mine = want[e.container]["resources"] = {}
        section = mine.setdefault(e.section, {})
        if not isinstance(section, dict):
            section = mine[e.section] = {}
        section[e.resource] = value
    if plan.replicas is not None:
        got_n = (actual.get("spec") or {}).get("replicas") if isinstance(actual, dict) else None
        if got_n != plan.replicas[1]:
            return (f"{chart}: values key {source.values_replicas} does not reach {what} "
                    "(replicas: "
                    f"the render gives {got_n if got_n is not None else 'nothing'}, the "
                    f"recommendation {plan.replicas[1]}): no template reads that key as "
                    "this workload's replica count")
        expected.setdefault("spec", {})["replicas"] = got_n
    return ""
