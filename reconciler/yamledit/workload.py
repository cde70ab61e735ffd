"""Edits of workload manifests: the Deployment, StatefulSet, DaemonSet, CronJob or Pod
document that a recommendation names.

A manifest file may hold many documents and several workloads of one name in different
namespaces, so an edit must first find exactly one document (two candidates are an error,
not a guess), then walk its pod template to the named containers. That knowledge of a
workload's shape lives here; the Kustomize editor reuses it for the partial workloads that
strategic-merge patches are.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from yaml.nodes import MappingNode, Node, SequenceNode

from reconciler.domain import errors
from reconciler.yamledit import splice

DEFAULT_KINDS: tuple[str, ...] = ("Deployment", "StatefulSet", "DaemonSet")
# Kinds whose pods are not under spec.template.spec.
_POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
    "Pod": ("spec",),
}
_DEFAULT_POD_SPEC_PATH = ("spec", "template", "spec")
_NO_REPLICAS_KINDS = frozenset({"DaemonSet", "CronJob", "Job", "Pod"})
_RESOURCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")


@dataclass(frozen=True)
class ContainerChange:
    name: str
    requests: Mapping[str, str] = field(default_factory=dict)  # absent = untouched
    limits: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class WorkloadChange:
    kind: str
    name: str
    namespace: str | None  # None matches any namespace
    containers: Sequence[ContainerChange] = ()
    replicas: int | None = None


def pod_spec_path(kind: str) -> tuple[str, ...]:
    """The path to the pod spec: kinds nest it differently (a CronJob under jobTemplate),
    and every way to a container goes through here."""
    return _POD_SPEC_PATHS.get(kind, _DEFAULT_POD_SPEC_PATH)


def scan_workloads(text: str, kinds: Collection[str] = DEFAULT_KINDS) -> list[splice.WorkloadRef]:
    """List the workloads a manifest file defines, composing only candidate documents.

    Raises errors.PermanentError if a candidate document is not valid YAML.
    """
    _, body = splice.strip_bom(text)
    if not kinds:
        return []
    wanted = set(kinds)
    pattern = splice.kind_filter(wanted)
    refs: list[splice.WorkloadRef] = []
    for index, seg in enumerate(splice.split_documents(body)):
        if not pattern.search(body, seg.start, seg.end):
            continue
        doc = splice.compose(body, index, seg)
        ident = splice.identity(doc.root)
        if ident is not None and ident[0] in wanted:
            refs.append(splice.WorkloadRef(ident[0], ident[1], ident[2], index, doc.line(doc.root)))
    return refs


def validate(change: WorkloadChange) -> None:
    """Refuse a bad change before any text is touched: a value that is not a plain quantity
    could inject YAML, and a kind without replicas has no field to write a count to."""
    target = f"{change.kind}/{change.name}"
    if change.replicas is not None and (
        isinstance(change.replicas, bool) or not isinstance(change.replicas, int)
    ):
        raise errors.FieldError(f"{target}.replicas", f"not a count: {change.replicas!r}")
    if change.replicas is not None:
        splice.check_count(f"{target}.replicas", change.replicas)
    if change.replicas is not None and change.kind in _NO_REPLICAS_KINDS:
        raise errors.FieldError(f"{target}.replicas", f"a {change.kind} has no replicas")
    seen: set[str] = set()
    for c in change.containers:
        if c.name in seen:
            raise errors.FieldError(f"{target}.containers", f"container {c.name!r} twice")
        seen.add(c.name)
        for section, values in (("requests", c.requests), ("limits", c.limits)):
            for res, qty in values.items():
                where = f"{target}.containers[{c.name}].{section}.{res}"
                if not isinstance(res, str) or len(res) > 253 or not _RESOURCE_NAME.fullmatch(res):
                    raise errors.FieldError(where, f"not a resource name: {res!r}")
                splice.check_quantity(where, qty)


def _plan(body: str, doc: splice.Doc,
          change: WorkloadChange) -> tuple[list[splice.Splice], list[splice.Leaf]]:
    splices: list[splice.Splice] = []
    leaves: list[splice.Leaf] = []
    p = splice.Planner(body, doc, splices, leaves)
    root = p.require_mapping(doc.root, splice.Where("", (), ()), "document")
    top = splice.Where("", (), (root,))

    if change.replicas is not None:
        spec_pair = p.lookup(root, "spec", top)
        if spec_pair is None:
            raise errors.PermanentError(f"{change.kind}/{change.name} has no spec")
        spec_where = top.child("spec", "spec", spec_pair[1])
        spec = p.require_mapping(spec_pair[1], spec_where, "spec")
        new = str(change.replicas)
        rep = p.lookup(spec, "replicas", spec_where)
        rep_where = spec_where.child("replicas", "replicas", spec)
        if rep is not None:
            p.replace(rep[1], rep_where, new, numeric=True)
        else:
            entry = p.leaf_entry("replicas", rep_where, new, "")
            p.put(spec_pair[0], spec, root, spec_where, [entry], at_start=True)

    if change.containers:
        _plan_containers(p, root, top, change)
    return splices, leaves


def _plan_containers(p: splice.Planner, root: MappingNode, top: splice.Where,
                     change: WorkloadChange) -> None:
    node: Node = root
    where = top
    for key in pod_spec_path(change.kind):
        pair = p.lookup(node, key, where)
        if pair is None:
            raise errors.NotFoundError(f"{change.kind}/{change.name} has no {where.path}.{key}")
        node = pair[1]
        where = where.child(key, key, node)
        p.require_mapping(node, where, key)
    pod_spec, pod_where = node, where

    for cc in change.containers:
        found: tuple[MappingNode, splice.Where] | None = None
        for list_key in ("containers", "initContainers"):
            pair = p.lookup(pod_spec, list_key, pod_where)
            if pair is None or not isinstance(pair[1], SequenceNode):
                continue
            list_where = pod_where.child(list_key, list_key, pair[1])
            for i, item in enumerate(pair[1].value):
                if splice.scalar_value(splice.get(item, "name")) == cc.name:
                    item_where = list_where.child(i, f"[{cc.name}]", item)
                    p.check_unshared(item, item_where)
                    found = (p.require_mapping(item, item_where, "container"), item_where)
                    break
            if found:
                break
        if found is None:
            raise errors.NotFoundError(
                f"container {cc.name!r} not found in {change.kind}/{change.name} "
                f"(document {p.doc.index}, line {p.doc.line(root)})"
            )
        _plan_resources(p, found[0], found[1], cc)


def _plan_resources(p: splice.Planner, container: MappingNode, cw: splice.Where,
                    cc: ContainerChange) -> None:
    sections = [(s, v) for s, v in (("requests", cc.requests), ("limits", cc.limits)) if v]
    if not sections:
        return
    res = p.lookup(container, "resources", cw)

    def new_section(sec: str, values: Mapping[str, str], at: splice.Where,
                    quote: str) -> splice.Entry:
        sec_where = at.child(sec, sec, container)
        kids = [
            p.leaf_entry(k, sec_where.child(k, k, container), v, quote) for k, v in values.items()
        ]
        return splice.Entry(sec, children=kids)

    if res is None:
        rw = cw.child("resources", "resources", container)
        entries = [new_section(s, v, rw, "") for s, v in sections]
        p.put(None, container, None, cw, [splice.Entry("resources", children=entries)])
        return
    rkey, rval = res
    rw = cw.child("resources", "resources", rval)
    if not isinstance(rval, MappingNode):
        p.put(rkey, rval, container, rw, [new_section(s, v, rw, "") for s, v in sections])
        return
    quote = splice.quote_of(rval)
    missing: list[splice.Entry] = []
    for sec, values in sections:
        spair = p.lookup(rval, sec, rw)
        if spair is None:
            missing.append(new_section(sec, values, rw, quote))
            continue
        skey, sval = spair
        sw = rw.child(sec, sec, sval)
        squote = splice.quote_of(sval) if isinstance(sval, MappingNode) and sval.value else quote
        if not isinstance(sval, MappingNode):  # null: every value is new
            kids = [p.leaf_entry(k, sw.child(k, k, rval), v, squote) for k, v in values.items()]
            p.put(skey, sval, rval, sw, kids)
            continue
        new_kids: list[splice.Entry] = []
        for k, v in values.items():
            kw = sw.child(k, k, sval)
            vpair = p.lookup(sval, k, sw)
            if vpair is None:
                new_kids.append(p.leaf_entry(k, kw, v, squote))
            else:
                p.replace(vpair[1], kw, v)
        p.put(skey, sval, rval, sw, new_kids)
    p.put(rkey, rval, container, rw, missing)


def edit_many(
    text: str, changes: Sequence[WorkloadChange], *, default_namespace: str = "default"
) -> splice.EditResult:
    """Apply several workload changes to one file in a single pass.

    Candidate documents are composed once; all splices are computed against the original
    text and applied in one ordered join, so positions never drift. A document without
    metadata.namespace counts as ``default_namespace``; a change with namespace None
    matches any. Raises errors.FieldError (a PermanentError) for a value that is not a
    plain quantity, errors.NotFoundError for a missing workload or container,
    splice.AmbiguousTargetError when two documents match, and errors.PermanentError for
    anything it will not edit safely (anchors/aliases, merge keys, block scalars, a failed
    check).
    """
    for change in changes:
        validate(change)
    bom, body = splice.strip_bom(text)
    if not changes:
        return splice.EditResult(text, ())
    segs = splice.split_documents(body)
    pattern = splice.kind_filter(c.kind for c in changes)
    names = {c.name for c in changes}
    candidates: list[tuple[splice.Doc, tuple[str, str, str | None]]] = []
    for index, seg in enumerate(segs):
        if not pattern.search(body, seg.start, seg.end):
            continue
        part = body[seg.start : seg.end]
        if not any(n in part for n in names):
            continue
        doc = splice.compose(body, index, seg)
        ident = splice.identity(doc.root)
        if ident is not None:
            candidates.append((doc, ident))

    splices: list[splice.Splice] = []
    edited: dict[int, tuple[splice.Doc, list[splice.Leaf]]] = {}
    for change in changes:
        doc = find_target(candidates, change, default_namespace)
        if doc.index in edited:
            raise errors.PermanentError(
                f"{change.kind}/{change.name} is changed twice in one edit; merge the changes"
            )
        doc_splices, doc_leaves = _plan(body, doc, change)
        splices.extend(doc_splices)
        edited[doc.index] = (doc, doc_leaves)

    verified = {i: e for i, e in edited.items() if e[1]}
    return splice.apply_and_verify(text, bom, body, segs, splices, verified)


def find_target(
    candidates: list[tuple[splice.Doc, tuple[str, str, str | None]]],
    change: WorkloadChange,
    default_namespace: str,
) -> splice.Doc:
    """The one candidate that ``change`` names; two are an AmbiguousTargetError naming both
    places, because editing either would be a guess."""
    matches = [
        doc
        for doc, (kind, name, ns) in candidates
        if kind == change.kind
        and name == change.name
        and (change.namespace is None or (ns or default_namespace) == change.namespace)
    ]
    shown = f"{change.kind} {change.namespace or '*'}/{change.name}"
    if not matches:
        raise errors.NotFoundError(f"{shown} is not defined in this file")
    if len(matches) > 1:
        places = [(d.index, d.line(d.root)) for d in matches]
        where = " and ".join(f"document {i} (line {ln})" for i, ln in places)
        raise splice.AmbiguousTargetError(f"{shown} is defined more than once: {where}", places)
    return matches[0]


def edit_workload(
    text: str, change: WorkloadChange, *, default_namespace: str = "default"
) -> splice.EditResult:
    """Apply one workload change; see ``edit_many``."""
    return edit_many(text, [change], default_namespace=default_namespace)
