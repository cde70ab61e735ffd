"""In-place pod resize as data: what a pod's resize would change, whether it may, and how
far it got (KEP-1287, as ``REFERENCE.md`` "In-place pod resize" describes it).

Pure: the executor (``reconciler/direct/resize.py``) reads pods and watches them; every
judgement about a pod is made here, from the pod document alone, so that each rule is one
table test. The rules are the API server's and the kubelet's:

- only ``spec.containers[*].resources`` move, through ``pods/{name}/resize``;
- the computed QoS class may not change (the API server answers 422), so a resize that
  would change it is refused before it is sent;
- a pod with ``restartPolicy: Never`` may only be resized under ``NotRequired``;
- a running container whose ``status.containerStatuses[].resources`` is not reported yet
  cannot be resized;
- progress is read from the pod's conditions (present only while true):
  ``PodResizePending`` (reason ``Deferred``: wait; ``Infeasible``: stop),
  ``PodResizeInProgress`` (empty reason: applying; ``Error``: stop, with the message), and
  the resize is done when the container statuses report the desired values.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reconciler.domain import admission, quantity, selectors

JSON = dict[str, Any]
# {container: {requests|limits: {cpu|memory: "quantity"}}}: values to set (or put back).
Values = Mapping[str, Mapping[str, Mapping[str, str]]]

DONE = "Done"
APPLYING = "Applying"        # accepted, not actuated yet (or PodResizeInProgress, no reason)
DEFERRED = "Deferred"        # PodResizePending/Deferred: fits the node, not now
INFEASIBLE = "Infeasible"    # PodResizePending/Infeasible: never re-checked
ERROR = "Error"              # PodResizeInProgress/Error
GONE = "Gone"                # the pod was deleted (or replaced under the same name)

STOPS = (INFEASIBLE, ERROR)
PENDING = "PodResizePending"
IN_PROGRESS = "PodResizeInProgress"
RESIZABLE = admission.RESOURCES  # what a resize may change


@dataclass(frozen=True)
class Progress:
    """How far a pod's resize got, and the kubelet's words when it said something."""

    state: str
    message: str = ""


def containers(pod: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [c for c in ((pod.get("spec") or {}).get("containers") or [])
            if isinstance(c, Mapping)]


def values_of(pod: Mapping[str, Any], keys: Values) -> dict[str, dict[str, dict[str, str | None]]]:
    """The pod's current spec values for exactly the keys of ``keys`` (None: unset): what
    a resize replaces, recorded per pod before it is sent so that it can be put back."""
    by_name = {str(c.get("name")): c for c in containers(pod)}
    out: dict[str, dict[str, dict[str, str | None]]] = {}
    for cname, secs in keys.items():
        res = (by_name.get(cname) or {}).get("resources") or {}
        for section, vals in secs.items():
            have = res.get(section) or {}
            for r in vals:
                v = have.get(r)
                out.setdefault(cname, {}).setdefault(section, {})[r] = (
                    None if v is None else str(v))
    return out


def matches(have: Mapping[str, Any] | None, want: Mapping[str, Mapping[str, str | None]]) -> bool:
    """True when a container's resources (spec or status) hold every wanted value."""
    have = have or {}
    for section, vals in want.items():
        got = have.get(section) or {}
        for r, v in vals.items():
            g = got.get(r)
            if v is None:
                if g is not None:
                    return False
            elif g is None or not quantity.same(str(g), str(v)):
                return False
    return True


def already(pod: Mapping[str, Any], want: Values) -> bool:
    """The pod's spec and its reported container resources already hold ``want``."""
    return (all(matches(_spec_resources(pod, c), w) for c, w in want.items())
            and all(matches(_status_resources(pod, c), w) for c, w in want.items()))


def _spec_resources(pod: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    for c in containers(pod):
        if c.get("name") == name:
            res = c.get("resources")
            return res if isinstance(res, Mapping) else {}
    return None


def _status_resources(pod: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if isinstance(cs, Mapping) and cs.get("name") == name:
            res = cs.get("resources")
            return res if isinstance(res, Mapping) else None
    return None


def resized(pod: Mapping[str, Any], want: Values) -> JSON:
    """The pod's spec with ``want`` applied (a None value removes the key)."""
    spec = copy.deepcopy(dict(pod.get("spec") or {}))
    for c in spec.get("containers") or []:
        w = want.get(str(c.get("name")))
        if not w:
            continue
        res = c.setdefault("resources", {})
        for section, vals in w.items():
            sec = res.setdefault(section, {})
            for r, v in vals.items():
                if v is None:
                    sec.pop(r, None)
                else:
                    sec[r] = v
            if not sec:
                res.pop(section)
    return spec


def restarts(pod: Mapping[str, Any], want: Values) -> bool:
    """True when the resize restarts a container: a changed resource whose resizePolicy
    says RestartContainer. Such a resize takes the pod out of service for a moment, so it
    counts against the workload's PodDisruptionBudget like an eviction does."""
    for c in containers(pod):
        w = want.get(str(c.get("name")))
        if not w:
            continue
        policy = {str(p.get("resourceName")): str(p.get("restartPolicy"))
                  for p in c.get("resizePolicy") or [] if isinstance(p, Mapping)}
        changed = {r for section, vals in w.items() for r, v in vals.items()
                   if not matches(c.get("resources") or {}, {section: {r: v}})}
        if any(policy.get(r) == "RestartContainer" for r in changed):
            return True
    return False


def refusal(pod: Mapping[str, Any], want: Values) -> str | None:
    """Why this pod cannot be resized to ``want`` (the API server would refuse it, or the
    kubelet could not do it without changing what the workload is), or None."""
    meta = pod.get("metadata") or {}
    name = f"pod {meta.get('namespace', '')}/{meta.get('name', '')}"
    names = {str(c.get("name")) for c in containers(pod)}
    for cname, secs in want.items():
        if cname not in names:
            return f"{name} has no container {cname!r}"
        extra = sorted({r for vals in secs.values() for r in vals} - set(RESIZABLE))
        if extra:
            return f"{name}: only cpu and memory can be resized in place, not {', '.join(extra)}"
    spec = pod.get("spec") or {}
    before, after = admission.qos_class(spec), admission.qos_class(resized(pod, want))
    if before != after:
        return (f"{name}: the resize would change its QoS class from {before} to {after}, "
                "which the API server refuses; only a restart can do that")
    if spec.get("restartPolicy") == "Never" and restarts(pod, want):
        return (f"{name} has restartPolicy Never and a RestartContainer resizePolicy: the "
                "API server refuses the resize")
    for cname in want:
        if _status_resources(pod, cname) is None:
            return (f"{name}: container {cname} reports no resources in its status yet (not "
                    "running, or a kubelet older than 1.33): it cannot be resized in place")
    return None


def progress(pod: Mapping[str, Any], want: Values) -> Progress:
    """How far the resize of ``pod`` to ``want`` got, from its conditions and statuses.
    Done is the container statuses reporting the values (a condition of an earlier resize
    may still be there: a resize back to the values the kubelet holds has nothing to do)."""
    if already(pod, want):
        return Progress(DONE)
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if not isinstance(cond, Mapping) or cond.get("status") != "True":
            continue
        kind, reason = cond.get("type"), str(cond.get("reason") or "")
        message = str(cond.get("message") or "")
        if kind == PENDING:
            return Progress(INFEASIBLE if reason == INFEASIBLE else DEFERRED, message)
        if kind == IN_PROGRESS:
            if reason == ERROR:
                return Progress(ERROR, message or "the kubelet could not apply the resize")
            if reason:  # a reason we do not know: the VPA treats it as an error too
                return Progress(ERROR, f"{reason}: {message}".rstrip(": "))
            return Progress(APPLYING, message)
    return Progress(APPLYING)


def patch(pod: Mapping[str, Any], start: Values, goal: Values) -> list[JSON]:
    """A JSON Patch for ``pods/{name}/resize`` moving ``start`` to ``goal``, with ``test``
    operations on every value it starts from (and the container's name at its index), so
    a pod changed since it was read is refused (422) instead of overwritten."""
    index = {str(c.get("name")): i for i, c in enumerate(containers(pod))}
    ops: list[JSON] = []
    for cname, secs in goal.items():
        i = index[cname]
        base = f"/spec/containers/{i}"
        ops.append({"op": "test", "path": f"{base}/name", "value": cname})
        res = containers(pod)[i].get("resources")
        if not isinstance(res, Mapping) or not res:
            ops.append({"op": "test", "path": base, "value": copy.deepcopy(
                dict(containers(pod)[i]))})
            ops.append({"op": "add", "path": f"{base}/resources",
                        "value": _present(secs)})
            continue
        for section, vals in secs.items():
            spath = f"{base}/resources/{section}"
            cur = res.get(section)
            if not isinstance(cur, Mapping):
                ops.append({"op": "test", "path": f"{base}/resources",
                            "value": copy.deepcopy(dict(res))})
                ops.append({"op": "add", "path": spath, "value": _present({section: vals})
                            .get(section, {})})
                continue
            for r, v in vals.items():
                was = ((start.get(cname) or {}).get(section) or {}).get(r)
                path = f"{spath}/{r}"
                if was is None:
                    ops.append({"op": "test", "path": spath, "value": copy.deepcopy(dict(cur))})
                else:
                    ops.append({"op": "test", "path": path, "value": cur.get(r)})
                if v is None:
                    if r in cur:
                        ops.append({"op": "remove", "path": path})
                else:
                    ops.append({"op": "add" if was is None else "replace", "path": path,
                                "value": v})
    return ops


def _present(secs: Mapping[str, Mapping[str, str | None]]) -> dict[str, dict[str, str]]:
    return {s: {r: v for r, v in vals.items() if v is not None}
            for s, vals in secs.items() if any(v is not None for v in vals.values())}


def budget_allows(pdbs: Sequence[Mapping[str, Any]], pods: Sequence[Mapping[str, Any]],
                  pod: Mapping[str, Any], restarting: int, expected: int,
                  restarts: bool = True) -> str | None:
    """None when resizing ``pod`` keeps every PodDisruptionBudget selecting it; else why
    not. A resize that ``restarts`` a container takes the pod out of service for a moment,
    so the budget must spare one pod; one that does not only needs the workload to be
    within its budget now (a workload already short of healthy pods is not touched).

    The disruption controller's arithmetic (healthy = Ready pods the budget selects,
    desired from minAvailable or maxUnavailable over ``expected`` pods), less the pods of
    ours already restarting (``restarting``) that the server may not have counted yet. An
    eviction the API server checks against the same budget sees the restart as one
    unhealthy pod, so a drain and a resize never take the workload below it together."""
    labels = (pod.get("metadata") or {}).get("labels") or {}
    for pdb in pdbs:
        spec = pdb.get("spec") or {}
        if not _selects(spec.get("selector"), labels):
            continue
        chosen = [p for p in pods if _selects(spec.get("selector"),
                                             (p.get("metadata") or {}).get("labels") or {})]
        healthy = sum(1 for p in chosen if ready(p)) - restarting
        desired = desired_healthy(spec, expected or len(chosen))
        if healthy - (1 if restarts else 0) < desired:
            return (f"PodDisruptionBudget {pdb['metadata'].get('name')} needs {desired} "
                    f"healthy pods and {healthy} are")
    return None


def _selects(selector: Any, labels: Mapping[str, Any]) -> bool:
    """As the eviction API does: a malformed selector is a budget that selects nothing."""
    try:
        return selectors.matches(selector, labels)
    except selectors.SelectorError:
        return False


def ready(pod: Mapping[str, Any]) -> bool:
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    for c in (pod.get("status") or {}).get("conditions") or []:
        if isinstance(c, Mapping) and c.get("type") == "Ready":
            return c.get("status") == "True"
    return False


def desired_healthy(spec: Mapping[str, Any], expected: int) -> int:
    """minAvailable (a count or a percentage, rounded up) or expected - maxUnavailable
    (a percentage rounded up), as the disruption controller computes it."""
    if spec.get("minAvailable") is not None:
        return _scaled(spec["minAvailable"], expected)
    if spec.get("maxUnavailable") is not None:
        return max(0, expected - _scaled(spec["maxUnavailable"], expected))
    return 0


def _scaled(value: Any, total: int) -> int:
    if isinstance(value, str) and value.endswith("%"):
        pct = int(value[:-1] or 0)
        return -(-pct * total // 100)
    return int(value)
