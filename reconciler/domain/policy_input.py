"""Builds the policy input document (the contract is in ``policies/README.md``).

Pure. Quantities are normalized here (CPU in cores, memory in bytes) so that Rego compares
numbers and never parses ``250m`` itself; the wall clock comes in as ``now`` so that a
policy's answer depends only on its input.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.domain import model, planner, quantity

_BYTES = ("memory", "ephemeral-storage")


def _number(resource: str, raw: str | quantity.Quantity) -> float | int | None:
    try:
        q = raw if isinstance(raw, quantity.Quantity) else quantity.parse(raw)
    except quantity.QuantityError:
        return None
    return q.bytes if resource in _BYTES else q.cores


def _numbers(values: Mapping[str, Any]) -> dict[str, float | int]:
    out: dict[str, float | int] = {}
    for k, v in values.items():
        n = _number(k, v)
        if n is not None:
            out[k] = n
    return out


def gitops_tool(target: Mapping[str, Any] | None) -> str | None:
    """Which GitOps controller owns the target, from its tracking labels and annotations."""
    if not target:
        return None
    meta = target.get("metadata") or {}
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    if "argocd.argoproj.io/tracking-id" in annotations or "argocd.argoproj.io/instance" in labels:
        return "argocd"
    if "kustomize.toolkit.fluxcd.io/name" in labels or "helm.toolkit.fluxcd.io/name" in labels:
        return "flux"
    if "app.kubernetes.io/instance" in labels and "argocd" in str(annotations):
        return "argocd"
    return None


def normalized(rec: model.Recommendation, target: Mapping[str, Any] | None) -> dict[str, Any]:
    if not isinstance(rec, model.WorkloadRecommendation):
        return {}
    current = planner.current_resources(target) if target else {}
    containers: dict[str, Any] = {}
    for c in rec.containers:
        cur = current.get(c.name, {"requests": {}, "limits": {}})
        proposed_req = {**cur["requests"], **{k: str(v) for k, v in c.requests.items()}}
        proposed_lim = {**cur["limits"], **{k: str(v) for k, v in c.limits.items()}}
        containers[c.name] = {
            "found": c.name in current,
            "current": {"requests": _numbers(cur["requests"]), "limits": _numbers(cur["limits"])},
            "proposed": {"requests": _numbers(proposed_req), "limits": _numbers(proposed_lim)},
        }
    out: dict[str, Any] = {"containers": containers}
    if rec.replicas is not None:
        cur_r = ((target or {}).get("spec") or {}).get("replicas")
        out["replicas"] = {"current": cur_r if isinstance(cur_r, int) else 1,
                           "proposed": rec.replicas}
    return out


# The cluster-autoscaler's Cluster API provider reads a node group's bounds from these
# annotations on the MachineDeployment (or MachineSet / MachinePool).
MIN_SIZE_ANNOTATION = "cluster.x-k8s.io/cluster-api-autoscaler-node-group-min-size"
MAX_SIZE_ANNOTATION = "cluster.x-k8s.io/cluster-api-autoscaler-node-group-max-size"


def _count(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def node_group(rec: model.NodeGroupRecommendation,
               target: Mapping[str, Any] | None) -> dict[str, Any]:
    """``cluster.nodeGroup`` from the node group's object (a Cluster API MachineDeployment
    in the repository, or the layout's replica count): ``currentSize`` is its replicas (the
    recommendation's currentNodeCount when the object has none), ``minSize`` / ``maxSize``
    the autoscaler's bounds when annotated. A key is left out when unknown, so that the
    policy's minimum-size rule only fires on a known minimum."""
    out: dict[str, Any] = {"name": rec.nodeGroup}
    meta = (target or {}).get("metadata") or {}
    annotations = meta.get("annotations") or {}
    current = _count(((target or {}).get("spec") or {}).get("replicas"))
    if current is None:
        current = rec.currentNodeCount
    if current is not None:
        out["currentSize"] = current
    for key, annotation in (("minSize", MIN_SIZE_ANNOTATION), ("maxSize", MAX_SIZE_ANNOTATION)):
        n = _count(annotations.get(annotation)) if isinstance(annotations, Mapping) else None
        if n is not None:
            out[key] = n
    return out


@dataclass(frozen=True)
class Operator:
    """What the input says of the operator itself and the cluster it was told about: the
    same for every decision of a process (``cluster.operatorNamespace``, ``operatorMode``,
    ``checkpointRestore``), taken from its settings at the entry point."""

    namespace: str = "dakr-operator"
    mode: str = "gitops"  # where a change goes that the configuration does not route
    checkpoint_restore: bool = False  # the cluster declares its runtimes restore checkpoints


def build(rec: model.Recommendation, target: Mapping[str, Any] | None, *, now: str,
          cluster: Mapping[str, Any] | None = None,
          history: Mapping[str, Any] | None = None,
          operator: Operator = Operator()) -> dict[str, Any]:
    cl: dict[str, Any] = {"operatorNamespace": operator.namespace,
                          "operatorMode": operator.mode, "hpa": None, "pdbs": [],
                          "gitops": {"tool": gitops_tool(target)}, "nodes": [],
                          "nodeGroup": None, "checkpointRestore": operator.checkpoint_restore}
    if isinstance(rec, model.NodeGroupRecommendation):
        cl["nodeGroup"] = node_group(rec, target)
    if cluster:
        cl.update(cluster)
    return {
        "recommendation": rec.to_dict(),
        "target": dict(target) if target is not None else None,
        "normalized": normalized(rec, target),
        "cluster": cl,
        "history": dict(history) if history else {"lastApplied": None},
        "now": now,
    }
