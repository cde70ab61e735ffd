"""The guarded writes of a direct-mode change: JSON Patches whose ``test`` operations check
the very values a plan was computed from, so that a concurrent writer's change makes the
patch fail (and the recommendation be re-read and re-decided) instead of being clobbered.

Also where replica changes are routed to the HPA when one owns scaling (setting
``spec.replicas`` under an HPA would be undone by it), and the audit lines of a change.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from reconciler.adapters import kube
from reconciler.domain import clock, decision, errors, model, planner

CONTAINERS = "/spec/template/spec/containers"


@dataclass(frozen=True)
class Change:
    """A plan bound to the live objects it was computed from."""

    plan: planner.Plan
    target: dict[str, Any]
    hpa: dict[str, Any] | None


def plan(rec: model.WorkloadRecommendation, dec: decision.Decision, target: dict[str, Any],
          hpa: dict[str, Any] | None) -> planner.Plan:
    """The planner's edits, with replica changes routed to the HPA when one owns scaling."""
    p = planner.plan(rec, dec, target)
    if hpa is None:
        if rec.hpa is not None and rec.replicas is None:
            raise errors.PermanentError(
                f"the recommendation sets HPA bounds but no HorizontalPodAutoscaler targets "
                f"{rec.target_label}")
        return p
    hpa_name = hpa["metadata"]["name"]
    if rec.replicas is not None and rec.hpa is None:
        raise errors.PermanentError(
            f"HorizontalPodAutoscaler {hpa_name} owns the scaling of {rec.target_label}: "
            "setting spec.replicas would be undone by it; send hpa bounds instead")
    p = replace(p, replicas=None)
    if rec.hpa is None:
        return p
    spec = hpa.get("spec") or {}
    old = {"minReplicas": int(spec.get("minReplicas", 1)),
           "maxReplicas": int(spec["maxReplicas"])}
    new = dict(old)
    if rec.hpa.minReplicas is not None:
        new["minReplicas"] = rec.hpa.minReplicas
    if rec.hpa.maxReplicas is not None:
        new["maxReplicas"] = rec.hpa.maxReplicas
    if new["minReplicas"] > new["maxReplicas"]:
        raise errors.PermanentError(
            f"HPA {hpa_name}: minReplicas {new['minReplicas']} would exceed maxReplicas "
            f"{new['maxReplicas']}")
    if new != old:
        p = replace(p, hpa=(old, new))
    return p


def previous(change: Change) -> dict[str, Any]:
    """status.previous: the values replaced (planner shape) plus what we set in their place
    (``set``) and the HPA we edited, so a rollback can check that they are still ours."""
    p = change.plan
    out = p.previous()
    applied = p.applied()
    if p.hpa is not None and change.hpa is not None:
        out["hpaName"] = change.hpa["metadata"]["name"]
    else:
        applied.pop("hpa", None)
    out["set"] = applied
    out["target"] = {"kind": p.kind, "namespace": p.namespace, "name": p.name}
    return out


def container_ops(target: Mapping[str, Any], edits: Sequence[planner.ValueEdit],
                   values: str) -> list[dict[str, Any]]:
    """JSON Patch for container resource edits. ``values`` = "new" to apply, "old" to put
    back. Every value the edit starts from is tested; the container index is tested by name
    so that a reordered pod template cannot make us write into the wrong container."""
    containers = planner.containers_of(target)
    index = {str(c.get("name")): i for i, c in enumerate(containers)}
    ops: list[dict[str, Any]] = []
    by_container: dict[str, list[planner.ValueEdit]] = {}
    for e in edits:
        by_container.setdefault(e.container, []).append(e)
    for name, group in by_container.items():
        if name not in index:
            raise errors.NotFoundError(f"container {name!r} is no longer in the pod template")
        i = index[name]
        base = f"{CONTAINERS}/{i}"
        cont = containers[i]
        ops.append({"op": "test", "path": f"{base}/name", "value": name})
        res = cont.get("resources")
        if not isinstance(res, Mapping):
            # Nothing to test value by value: test the whole container as read.
            ops.append({"op": "test", "path": base, "value": copy.deepcopy(dict(cont))})
            new_res: dict[str, Any] = {}
            for e in group:
                v = e.new if values == "new" else e.old
                if v is not None:
                    new_res.setdefault(e.section, {})[e.resource] = v
            ops.append({"op": "add", "path": f"{base}/resources", "value": new_res})
            continue
        for section in ("requests", "limits"):
            sec_edits = [e for e in group if e.section == section]
            if not sec_edits:
                continue
            cur = res.get(section)
            spath = f"{base}/resources/{section}"
            if not isinstance(cur, Mapping):
                ops.append({"op": "test", "path": f"{base}/resources",
                            "value": copy.deepcopy(dict(res))})
                vals = {e.resource: (e.new if values == "new" else e.old) for e in sec_edits}
                ops.append({"op": "add", "path": spath,
                            "value": {k: v for k, v in vals.items() if v is not None}})
                continue
            for e in sec_edits:
                start, goal = (e.old, e.new) if values == "new" else (e.new, e.old)
                path = f"{spath}/{_escape(e.resource)}"
                if start is None:
                    # An absent key cannot be tested: test the section it would join.
                    ops.append({"op": "test", "path": spath, "value": copy.deepcopy(dict(cur))})
                else:
                    ops.append({"op": "test", "path": path, "value": cur.get(e.resource)})
                if goal is None:
                    ops.append({"op": "remove", "path": path})
                else:
                    ops.append({"op": "add" if start is None else "replace", "path": path,
                                "value": goal})
    return ops


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def hpa_ops(start: Mapping[str, int], goal: Mapping[str, int],
             hpa: Mapping[str, Any]) -> list[dict[str, Any]]:
    spec = hpa.get("spec") or {}
    ops: list[dict[str, Any]] = []
    # maxReplicas first when growing, minReplicas first when shrinking: every intermediate
    # state stays valid (the server validates the final object only, but be obvious).
    for key in ("minReplicas", "maxReplicas"):
        if key in spec:
            ops.append({"op": "test", "path": f"/spec/{key}", "value": spec[key]})
        if spec.get(key, 1 if key == "minReplicas" else None) != start.get(key):
            raise errors.ConflictError(f"HPA {key} is {spec.get(key)}, expected {start.get(key)}")
    for key in ("minReplicas", "maxReplicas"):
        if goal.get(key) != start.get(key):
            ops.append({"op": "add" if key not in spec else "replace", "path": f"/spec/{key}",
                        "value": goal[key]})
    return ops


def send(api: kube.Kube, rec: model.WorkloadRecommendation, change: Change, *,
          dry_run: bool) -> None:
    """The workload (and HPA / scale) writes of one plan; every one guarded."""
    p = change.plan
    kind, ns, name = rec.targetRef.kind, rec.namespace, rec.targetRef.name
    if p.resources:
        api.json_patch(kind, ns, name, container_ops(change.target, p.resources, "new"),
                       dry_run=dry_run)
    if p.replicas is not None:
        api.scale(kind, ns, name, p.replicas[0], p.replicas[1], dry_run=dry_run)
    if p.hpa is not None and change.hpa is not None:
        api.json_patch(kube.HPA, ns, change.hpa["metadata"]["name"],
                       hpa_ops(p.hpa[0], p.hpa[1], change.hpa), dry_run=dry_run)


def describe(p: planner.Plan) -> str:
    parts = [f"{e.container} {e.section}.{e.resource} {e.old or '(unset)'} -> {e.new}"
             for e in p.resources]
    if p.replicas is not None:
        parts.append(f"replicas {p.replicas[0]} -> {p.replicas[1]}")
    if p.hpa is not None:
        parts.append(f"HPA min/max {p.hpa[0]['minReplicas']}/{p.hpa[0]['maxReplicas']} -> "
                     f"{p.hpa[1]['minReplicas']}/{p.hpa[1]['maxReplicas']}")
    return ", ".join(parts)


def audit_lines(p: planner.Plan, hpa: Mapping[str, Any] | None, dec: decision.Decision,
                 action: str, who: str) -> list[dict[str, Any]]:
    """One structured line per changed value: who, what, before, after, decision id."""
    target = {"kind": p.kind, "namespace": p.namespace, "name": p.name}
    lines: list[dict[str, Any]] = []

    def line(what: str, obj: Mapping[str, Any], before: Any, after: Any) -> None:
        lines.append({"event": "change", "action": action, "who": who,
                      "recommendationId": p.rec_id, "decisionId": dec.decision_id,
                      "policyRevision": dec.policy_revision,
                      "object": dict(obj), "field": what, "before": before, "after": after,
                      "at": clock.rfc3339()})

    for e in p.resources:
        line(f"spec.template.spec.containers[{e.container}].resources.{e.section}."
             f"{e.resource}", target, e.old, e.new)
    if p.replicas is not None:
        line("spec.replicas", target, p.replicas[0], p.replicas[1])
    if p.hpa is not None:
        ref = {"kind": kube.HPA, "namespace": p.namespace,
               "name": (hpa or {}).get("metadata", {}).get("name", "")}
        for key in ("minReplicas", "maxReplicas"):
            if p.hpa[0].get(key) != p.hpa[1].get(key):
                line(f"spec.{key}", ref, p.hpa[0].get(key), p.hpa[1].get(key))
    return lines
