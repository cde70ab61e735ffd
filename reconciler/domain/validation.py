"""Validation: the only way from an untrusted document to a model object.

Every problem is reported as an ``errors.FieldError`` naming the field path (the way the
API server names ``spec.containers[0].resources.requests.cpu``) and all problems of a
document are collected, so an author fixes a file in one pass. A bad document never
raises past ``parse_many``: a batch with one bad item rejects that item only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from reconciler.domain import errors, model, quantity

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")

# What a single container can sensibly ask for; beyond is a bug upstream, not a saving.
MAX_CPU = Fraction(1024)
MAX_MEMORY = Fraction(16 * 2**40)  # 16Ti
MAX_REPLICAS = 10_000
MAX_NODES = 100_000
RESOURCE_NAMES = ("cpu", "memory", "ephemeral-storage")
MAX_STRING = 1024
# A recommendation is a handful of levels and a few hundred values deep; far more is an
# attack on the walk, not a recommendation.
MAX_DEPTH = 32
MAX_VALUES = 100_000
_LEAVE = object()  # _shape's marker: a container's children are done

_WORKLOAD_SPEC_FIELDS = {"recommendationId", "action", "targetRef", "containers", "replicas",
                         "hpa", "confidence", "projectedSavings", "source", "autoApply"}
_NODE_SPEC_FIELDS = {"recommendationId", "nodeGroup", "action", "currentNodeCount",
                     "targetNodeCount", "nodesToRemove", "priority", "projectedSavings",
                     "source"}


@dataclass(frozen=True)
class ParseResult:
    """One item of a batch: either a recommendation or the reasons it was refused."""

    index: int
    recommendation: model.Recommendation | None
    errors: tuple[errors.FieldError, ...] = ()
    raw_id: str = ""  # the id as written, when one could be read, to report against

    @property
    def ok(self) -> bool:
        return self.recommendation is not None


class _Collector:
    def __init__(self) -> None:
        self.errors: list[errors.FieldError] = []

    def add(self, path: str, reason: str) -> None:
        self.errors.append(errors.FieldError(path, reason))


def _shape(doc: object) -> tuple[bool, errors.FieldError | None]:
    """One pass over a document: whether every string (keys too) is clean text, and the
    first structural problem, if any: a container that holds itself (a YAML alias can
    build one), nesting deeper than ``MAX_DEPTH``, more than ``MAX_VALUES`` values.

    Iterative, so no document can exhaust the interpreter's stack; a container is left
    when its children are done (``_LEAVE``), so a cycle is told from a value that is merely
    shared (``&res`` used for both requests and limits is fine). Field paths are built
    only for containers; ``_check_text`` names the string fields of the rare document
    that fails the text check.
    """
    # (container, depth, link): a link is (the parent's link, key), so a path is built
    # only for the error that names one.
    stack: list[tuple[object, int, tuple[Any, object] | None]] = [(doc, 0, None)]
    open_: set[int] = set()
    strings: list[str] = []
    walked = 0
    while stack:
        v, depth, link = stack.pop()
        if v is _LEAVE:
            open_.discard(depth)  # the id of the container left, in the depth slot
            continue
        if depth > MAX_DEPTH:
            return False, errors.FieldError(_path(_unlink(link)[:MAX_DEPTH]),
                                            f"is nested deeper than {MAX_DEPTH} levels")
        if id(v) in open_:
            return False, errors.FieldError(_path(_unlink(link)) or "(document)",
                                            "contains itself (a recursive alias)")
        open_.add(id(v))
        stack.append((_LEAVE, id(v), None))
        items: Iterable[tuple[object, object]] = (
            v.items() if isinstance(v, Mapping) else enumerate(v) if isinstance(v, list) else ())
        for k, x in items:
            walked += 1
            if isinstance(k, str):
                strings.append(k)
            if isinstance(x, str):
                strings.append(x)
            elif isinstance(x, (Mapping, list)):
                stack.append((x, depth + 1, (link, k)))
        if walked > MAX_VALUES:
            return False, errors.FieldError("(document)", f"holds more than {MAX_VALUES} values")
    if not strings:
        return True, None
    if max(map(len, strings)) > MAX_STRING:
        return False, None
    joined = " ".join(strings)
    try:
        joined.encode("utf-8")
    except UnicodeEncodeError:
        return False, None
    return not (_CONTROL.search(joined) or "\n" in joined or "\t" in joined), None


def _unlink(link: tuple[Any, object] | None) -> list[object]:
    """The keys from the document's root to a ``_shape`` link."""
    keys: list[object] = []
    while link is not None:
        link, key = link
        keys.append(key)
    return keys[::-1]


def _path(parts: Sequence[object]) -> str:
    """``spec.containers[0].name`` from its parts; keys that are not strings are shown
    as ``_shown`` shows them (a 5,000-digit integer key must not break the message)."""
    out = ""
    for p in parts:
        if isinstance(p, int) and not isinstance(p, bool) and out:
            out += f"[{_shown(p)}]"
        else:
            key = (p or '""') if isinstance(p, str) else _shown(p)  # "" must show
            out = f"{out}.{key}" if out else key
    return out


def _shown(v: object) -> str:
    """A value echoed in an error message, bounded: an input must not be able to make
    the message itself fail (an integer past Python's 4,300-digit ``str`` limit, nesting
    deeper than ``repr`` can go) or drown the reason (a megabyte string)."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int):
        if v.bit_length() > 64:
            return f"an integer of about {int(v.bit_length() * 0.30103) + 1} digits"
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return repr(v) if len(v) <= 64 else f"{v[:64]!r}... ({len(v)} characters)"
    if isinstance(v, (Mapping, list)):
        return f"an {_typename(v)}"
    return _typename(v)


def _check_text(c: _Collector, path: str, value: object) -> None:
    """Reject strings that are not clean text: they end up in commits, PRs and logs."""
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            c.add(path, f"longer than {MAX_STRING} characters")
            return
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            c.add(path, "is not valid UTF-8")
            return
        if _CONTROL.search(value) or "\n" in value or "\t" in value:
            c.add(path, "contains control characters")
    elif isinstance(value, Mapping):
        for k, v in value.items():
            where = _path((path, k) if path else (k,))
            _check_text(c, where, k)
            _check_text(c, where, v)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_text(c, f"{path}[{i}]", v)


def _name(c: _Collector, path: str, value: object, *, label: bool, required: bool = True) -> str:
    if value is None:
        if required:
            c.add(path, "is required")
        return ""
    if not isinstance(value, str):
        c.add(path, f"must be a string, got {_typename(value)}")
        return ""
    limit = 63 if label else 253
    pattern = DNS1123_LABEL if label else DNS1123_SUBDOMAIN
    kind = "DNS-1123 label" if label else "DNS-1123 subdomain"
    if not value:
        c.add(path, "must not be empty")
    elif len(value) > limit:
        c.add(path, f"must be no more than {limit} characters")
    elif not pattern.match(value):
        c.add(path, f"{_shown(value)} is not a valid {kind} (lowercase alphanumerics and '-'"
              + ("" if label else " or '.'") + ", starting and ending with an alphanumeric)")
    return value


def _typename(v: object) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, Mapping):
        return "object"
    if isinstance(v, list):
        return "array"
    return type(v).__name__


def _int(c: _Collector, path: str, value: object, lo: int, hi: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        c.add(path, f"must be an integer, got {_typename(value)}")
        return None
    if value < lo:
        c.add(path, f"must be greater than or equal to {lo}, got {_shown(value)}")
        return None
    if value > hi:
        c.add(path, f"must be at most {hi}, got {_shown(value)}")
        return None
    return value


def _mapping(c: _Collector, path: str, value: object, required: bool = False) -> Mapping[str, Any]:
    if value is None:
        if required:
            c.add(path, "is required")
        return {}
    if not isinstance(value, Mapping):
        c.add(path, f"must be an object, got {_typename(value)}")
        return {}
    return value


def _unknown_fields(c: _Collector, path: str, value: Mapping[str, Any], known: set[str]) -> None:
    for k in value:
        if k not in known:
            c.add(_path((path, k)), f"unknown field (expected one of: {', '.join(sorted(known))})")


def _quantity(c: _Collector, path: str, resource: str, raw: object) -> quantity.Quantity | None:
    if not isinstance(raw, (str, int, float)) or isinstance(raw, bool):
        c.add(path, f"must be a quantity string such as '250m' or '256Mi', got {_typename(raw)}")
        return None
    try:
        q = quantity.parse(raw)
    except quantity.QuantityError as e:
        c.add(path, str(e))
        return None
    if q.value <= 0:
        c.add(path, f"must be greater than zero, got {_shown(raw)}")
        return None
    if resource == "cpu" and q.value > MAX_CPU:
        c.add(path, f"{_shown(raw)} is more than {MAX_CPU} CPUs: not a plausible recommendation")
        return None
    if resource in ("memory", "ephemeral-storage") and q.value > MAX_MEMORY:
        c.add(path, f"{_shown(raw)} is more than 16Ti: not a plausible recommendation")
        return None
    return q


def _resources(c: _Collector, path: str, raw: object) -> dict[str, quantity.Quantity]:
    m = _mapping(c, path, raw)
    out: dict[str, quantity.Quantity] = {}
    for res, val in m.items():
        if res not in RESOURCE_NAMES:
            c.add(f"{path}.{res}",
                  f"unknown resource (expected one of: {', '.join(RESOURCE_NAMES)})")
            continue
        q = _quantity(c, f"{path}.{res}", res, val)
        if q is not None:
            out[res] = q
    return out


def _containers(c: _Collector, raw: object, required: bool) -> tuple[model.ContainerResources, ...]:
    path = "spec.containers"
    if raw is None:
        if required:
            c.add(path, "is required for this action")
        return ()
    if not isinstance(raw, list):
        c.add(path, f"must be an array, got {_typename(raw)}")
        return ()
    if not raw and required:
        c.add(path, "must list at least one container")
    out: list[model.ContainerResources] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(raw):
        ipath = f"{path}[{i}]"
        m = _mapping(c, ipath, item, required=True)
        if not isinstance(item, Mapping):
            continue
        _unknown_fields(c, ipath, m, {"name", "resources"})
        name = _name(c, f"{ipath}.name", m.get("name"), label=True)
        if name and name in seen:
            c.add(f"{ipath}.name",
                  f"duplicate container name {_shown(name)} (also at index {seen[name]})")
        elif name:
            seen[name] = i
        res = _mapping(c, f"{ipath}.resources", m.get("resources"), required=True)
        _unknown_fields(c, f"{ipath}.resources", res, {"requests", "limits"})
        requests = _resources(c, f"{ipath}.resources.requests", res.get("requests"))
        limits = _resources(c, f"{ipath}.resources.limits", res.get("limits"))
        if isinstance(m.get("resources"), Mapping) and not res.get("requests") \
                and not res.get("limits"):
            c.add(f"{ipath}.resources", "must set requests or limits")
        for r, req in requests.items():
            lim = limits.get(r)
            if lim is not None and req.value > lim.value:
                c.add(f"{ipath}.resources.requests.{r}",
                      f"{req} must be less than or equal to the {r} limit {lim}")
        out.append(model.ContainerResources(name=name, requests=requests, limits=limits))
    return tuple(out)


def _savings(c: _Collector, raw: object) -> model.Savings | None:
    if raw is None:
        return None
    m = _mapping(c, "spec.projectedSavings", raw)
    if not m:
        return None
    _unknown_fields(c, "spec.projectedSavings", m, {"monthly", "currency"})
    monthly = m.get("monthly")
    if isinstance(monthly, bool) or not isinstance(monthly, (int, float)):
        c.add("spec.projectedSavings.monthly", f"must be a number, got {_typename(monthly)}")
        return None
    if abs(monthly) > 1e9 or not math.isfinite(monthly):  # abs first: any int compares
        c.add("spec.projectedSavings.monthly", "must be a finite amount below 1e9")
        return None
    currency = m.get("currency", "USD")
    if not isinstance(currency, str) or not re.fullmatch(r"[A-Z]{3}", currency):
        c.add("spec.projectedSavings.currency", "must be a three-letter ISO 4217 code such as USD")
        return None
    return model.Savings(float(monthly), currency)


def _status(c: _Collector, raw: object) -> model.Status:
    """Only the phase of an incoming status is kept: the rest is the operator's to write."""
    m = _mapping(c, "status", raw)
    phase = m.get("phase", model.PENDING)
    if phase not in model.PHASES:
        c.add("status.phase",
              f"unknown phase {_shown(phase)} (expected one of: {', '.join(model.PHASES)})")
        phase = model.PENDING
    return model.Status(phase=str(phase))


def _common(c: _Collector, doc: Mapping[str, Any]) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    api = doc.get("apiVersion")
    if api != model.API_VERSION:
        c.add("apiVersion", f"must be {model.API_VERSION!r}, got {_shown(api)}")
    meta = _mapping(c, "metadata", doc.get("metadata"))
    spec = _mapping(c, "spec", doc.get("spec"), required=True)
    return meta, spec


def _rec_id(c: _Collector, spec: Mapping[str, Any]) -> str:
    return _name(c, "spec.recommendationId", spec.get("recommendationId"), label=False)


def _workload(c: _Collector, doc: Mapping[str, Any]) -> model.WorkloadRecommendation | None:
    meta, spec = _common(c, doc)
    _unknown_fields(c, "spec", spec, _WORKLOAD_SPEC_FIELDS)
    rec_id = _rec_id(c, spec)
    name = _name(c, "metadata.name", meta.get("name") or rec_id or None, label=False)
    namespace = _name(c, "metadata.namespace", meta.get("namespace", "default"), label=True)
    action = spec.get("action")
    if action not in model.WORKLOAD_ACTIONS:
        c.add("spec.action", f"unknown action {_shown(action)} (expected one of: "
              f"{', '.join(model.WORKLOAD_ACTIONS)})")
    tref = _mapping(c, "spec.targetRef", spec.get("targetRef"), required=True)
    _unknown_fields(c, "spec.targetRef", tref, {"kind", "name", "apiVersion"})
    tkind = tref.get("kind")
    tref_given = isinstance(spec.get("targetRef"), Mapping)
    if tref_given and tkind not in model.TARGET_KINDS:
        c.add("spec.targetRef.kind", f"unknown kind {_shown(tkind)} (expected one of: "
              f"{', '.join(model.TARGET_KINDS)})")
    tname = _name(c, "spec.targetRef.name", tref.get("name"), label=False) if tref_given else ""
    tapi = tref.get("apiVersion", "")
    if tapi not in ("", "apps/v1"):
        c.add("spec.targetRef.apiVersion", f"must be 'apps/v1', got {_shown(tapi)}")
    needs_containers = action in (model.RIGHTSIZING, model.LIVE_MIGRATION)
    containers = _containers(c, spec.get("containers"), required=needs_containers)
    replicas = _int(c, "spec.replicas", spec.get("replicas"), 0, MAX_REPLICAS)
    hpa: model.HpaBounds | None = None
    if spec.get("hpa") is not None:
        h = _mapping(c, "spec.hpa", spec.get("hpa"))
        _unknown_fields(c, "spec.hpa", h, {"minReplicas", "maxReplicas"})
        lo = _int(c, "spec.hpa.minReplicas", h.get("minReplicas"), 1, MAX_REPLICAS)
        hi = _int(c, "spec.hpa.maxReplicas", h.get("maxReplicas"), 1, MAX_REPLICAS)
        if lo is not None and hi is not None and lo > hi:
            c.add("spec.hpa.minReplicas", f"{lo} is greater than maxReplicas {hi}")
        if "minReplicas" not in h and "maxReplicas" not in h:
            c.add("spec.hpa", "must set minReplicas or maxReplicas")
        hpa = model.HpaBounds(lo, hi)
    if action == model.REPLICA_SCALING:
        if spec.get("replicas") is None and spec.get("hpa") is None:
            c.add("spec.replicas", "ReplicaScaling needs replicas or hpa")
        elif spec.get("replicas") is not None and spec.get("hpa") is not None:
            c.add("spec.hpa", "set either replicas or hpa, not both")
    confidence = spec.get("confidence")
    if confidence is not None and (
        isinstance(confidence, bool) or not isinstance(confidence, (int, float))
        or not 0 <= confidence <= 1
    ):
        c.add("spec.confidence", f"must be a number between 0 and 1, got {_shown(confidence)}")
        confidence = None
    source = spec.get("source", "")
    if not isinstance(source, str):
        c.add("spec.source", f"must be a string, got {_typename(source)}")
        source = ""
    auto = spec.get("autoApply")
    if auto is not None and not isinstance(auto, bool):
        c.add("spec.autoApply", f"must be a boolean, got {_typename(auto)}")
        auto = None
    savings = _savings(c, spec.get("projectedSavings"))
    status = _status(c, doc.get("status"))
    if c.errors:
        return None
    return model.WorkloadRecommendation(
        recommendationId=rec_id, name=name, namespace=namespace, action=str(action),
        targetRef=model.TargetRef(str(tkind), tname, str(tapi)), containers=containers,
        replicas=replicas, hpa=hpa,
        confidence=float(confidence) if confidence is not None else None,
        projectedSavings=savings, source=source, autoApply=auto, status=status,
    )


def _node_group(c: _Collector, doc: Mapping[str, Any]) -> model.NodeGroupRecommendation | None:
    meta, spec = _common(c, doc)
    _unknown_fields(c, "spec", spec, _NODE_SPEC_FIELDS)
    if meta.get("namespace"):
        c.add("metadata.namespace", "must be empty: NodeGroupRecommendation is cluster-scoped")
    rec_id = _rec_id(c, spec)
    name = _name(c, "metadata.name", meta.get("name") or rec_id or None, label=False)
    group = _name(c, "spec.nodeGroup", spec.get("nodeGroup"), label=False)
    action = spec.get("action")
    if action not in model.NODE_GROUP_ACTIONS:
        c.add("spec.action", f"unknown action {_shown(action)} (expected one of: "
              f"{', '.join(model.NODE_GROUP_ACTIONS)})")
    current = _int(c, "spec.currentNodeCount", spec.get("currentNodeCount"), 0, MAX_NODES)
    if spec.get("targetNodeCount") is None:
        c.add("spec.targetNodeCount", "is required")
    target = _int(c, "spec.targetNodeCount", spec.get("targetNodeCount"), 0, MAX_NODES)
    if action == "consolidate" and current is not None and target is not None and target >= current:
        c.add("spec.targetNodeCount",
              f"consolidate must lower the node count ({target} is not below {current})")
    nodes_raw = spec.get("nodesToRemove", [])
    nodes: list[str] = []
    if not isinstance(nodes_raw, list):
        c.add("spec.nodesToRemove", f"must be an array, got {_typename(nodes_raw)}")
    else:
        for i, n in enumerate(nodes_raw):
            nm = _name(c, f"spec.nodesToRemove[{i}]", n, label=False)
            if nm in nodes:
                c.add(f"spec.nodesToRemove[{i}]", f"duplicate node {_shown(nm)}")
            nodes.append(nm)
        drop = max(current - target, 0) if current is not None and target is not None else None
        if drop is not None and len(nodes) > drop:
            c.add("spec.nodesToRemove",
                  f"lists {len(nodes)} nodes but the count only drops by {drop}")
    priority = _int(c, "spec.priority", spec.get("priority"), -1000, 1000)
    source = spec.get("source", "")
    if not isinstance(source, str):
        c.add("spec.source", f"must be a string, got {_typename(source)}")
        source = ""
    savings = _savings(c, spec.get("projectedSavings"))
    status = _status(c, doc.get("status"))
    if c.errors or target is None:
        return None
    return model.NodeGroupRecommendation(
        recommendationId=rec_id, name=name, nodeGroup=group, action=str(action),
        targetNodeCount=target, currentNodeCount=current, nodesToRemove=tuple(nodes),
        priority=priority, projectedSavings=savings, source=source, status=status,
    )


def parse(doc: object) -> model.Recommendation:
    """Validate one document; raises ``errors.ValidationError`` listing every bad field."""
    c = _Collector()
    if not isinstance(doc, Mapping):
        raise errors.ValidationError([errors.FieldError("(document)",
                                      f"must be an object, got {_typename(doc)}")])
    clean, problem = _shape(doc)
    if problem is not None:  # too deep or recursive: nothing else can be looked at safely
        raise errors.ValidationError([problem])
    if not clean:
        _check_text(c, "", doc)
    if c.errors:  # hostile strings: do not look any further into this document
        raise errors.ValidationError(c.errors)
    kind = doc.get("kind")
    rec: model.Recommendation | None
    if kind == model.WORKLOAD:
        rec = _workload(c, doc)
    elif kind == model.NODE_GROUP:
        rec = _node_group(c, doc)
    else:
        c.add("kind", f"unknown kind {_shown(kind)} (expected one of: {', '.join(model.KINDS)})")
        rec = None
    if c.errors or rec is None:
        raise errors.ValidationError(c.errors or [errors.FieldError("(document)", "invalid")])
    return rec


def raw_id(doc: object) -> str:
    """The id as written, for reporting a refusal against something a user can find."""
    if isinstance(doc, Mapping):
        spec = doc.get("spec")
        if isinstance(spec, Mapping) and isinstance(spec.get("recommendationId"), str):
            rid: str = spec["recommendationId"]
            clean = not _CONTROL.search(rid) and "\n" not in rid and "\t" not in rid
            return rid if clean and len(rid) <= 253 else ""
    return ""


def parse_many(docs: Sequence[object]) -> list[ParseResult]:
    """Validate a batch; a bad item is refused on its own and never stops the others.

    A second document with an id already seen in the batch is refused too: the id is the
    idempotency key, and two different specs under one id cannot both be right.
    """
    out: list[ParseResult] = []
    seen: dict[tuple[str, str], int] = {}
    for i, doc in enumerate(docs):
        rid = raw_id(doc)
        try:
            rec = parse(doc)
        except errors.ValidationError as e:
            out.append(ParseResult(i, None, tuple(e.errors), rid))
            continue
        key = (rec.kind, rec.id)
        if key in seen:
            err = errors.FieldError("spec.recommendationId",
                                    f"duplicate id {rec.id!r} (also item {seen[key]})")
            out.append(ParseResult(i, None, (err,), rid))
            continue
        seen[key] = i
        out.append(ParseResult(i, rec, (), rid))
    return out
