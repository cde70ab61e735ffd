"""The live-migration admission webhook's answer, pure: an AdmissionReview v1 document in,
the AdmissionReview to send back out.

Live migration resizes a workload's running pods in place; pods created later (a
scale-up, a rescheduled or evicted pod) come from the pod template with the old values.
Like the Vertical Pod Autoscaler's admission controller, the webhook gives such a pod the
values of the live migration applied to its workload, and only those:

- The workload is found without an API call, from the pod's controller owner: a
  ReplicaSet named ``<deployment>-<pod-template-hash>`` whose hash equals the pod's
  ``pod-template-hash`` label belongs to that Deployment; a StatefulSet or a DaemonSet is
  the workload itself.
- ``index`` maps a workload (namespace, kind, name) to the values of its live migrations
  (``{container: {requests|limits: {resource: quantity}}}``, see ``contribution`` and
  ``merge``); the runtime keeps it from the store.
- The answer always allows the pod (the webhook never blocks a pod's creation); it adds
  a JSON Patch only when a value differs from the pod's, and never one that would change
  the pod's QoS class (the in-place resize could not either), put a request above its
  limit, or touch a pod with pod-level resources: those are left as they are, with a
  warning saying why.
- Only CREATE of ``pods`` (core v1, no subresource) is looked at; anything else is
  allowed unchanged. A review whose request is malformed still gets a well-formed allowed
  answer (with its uid when it has one); a body that is not an AdmissionReview at all is
  a 400, as webhook servers answer it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from reconciler.domain import model, quantity
from reconciler.domain import text as txt

API_VERSION = "admission.k8s.io/v1"
KIND = "AdmissionReview"
SECTIONS = ("requests", "limits")
RESOURCES = ("cpu", "memory")  # what a resize changes, and what decides the QoS class
HASH_LABEL = "pod-template-hash"
PREFIX = "dakr live migration: "
WARNING_LIMIT = 200  # a warning line; the API server allows 256 per warning

# Outcome.result: what came of one review (the metrics' label values)
PATCHED = "patched"          # values set on the pod
UNCHANGED = "unchanged"      # the workload is indexed and the pod already has its values
SKIPPED = "skipped"          # indexed, but setting the values would be wrong (a warning says why)
IGNORED = "ignored"          # not a pod creation, or a pod of no indexed workload
MALFORMED = "malformed"      # a review whose request is not what the API server sends
BAD_REQUEST = "bad_request"  # not an AdmissionReview at all (HTTP 400)
RESULTS = (PATCHED, UNCHANGED, SKIPPED, IGNORED, MALFORMED, BAD_REQUEST)

Target = tuple[str, str, str]                      # (namespace, kind, name) of a workload
Values = Mapping[str, Mapping[str, Mapping[str, str]]]  # container -> section -> resource
Index = Mapping[Target, Values]
Json = dict[str, Any]


@dataclass(frozen=True)
class Outcome:
    """One review's answer: the HTTP status and body, and what the log and the metrics
    say of it (never the request itself)."""

    status: int
    body: Json | None           # the AdmissionReview to answer (None with a 400)
    result: str
    error: str = ""             # a 400's reason
    pod: str = ""               # namespace/name, or namespace/generateName* at creation
    target: Target | None = None  # the indexed workload the pod belongs to
    patched: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


def review(doc: Any, index: Index) -> Outcome:
    """The answer to an AdmissionReview ``doc`` (parsed JSON) given the live index."""
    if not isinstance(doc, dict) or doc.get("kind") != KIND:
        return _bad("not an AdmissionReview")
    if doc.get("apiVersion") != API_VERSION:
        return _bad(f"only {API_VERSION} AdmissionReviews are served")
    req = doc.get("request")
    if not isinstance(req, dict):
        return _bad("the AdmissionReview has no request")
    uid = req.get("uid")
    uid = uid if isinstance(uid, str) else ""
    if not uid:
        return _allow(uid, MALFORMED)
    if not _is_pod_create(req):
        return _allow(uid, IGNORED)
    pod = req.get("object")
    if not isinstance(pod, dict):
        return _allow(uid, MALFORMED)
    meta = pod.get("metadata")
    spec = pod.get("spec")
    containers = spec.get("containers") if isinstance(spec, dict) else None
    if not isinstance(meta, dict) or not isinstance(spec, dict) \
            or not isinstance(containers, list):
        return _allow(uid, MALFORMED)
    namespace = req.get("namespace") or meta.get("namespace") or ""
    if not isinstance(namespace, str):
        return _allow(uid, MALFORMED)
    label = pod_label(namespace, meta)
    target = owner_workload(namespace, meta)
    values = index.get(target) if target is not None else None
    if target is None or values is None:
        return _allow(uid, IGNORED, pod=label)
    return _mutate(uid, label, target, spec, containers, values)


def _mutate(uid: str, label: str, target: Target, spec: Json, containers: list[Any],
            values: Values) -> Outcome:
    def skipped(why: str) -> Outcome:
        return _allow(uid, SKIPPED, pod=label, target=target,
                      warnings=(_warning(f"{target[1]} {target[2]}: {why}; the pod keeps "
                                         "its template's values"),))

    if _pod_level_resources(spec):
        return skipped("the pod sets pod-level resources")
    by_name = {c["name"]: i for i, c in enumerate(containers)
               if isinstance(c, dict) and isinstance(c.get("name"), str)}
    after = [dict(c) if isinstance(c, dict) else c for c in containers]
    changes: dict[int, dict[str, dict[str, str]]] = {}
    patched: dict[str, dict[str, dict[str, str]]] = {}
    for name, sections in sorted(values.items()):
        i = by_name.get(name)
        if i is None:
            continue  # a container the recommendation knows and this pod has not
        cur = _resources(containers[i])
        new = {s: dict(cur.get(s) or {}) for s in SECTIONS}
        for section in SECTIONS:
            for resource, value in sorted((sections.get(section) or {}).items()):
                if resource not in RESOURCES:
                    continue
                try:
                    quantity.parse(value)
                except quantity.QuantityError:
                    return skipped(f"{section}.{resource} of container {name} is not a "
                                   "quantity")
                have = cur.get(section, {}).get(resource)
                if isinstance(have, (str, int, float)) and quantity.same(str(have), value):
                    continue
                new[section][resource] = value
                changes.setdefault(i, {}).setdefault(section, {})[resource] = value
                patched.setdefault(name, {}).setdefault(section, {})[resource] = value
        if i in changes:
            had = containers[i].get("resources")
            res = dict(had) if isinstance(had, dict) else {}
            res.update({s: v for s, v in new.items() if v or s in res})
            after[i] = {**containers[i], "resources": res}
    if not changes:
        return _allow(uid, UNCHANGED, pod=label, target=target)
    for i in changes:
        over = _request_over_limit(after[i])
        if over:
            return skipped(f"container {after[i].get('name')}: {over}")
    before_qos = qos_class({**spec, "containers": containers})
    after_qos = qos_class({**spec, "containers": after})
    if before_qos != after_qos:
        return skipped(f"the QoS class would change from {before_qos} to {after_qos}")
    ops = patch_ops(containers, changes)
    return Outcome(200, _response(uid, ops), PATCHED, pod=label, target=target,
                   patched=patched)


def patch_ops(containers: Sequence[Any], changes: Mapping[int, Mapping[str, Mapping[str, str]]]
              ) -> list[Json]:
    """JSON Patch operations setting ``changes`` ({container index: {section: {resource:
    value}}}) on the pod's containers, adding the ``resources``, ``requests`` and
    ``limits`` maps where the pod has none (``add`` replaces a member that exists)."""
    ops: list[Json] = []
    for i, sections in sorted(changes.items()):
        base = f"/spec/containers/{i}/resources"
        res = containers[i].get("resources")
        if not isinstance(res, dict):
            ops.append({"op": "add", "path": base,
                        "value": {s: dict(v) for s, v in sections.items() if v}})
            continue
        for section, items in sections.items():
            have = res.get(section)
            if not isinstance(have, dict):
                ops.append({"op": "add", "path": f"{base}/{section}", "value": dict(items)})
                continue
            for resource, value in items.items():
                ops.append({"op": "add", "path": f"{base}/{section}/{pointer(resource)}",
                            "value": value})
    return ops


def pointer(token: str) -> str:
    """One JSON-pointer reference token (RFC 6901): ``~`` and ``/`` escaped."""
    return token.replace("~", "~0").replace("/", "~1")


# --------------------------------------------------------------------------- the pod


def _is_pod_create(req: Json) -> bool:
    kind, resource = req.get("kind"), req.get("resource")
    return (req.get("operation") == "CREATE" and not req.get("subResource")
            and isinstance(kind, dict) and isinstance(resource, dict)
            and kind.get("group", "") == "" and kind.get("version") == "v1"
            and kind.get("kind") == "Pod"
            and resource.get("group", "") == "" and resource.get("version") == "v1"
            and resource.get("resource") == "pods")


def pod_label(namespace: str, meta: Json) -> str:
    """How the log names a pod: at creation it often has only a generateName."""
    name = meta.get("name")
    if isinstance(name, str) and name:
        return f"{namespace}/{name}"
    gen = meta.get("generateName")
    return f"{namespace}/{gen}*" if isinstance(gen, str) and gen else f"{namespace}/(no name)"


def owner_workload(namespace: str, meta: Json) -> Target | None:
    """The workload a pod belongs to, from its controller owner reference alone:
    ``(namespace, Deployment | StatefulSet | DaemonSet, name)``, or None."""
    refs = meta.get("ownerReferences")
    if not isinstance(refs, list):
        return None
    owner = next((r for r in refs if isinstance(r, dict) and r.get("controller") is True),
                 None)
    if owner is None:
        return None
    api_version, kind, name = owner.get("apiVersion"), owner.get("kind"), owner.get("name")
    if not isinstance(api_version, str) or not api_version.startswith("apps/") \
            or not isinstance(name, str) or not name:
        return None
    if kind in ("StatefulSet", "DaemonSet"):
        return (namespace, kind, name)
    if kind != "ReplicaSet":
        return None
    labels = meta.get("labels")
    suffix = labels.get(HASH_LABEL) if isinstance(labels, dict) else None
    if not isinstance(suffix, str) or not suffix or not name.endswith(f"-{suffix}"):
        return None  # a ReplicaSet of no Deployment (or named some other way)
    deployment = name[:-len(suffix) - 1]
    return (namespace, "Deployment", deployment) if deployment else None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _resources(container: Any) -> dict[str, dict[str, Any]]:
    res = container.get("resources") if isinstance(container, dict) else None
    if not isinstance(res, dict):
        return {}
    return {s: dict(res[s]) for s in SECTIONS if isinstance(res.get(s), dict)}


def _pod_level_resources(spec: Json) -> bool:
    res = spec.get("resources")
    return isinstance(res, dict) and any(isinstance(res.get(s), dict) and res.get(s)
                                         for s in SECTIONS)


def _q(value: Any) -> quantity.Quantity | None:
    try:
        return quantity.parse(value)
    except quantity.QuantityError:
        return None


def _defaulted(container: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """A container's (requests, limits) as the API server defaults them: a resource with a
    limit and no request requests its limit."""
    res = _resources(container)
    requests, limits = dict(res.get("requests") or {}), dict(res.get("limits") or {})
    for k, v in limits.items():
        requests.setdefault(k, v)
    return requests, limits


def _request_over_limit(container: Any) -> str:
    requests, limits = _defaulted(container)
    for resource in sorted(set(requests) & set(limits)):
        req, lim = _q(requests[resource]), _q(limits[resource])
        if req is not None and lim is not None and lim < req:
            return (f"the {resource} request {requests[resource]} would exceed its limit "
                    f"{limits[resource]}")
    return ""


def qos_class(spec: Json) -> str:
    """The pod's QoS class as Kubernetes computes it (``ComputePodQOS``): over the
    containers and init containers, cpu and memory only, zero values not counted;
    Guaranteed when every container limits both and the requests equal the limits,
    BestEffort when nothing is requested or limited, else Burstable. Pod-level resources,
    when set, decide alone."""
    zero = quantity.parse("0")
    requests: dict[str, quantity.Quantity] = {}
    limits: dict[str, quantity.Quantity] = {}
    guaranteed = True
    pod_level = spec.get("resources")
    if _pod_level_resources(spec) and isinstance(pod_level, dict):
        groups: list[Any] = [{"resources": pod_level}]
    else:
        groups = [c for key in ("containers", "initContainers")
                  for c in _list(spec.get(key)) if isinstance(c, dict)]
    for c in groups:
        reqs, lims = _defaulted(c)
        for name in RESOURCES:
            q = _q(reqs[name]) if name in reqs else None
            if q is not None and zero < q:
                requests[name] = quantity.Quantity(requests[name].value + q.value) \
                    if name in requests else q
        found = set()
        for name in RESOURCES:
            q = _q(lims[name]) if name in lims else None
            if q is not None and zero < q:
                found.add(name)
                limits[name] = quantity.Quantity(limits[name].value + q.value) \
                    if name in limits else q
        if found != set(RESOURCES):
            guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    if guaranteed and all(name in limits and limits[name] == req
                          for name, req in requests.items()) \
            and len(requests) == len(limits):
        return "Guaranteed"
    return "Burstable"


# --------------------------------------------------------------------------- the index


@dataclass(frozen=True)
class Contribution:
    """What one live-migration recommendation gives the pods of its workload."""

    rec_id: str
    target: Target
    values: dict[str, dict[str, dict[str, str]]]
    order: tuple[str, str] = ("", "")  # (created at, id): later recommendations win


MUTATING_PHASES = (model.APPLYING, model.APPLIED)


def contribution(kind: str, rec_id: str, spec: Mapping[str, Any], status: Mapping[str, Any],
                 *, deleting: bool = False, created_at: str = "") -> Contribution | None:
    """The values a stored recommendation asks the webhook to set, or None: only a
    LiveMigration that is Applying or Applied, not being deleted (its rollback is under
    way), whose status says the webhook persists it (``liveMigration.persist: webhook``;
    with ``template`` the pod template carries the values), with the values it set
    (``previous.set.containers``) on the workload it set them on (``previous.target``)."""
    if kind != model.WORKLOAD or deleting or spec.get("action") != model.LIVE_MIGRATION:
        return None
    if status.get("phase") not in MUTATING_PHASES:
        return None
    live = status.get("liveMigration")
    if not isinstance(live, Mapping) or live.get("persist") != "webhook":
        return None
    prev = status.get("previous")
    if not isinstance(prev, Mapping):
        return None
    target = prev.get("target")
    applied = prev.get("set")
    containers = applied.get("containers") if isinstance(applied, Mapping) else None
    if not isinstance(target, Mapping) or not isinstance(containers, Mapping):
        return None
    ns, tkind, name = target.get("namespace"), target.get("kind"), target.get("name")
    if not (isinstance(ns, str) and ns and isinstance(name, str) and name
            and tkind in model.TARGET_KINDS):
        return None
    values: dict[str, dict[str, dict[str, str]]] = {}
    for container, sections in containers.items():
        if not isinstance(container, str) or not isinstance(sections, Mapping):
            continue
        for section in SECTIONS:
            items = sections.get(section)
            if not isinstance(items, Mapping):
                continue
            for resource, value in items.items():
                if resource in RESOURCES and isinstance(value, str) and value:
                    values.setdefault(container, {}).setdefault(section, {})[resource] = value
    if not values:
        return None
    return Contribution(rec_id, (ns, str(tkind), name), values, (created_at, rec_id))


def merge(contributions: Sequence[Contribution]) -> dict[str, dict[str, dict[str, str]]]:
    """One workload's values from its live migrations: an older one's value is kept
    unless a newer one sets the same field (recommendations touching different fields
    apply together)."""
    out: dict[str, dict[str, dict[str, str]]] = {}
    for c in sorted(contributions, key=lambda c: c.order):
        for container, sections in c.values.items():
            for section, items in sections.items():
                out.setdefault(container, {}).setdefault(section, {}).update(items)
    return out


# --------------------------------------------------------------------------- answers


def _warning(text: str) -> str:
    """One short line: names in it come from the pod and the recommendation."""
    return txt.one_line(PREFIX + text, WARNING_LIMIT)


def _response(uid: str, ops: list[Json] | None = None,
              warnings: Sequence[str] = ()) -> Json:
    resp: Json = {"uid": uid, "allowed": True}
    if ops:
        resp["patchType"] = "JSONPatch"
        resp["patch"] = base64.b64encode(
            json.dumps(ops, separators=(",", ":")).encode()).decode("ascii")
    if warnings:
        resp["warnings"] = list(warnings)
    return {"apiVersion": API_VERSION, "kind": KIND, "response": resp}


def _allow(uid: str, result: str, *, pod: str = "", target: Target | None = None,
           warnings: tuple[str, ...] = ()) -> Outcome:
    return Outcome(200, _response(uid, warnings=warnings), result, pod=pod, target=target,
                   warnings=warnings)


def fallback(doc: Any) -> Outcome:
    """The answer when answering failed all the same (a bug): the pod allowed as it is,
    with the request's uid when there is one."""
    req = doc.get("request") if isinstance(doc, dict) else None
    uid = req.get("uid") if isinstance(req, dict) else None
    return _allow(uid if isinstance(uid, str) else "", MALFORMED)


def _bad(why: str) -> Outcome:
    return Outcome(400, None, BAD_REQUEST, error=why)
