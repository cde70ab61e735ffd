"""The planner: recommendation + decision + observed state -> concrete edits, as data.

Pure. Everything a writer needs is here: the values to set, and the values they replace
(kept in status so any change can be rolled back). A field the recommendation leaves out
is left as it is on the target; a value equal to the current one is not an edit at all,
which is what makes a rerun of an applied recommendation a no-op.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.domain import decision, errors, model, quantity


@dataclass(frozen=True)
class ValueEdit:
    """One scalar: ``container`` / ``section`` (requests|limits) / ``resource``."""

    container: str
    section: str
    resource: str
    old: str | None  # None: the key does not exist yet
    new: str


@dataclass(frozen=True)
class Plan:
    rec_id: str
    kind: str          # target kind
    namespace: str
    name: str          # target name
    resources: tuple[ValueEdit, ...] = ()
    replicas: tuple[int | None, int] | None = None  # (old, new)
    hpa: tuple[dict[str, int], dict[str, int]] | None = None  # (old, new) min/max

    @property
    def empty(self) -> bool:
        return not self.resources and self.replicas is None and self.hpa is None

    def previous(self) -> dict[str, Any]:
        """What status.previous records: enough to put every changed value back."""
        return self._values(0)

    def applied(self) -> dict[str, Any]:
        """The values this plan sets, in the same shape (what a rollback checks is still
        there before it puts the previous ones back)."""
        return self._values(1)

    def _values(self, side: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for e in self.resources:
            c = out.setdefault("containers", {}).setdefault(e.container, {})
            c.setdefault(e.section, {})[e.resource] = (e.old, e.new)[side]
        if self.replicas is not None:
            out["replicas"] = self.replicas[side]
        if self.hpa is not None:
            out["hpa"] = self.hpa[side]
        return out

    def container_changes(self) -> dict[str, dict[str, dict[str, str]]]:
        """{container: {requests|limits: {resource: new}}}, what a YAML or JSON writer applies."""
        out: dict[str, dict[str, dict[str, str]]] = {}
        for e in self.resources:
            sec = out.setdefault(e.container, {"requests": {}, "limits": {}})
            sec[e.section][e.resource] = e.new
        return out


def containers_of(obj: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The pod template's containers of a Deployment/StatefulSet/DaemonSet (or a Pod)."""
    spec = obj.get("spec") or {}
    pod = (spec.get("template") or {}).get("spec") or spec
    return [c for c in (pod.get("containers") or []) if isinstance(c, Mapping)]


def current_resources(obj: Mapping[str, Any]) -> dict[str, dict[str, dict[str, str]]]:
    """{container: {requests: {cpu: "200m"}, limits: {...}}} as written on the target."""
    out: dict[str, dict[str, dict[str, str]]] = {}
    for c in containers_of(obj):
        res = c.get("resources") or {}
        out[str(c.get("name"))] = {
            sec: {str(k): str(v) for k, v in (res.get(sec) or {}).items()}
            for sec in ("requests", "limits")
        }
    return out


def _bounded(resource: str, q: quantity.Quantity, bound: object) -> quantity.Quantity:
    """Apply a policy bound: a number is the value to use instead (cores for CPU, bytes
    otherwise, as the policy input counts them); ``{min, max}`` quantities clamp."""
    if isinstance(bound, bool) or bound is None:
        return q
    if isinstance(bound, (int, float)):
        if resource == "cpu":
            return quantity.cpu(bound)
        return quantity.memory(math.ceil(bound))
    if isinstance(bound, Mapping):
        lo, hi = bound.get("min"), bound.get("max")
        if lo is not None and q.value < quantity.parse(lo).value:
            return quantity.Quantity(quantity.parse(lo).value, q.format)
        if hi is not None and q.value > quantity.parse(hi).value:
            return quantity.Quantity(quantity.parse(hi).value, q.format)
    return q


def plan(rec: model.Recommendation, dec: decision.Decision,
         target: Mapping[str, Any] | None) -> Plan:
    """The edits that carry out ``rec`` on ``target`` within the decision's bounds.

    Raises ``errors.PermanentError`` when the recommendation cannot apply to this target
    (a container it names is missing, or the result would set a request above a limit):
    such a plan would produce an object the API server refuses, or worse, accepts.
    """
    if not isinstance(rec, model.WorkloadRecommendation):
        raise errors.PermanentError("node group recommendations are not planned for workloads")
    if target is None:
        raise errors.NotFoundError(
            f"{rec.targetRef.kind}/{rec.targetRef.name} not found in namespace {rec.namespace}")
    current = current_resources(target)
    bounds = dec.bounds.get("containers", {}) if isinstance(dec.bounds, Mapping) else {}
    edits: list[ValueEdit] = []
    for c in rec.containers:
        if c.name not in current:
            raise errors.NotFoundError(
                f"container {c.name!r} not found in {rec.targetRef.kind}/{rec.targetRef.name}"
                f" (has: {', '.join(sorted(current)) or 'none'})")
        cb = bounds.get(c.name, {}) if isinstance(bounds, Mapping) else {}
        final: dict[str, dict[str, quantity.Quantity]] = {"requests": {}, "limits": {}}
        for section, values in (("requests", c.requests), ("limits", c.limits)):
            for res, q in values.items():
                q = _bounded(res, q, (cb.get(section) or {}).get(res))
                final[section][res] = q
                old = current[c.name][section].get(res)
                if old is None or not quantity.same(old, str(q)):
                    edits.append(ValueEdit(c.name, section, res, old, str(q)))
        # The result must stay a valid pod spec: request <= limit for every resource.
        for res in set(final["requests"]) | set(current[c.name]["requests"]):
            req = final["requests"].get(res)
            req_s = str(req) if req is not None else current[c.name]["requests"].get(res)
            lim = final["limits"].get(res)
            lim_s = str(lim) if lim is not None else current[c.name]["limits"].get(res)
            if req_s is None or lim_s is None:
                continue
            try:
                if quantity.parse(req_s).value > quantity.parse(lim_s).value:
                    raise errors.PermanentError(
                        f"container {c.name!r}: requests.{res} {req_s} would exceed "
                        f"limits.{res} {lim_s}")
            except quantity.QuantityError as e:
                raise errors.PermanentError(
                    f"container {c.name!r}: the target holds an invalid {res} value: {e}") from e
    replicas: tuple[int | None, int] | None = None
    if rec.replicas is not None:
        new = rec.replicas
        rb = dec.bounds.get("replicas") if isinstance(dec.bounds, Mapping) else None
        if isinstance(rb, int) and not isinstance(rb, bool):
            new = rb
        elif isinstance(rb, Mapping):
            new = max(new, int(rb.get("min", new)))
            new = min(new, int(rb.get("max", new)))
        spec = target.get("spec") or {}
        old_r = spec.get("replicas")
        # A Deployment without replicas runs 1: setting 1 explicitly changes nothing.
        effective = old_r if isinstance(old_r, int) else 1
        if new != effective or (old_r is None and new != 1):
            replicas = (old_r if isinstance(old_r, int) else None, new)
    return Plan(rec_id=rec.id, kind=rec.targetRef.kind, namespace=rec.namespace,
                name=rec.targetRef.name, resources=tuple(edits), replicas=replicas)


def plan_node_group(rec: model.NodeGroupRecommendation,
                    observed: Mapping[str, Any] | None) -> Plan:
    """A node group's size as an edit: the count the repository (or a Cluster API
    MachineDeployment's ``spec.replicas``) holds now is the old value, for rollback."""
    spec = (observed or {}).get("spec") or {}
    old = spec.get("replicas")
    old = old if isinstance(old, int) and not isinstance(old, bool) else None
    if old == rec.targetNodeCount:
        return Plan(rec.id, model.NODE_GROUP, "", rec.nodeGroup)
    return Plan(rec.id, model.NODE_GROUP, "", rec.nodeGroup,
                replicas=(old, rec.targetNodeCount))
