"""Live cluster facts for the policy input (``input.cluster``): HPA, PDBs, node facts.

Policy can only refuse what it can see: without the HPA an HPA-owned workload gets a
``replicas`` change, without the node facts every consolidation is refused. This module reads
those facts from the cluster for a batch of recommendations, in bounded requests whatever the
batch size: one HPA LIST and one PDB LIST per namespace, one GET per node and one pod LIST per
node (the ``Kube`` adapter caches them; a failed read is remembered for the rest of the call so
that a broken namespace costs one bounded, retried read, not one per recommendation).

Each recommendation gets either the facts or the error that prevented reading them. There is
no partial answer: a policy that sees ``hpa: null`` because the HPA LIST was forbidden would
allow what it must refuse, so the caller fails closed on an error (does not decide that
recommendation this time).

The facts, per recommendation kind (``policies/README.md``):

- WorkloadRecommendation: ``hpa`` (the HorizontalPodAutoscaler whose scaleTargetRef is the
  workload, or None) and ``pdbs`` (the namespace's PDBs whose selector matches the target's
  pod template labels; none when the target is unknown);
- NodeGroupRecommendation: ``nodes``, one entry per existing node of ``nodesToRemove``:
  ``{name, labels, pods: [{namespace, name, annotations, pdbDisruptionsAllowed?, daemonSet?,
  mirror?}]}``. A node that does not exist is left out, so the policy refuses it
  (NodeFactsMissing) rather than approving a drain nobody checked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from reconciler.adapters import kube
from reconciler.domain import errors, model, selectors

log = logging.getLogger(__name__)

JSON = dict[str, Any]
T = TypeVar("T")

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
FINISHED_PHASES = ("Succeeded", "Failed")  # a drain does not disrupt these


@dataclass(frozen=True)
class Facts:
    """What was learnt about one recommendation: ``cluster`` facts, or the ``error``."""

    cluster: dict[str, Any] = field(default_factory=dict)
    error: errors.ReconcilerError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class _Reads:
    """Reads through the adapter, remembering failures for the duration of one collect().

    The adapter caches what it read; it does not cache failures (a later call should try
    again), so without this a forbidden namespace would be LISTed, with retries, once per
    recommendation in it.
    """

    def __init__(self, api: kube.Kube) -> None:
        self.api = api
        self._failed: dict[tuple[str, str], errors.ReconcilerError] = {}

    def read(self, key: tuple[str, str], fn: Callable[[], T]) -> T:
        err = self._failed.get(key)
        if err is not None:
            raise err
        try:
            return fn()
        except errors.ReconcilerError as e:
            self._failed[key] = e
            raise

    def hpa_for(self, kind: str, namespace: str, name: str) -> JSON | None:
        return self.read(("hpas", namespace), lambda: self.api.hpa_for(kind, namespace, name))

    def pdbs(self, namespace: str) -> list[JSON]:
        return self.read(("pdbs", namespace), lambda: self.api.pdbs(namespace))

    def node(self, name: str) -> JSON | None:
        return self.read(("node", name), lambda: self.api.node(name))

    def pods_on_node(self, name: str) -> list[JSON]:
        return self.read(("pods", name), lambda: self.api.pods_on_node(name))


def collect(api: kube.Kube, recs: Sequence[model.Recommendation],
            targets: Mapping[str, JSON | None], *, nodes: bool = True) -> dict[str, Facts]:
    """The cluster facts of each recommendation, keyed by recommendation id.

    ``targets`` maps a recommendation id to its target (live object or repo manifest), whose
    pod template labels decide which PDBs cover the workload. A read that fails (403, a 5xx
    that outlasts the retries, ...) yields ``Facts(error=...)`` for the recommendations that
    needed it and does not stop the others. ``nodes=False`` reads no node or pod: a node
    group recommendation then gets no node facts, which the policy refuses.
    """
    reads = _Reads(api)
    out: dict[str, Facts] = {}
    for rec in recs:
        try:
            if isinstance(rec, model.WorkloadRecommendation):
                cluster = _workload_facts(reads, rec, targets.get(rec.id))
            elif nodes:
                cluster = _node_group_facts(reads, rec)
            else:
                cluster = {}
        except errors.ReconcilerError as e:
            out[rec.id] = Facts(error=_unreadable(rec, e))
            continue
        out[rec.id] = Facts(cluster=cluster)
    return out


def cluster_map(facts: Mapping[str, Facts]) -> dict[str, dict[str, Any]]:
    """The ``cluster`` argument of ``decide.decide``: facts of the recommendations that have
    them (the others must not be decided)."""
    return {rid: f.cluster for rid, f in facts.items() if f.ok}


def failures(facts: Mapping[str, Facts]) -> dict[str, errors.ReconcilerError]:
    """The recommendations whose facts could not be read, with the reason."""
    return {rid: f.error for rid, f in facts.items() if f.error is not None}


def _unreadable(rec: model.Recommendation, e: errors.ReconcilerError) -> errors.ReconcilerError:
    """The error for one recommendation, naming it and the read that failed, and keeping
    whether trying again later may help (a 5xx) or not (a 403 until RBAC is fixed)."""
    msg = f"cannot read the cluster facts for {rec.target_label}: {e}"
    err: errors.ReconcilerError = (errors.TemporaryError(msg)
                                   if isinstance(e, errors.TemporaryError)
                                   else errors.PermanentError(msg))
    err.__cause__ = e
    return err


# --------------------------------------------------------------------------- workloads


def _workload_facts(reads: _Reads, rec: model.WorkloadRecommendation,
                    target: Mapping[str, Any] | None) -> dict[str, Any]:
    kind, ns, name = rec.targetRef.kind, rec.namespace, rec.targetRef.name
    hpa = reads.hpa_for(kind, ns, name)
    pdbs: list[JSON] = []
    if target is not None:
        template = ((target.get("spec") or {}).get("template") or {})
        pod_labels = _labels(template)
        pdbs = [_slim(p) for p in reads.pdbs(ns) if _selects(p, pod_labels)]
    return {"hpa": _slim(hpa) if hpa is not None else None, "pdbs": pdbs}


# --------------------------------------------------------------------------- node groups


def _node_group_facts(reads: _Reads, rec: model.NodeGroupRecommendation) -> dict[str, Any]:
    nodes: list[JSON] = []
    seen: set[str] = set()
    for name in rec.nodesToRemove:
        if name in seen:
            continue
        seen.add(name)
        node = reads.node(name)
        if node is None:
            continue  # no facts: the policy refuses the node (NodeFactsMissing)
        pods = [_pod_facts(reads, p) for p in reads.pods_on_node(name)
                if (p.get("status") or {}).get("phase") not in FINISHED_PHASES]
        pods.sort(key=lambda p: (p["namespace"], p["name"]))
        nodes.append({"name": name, "labels": _labels(node), "pods": pods})
    return {"nodes": nodes}


def _pod_facts(reads: _Reads, pod: Mapping[str, Any]) -> JSON:
    meta = pod.get("metadata") or {}
    ns = str(meta.get("namespace") or "default")
    out: JSON = {"namespace": ns, "name": str(meta.get("name", "")),
                 "annotations": dict(meta.get("annotations") or {})}
    labels = _labels(pod)
    allowed = [_disruptions_allowed(p) for p in reads.pdbs(ns) if _selects(p, labels)]
    if allowed:
        out["pdbDisruptionsAllowed"] = min(allowed)
    controller = next((o for o in meta.get("ownerReferences") or []
                       if o.get("controller") is True), None)
    if controller is not None and controller.get("kind") == "DaemonSet":
        out["daemonSet"] = True
    if MIRROR_ANNOTATION in out["annotations"]:
        out["mirror"] = True
    return out


def _disruptions_allowed(pdb: Mapping[str, Any]) -> int:
    """What an eviction would be allowed now under this budget.

    The eviction API refuses outright while the disruption controller has not observed the
    budget's current generation, and a missing or negative count allows nothing; reporting
    the stored number then would approve a drain the API is about to refuse.
    """
    status = pdb.get("status") or {}
    generation = (pdb.get("metadata") or {}).get("generation") or 0
    observed = status.get("observedGeneration") or 0
    allowed = status.get("disruptionsAllowed")
    if not isinstance(allowed, int) or isinstance(allowed, bool) or observed < generation:
        return 0
    return max(0, allowed)


# --------------------------------------------------------------------------- helpers


def _selects(pdb: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Whether a PDB selects pods with these labels. A selector the API would reject is
    skipped, as the disruption controller and the eviction API skip it (the server validates
    PDB selectors, so this only happens with a hand-made object)."""
    selector = (pdb.get("spec") or {}).get("selector")
    try:
        return selectors.matches(selector, labels)
    except selectors.SelectorError as e:
        log.warning("ignoring PodDisruptionBudget %s/%s: %s",
                    (pdb.get("metadata") or {}).get("namespace"),
                    (pdb.get("metadata") or {}).get("name"), e)
        return False


def _labels(obj: Mapping[str, Any]) -> dict[str, str]:
    """An object's labels as strings (a manifest may hold YAML numbers or booleans)."""
    raw = (obj.get("metadata") or {}).get("labels") or {}
    out: dict[str, str] = {}
    for k, v in raw.items():
        if v is None:
            continue
        out[str(k)] = ("true" if v else "false") if isinstance(v, bool) else str(v)
    return out


def _slim(obj: Mapping[str, Any]) -> JSON:
    """The object without managedFields: bookkeeping no rule reads, and every byte of input
    is converted into OPA values on each decision."""
    out = dict(obj)
    meta = dict(out.get("metadata") or {})
    meta.pop("managedFields", None)
    out["metadata"] = meta
    return out
