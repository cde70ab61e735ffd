"""The recommendation model: the custom-resource form that files, the stream and the store share.

Pure data. ``validation.parse`` is the only way in from untrusted documents; ``to_dict``
is the way out, producing exactly the shape ``kubectl get wrec -o yaml`` would print (and
that the CRD schemas in ``manifests/crds/`` describe: a test keeps the two in agreement).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from reconciler.domain import quantity

GROUP = "dakr.devzero.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
WORKLOAD = "WorkloadRecommendation"
NODE_GROUP = "NodeGroupRecommendation"
KINDS = (WORKLOAD, NODE_GROUP)

RIGHTSIZING = "Rightsizing"
REPLICA_SCALING = "ReplicaScaling"
LIVE_MIGRATION = "LiveMigration"
WORKLOAD_ACTIONS = (RIGHTSIZING, REPLICA_SCALING, LIVE_MIGRATION)
TARGET_KINDS = ("Deployment", "StatefulSet", "DaemonSet")
NODE_GROUP_ACTIONS = ("consolidate", "scale")

PENDING = "Pending"
APPROVED = "Approved"
APPLYING = "Applying"
APPLIED = "Applied"
REJECTED = "Rejected"
FAILED = "Failed"
ROLLED_BACK = "RolledBack"
SUPERSEDED = "Superseded"
PHASES = (PENDING, APPROVED, APPLYING, APPLIED, REJECTED, FAILED, ROLLED_BACK, SUPERSEDED)


@dataclass(frozen=True)
class Condition:
    type: str
    status: str  # True | False | Unknown
    reason: str = ""
    message: str = ""
    lastTransitionTime: str = ""
    observedGeneration: int = 0

    def to_dict(self) -> dict[str, Any]:
        # metav1.Condition requires reason, message and lastTransitionTime.
        out: dict[str, Any] = {"type": self.type, "status": self.status,
                               "reason": self.reason or "Unknown", "message": self.message,
                               "lastTransitionTime": self.lastTransitionTime}
        if self.observedGeneration:
            out["observedGeneration"] = self.observedGeneration
        return out


@dataclass(frozen=True)
class DecisionSummary:
    """What the status records of a policy decision (the full document goes to the audit log)."""

    allowed: bool
    mode: str
    reasons: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    decisionId: str = ""
    policyRevision: str = ""  # which policy set decided (engine.revision)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"allowed": self.allowed, "mode": self.mode,
                               "reasons": list(self.reasons), "warnings": list(self.warnings)}
        if self.decisionId:
            out["decisionId"] = self.decisionId
        if self.policyRevision:
            out["policyRevision"] = self.policyRevision
        return out


@dataclass(frozen=True)
class PullRequestRef:
    url: str = ""
    number: int = 0
    branch: str = ""
    commit: str = ""
    state: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v}


@dataclass(frozen=True)
class Status:
    phase: str = PENDING
    conditions: tuple[Condition, ...] = ()
    decision: DecisionSummary | None = None
    previous: dict[str, Any] = field(default_factory=dict)  # values before the change: rollback
    # A LiveMigration done in place: persist, fallback, template changed, and per pod the
    # values before its resize (``direct/live.py``); the admission webhook reads it.
    liveMigration: dict[str, Any] = field(default_factory=dict)
    pullRequest: PullRequestRef | None = None
    appliedAt: str = ""
    observedGeneration: int = 0
    projectedSavings: str = ""
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"phase": self.phase}
        if self.conditions:
            out["conditions"] = [c.to_dict() for c in self.conditions]
        if self.decision is not None:
            out["decision"] = self.decision.to_dict()
        if self.previous:
            out["previous"] = self.previous
        if self.liveMigration:
            out["liveMigration"] = self.liveMigration
        if self.pullRequest is not None:
            out["pullRequest"] = self.pullRequest.to_dict()
        for k in ("appliedAt", "projectedSavings", "message"):
            if getattr(self, k):
                out[k] = getattr(self, k)
        if self.observedGeneration:
            out["observedGeneration"] = self.observedGeneration
        return out

    def with_condition(self, cond: Condition) -> Status:
        """Set a condition by type, keeping lastTransitionTime when the status did not flip."""
        kept = [c for c in self.conditions if c.type != cond.type]
        old = next((c for c in self.conditions if c.type == cond.type), None)
        if old is not None and old.status == cond.status and old.lastTransitionTime:
            cond = replace(cond, lastTransitionTime=old.lastTransitionTime)
        return replace(self, conditions=(*kept, cond))


@dataclass(frozen=True)
class TargetRef:
    kind: str
    name: str
    apiVersion: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = {"kind": self.kind, "name": self.name}
        if self.apiVersion:
            out["apiVersion"] = self.apiVersion
        return out


@dataclass(frozen=True)
class ContainerResources:
    name: str
    requests: dict[str, quantity.Quantity] = field(default_factory=dict)
    limits: dict[str, quantity.Quantity] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        res: dict[str, Any] = {}
        if self.requests:
            res["requests"] = {k: str(v) for k, v in self.requests.items()}
        if self.limits:
            res["limits"] = {k: str(v) for k, v in self.limits.items()}
        return {"name": self.name, "resources": res}


@dataclass(frozen=True)
class HpaBounds:
    minReplicas: int | None = None
    maxReplicas: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in (("minReplicas", self.minReplicas),
                                  ("maxReplicas", self.maxReplicas)) if v is not None}


@dataclass(frozen=True)
class Savings:
    monthly: float
    currency: str = "USD"

    def to_dict(self) -> dict[str, Any]:
        return {"monthly": self.monthly, "currency": self.currency}

    def display(self) -> str:
        symbol = {"USD": "$", "EUR": "€", "GBP": "£"}.get(self.currency)
        sign = "-" if self.monthly < 0 else ""
        amount = f"{abs(self.monthly):,.2f}"
        if symbol:
            return f"{sign}{symbol}{amount}/month"
        return f"{sign}{amount} {self.currency}/month"


@dataclass(frozen=True)
class WorkloadRecommendation:
    recommendationId: str
    name: str
    namespace: str
    action: str
    targetRef: TargetRef
    containers: tuple[ContainerResources, ...] = ()
    replicas: int | None = None
    hpa: HpaBounds | None = None
    confidence: float | None = None
    projectedSavings: Savings | None = None
    source: str = ""
    autoApply: bool | None = None
    status: Status = field(default_factory=Status)
    kind: str = WORKLOAD

    @property
    def id(self) -> str:
        return self.recommendationId

    @property
    def target_key(self) -> tuple[str, str, str]:
        """(namespace, kind, name): two recommendations with the same key compete."""
        return (self.namespace, self.targetRef.kind, self.targetRef.name)

    @property
    def target_label(self) -> str:
        return f"{self.targetRef.kind}/{self.targetRef.name}"

    def spec_dict(self) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "recommendationId": self.recommendationId,
            "action": self.action,
            "targetRef": self.targetRef.to_dict(),
        }
        if self.containers:
            spec["containers"] = [c.to_dict() for c in self.containers]
        if self.replicas is not None:
            spec["replicas"] = self.replicas
        if self.hpa is not None:
            spec["hpa"] = self.hpa.to_dict()
        if self.confidence is not None:
            spec["confidence"] = self.confidence
        if self.projectedSavings is not None:
            spec["projectedSavings"] = self.projectedSavings.to_dict()
        if self.source:
            spec["source"] = self.source
        if self.autoApply is not None:
            spec["autoApply"] = self.autoApply
        return spec

    def to_dict(self) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION,
            "kind": self.kind,
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": self.spec_dict(),
            "status": self.status.to_dict(),
        }


@dataclass(frozen=True)
class NodeGroupRecommendation:
    recommendationId: str
    name: str
    nodeGroup: str
    action: str
    targetNodeCount: int
    currentNodeCount: int | None = None
    nodesToRemove: tuple[str, ...] = ()
    priority: int | None = None
    projectedSavings: Savings | None = None
    source: str = ""
    status: Status = field(default_factory=Status)
    kind: str = NODE_GROUP
    namespace: str = ""  # cluster-scoped

    @property
    def id(self) -> str:
        return self.recommendationId

    @property
    def target_key(self) -> tuple[str, str, str]:
        return ("", "NodeGroup", self.nodeGroup)

    @property
    def target_label(self) -> str:
        return f"NodeGroup/{self.nodeGroup}"

    def spec_dict(self) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "recommendationId": self.recommendationId,
            "nodeGroup": self.nodeGroup,
            "action": self.action,
            "targetNodeCount": self.targetNodeCount,
        }
        if self.currentNodeCount is not None:
            spec["currentNodeCount"] = self.currentNodeCount
        if self.nodesToRemove:
            spec["nodesToRemove"] = list(self.nodesToRemove)
        if self.priority is not None:
            spec["priority"] = self.priority
        if self.projectedSavings is not None:
            spec["projectedSavings"] = self.projectedSavings.to_dict()
        if self.source:
            spec["source"] = self.source
        return spec

    def to_dict(self) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION,
            "kind": self.kind,
            "metadata": {"name": self.name},
            "spec": self.spec_dict(),
            "status": self.status.to_dict(),
        }


Recommendation = WorkloadRecommendation | NodeGroupRecommendation


def target_key_of(kind: str, namespace: str, spec: dict[str, Any]) -> tuple[str, str, str]:
    """The target key of a stored spec, without validating it again."""
    if kind == NODE_GROUP:
        return ("", "NodeGroup", str(spec.get("nodeGroup", "")))
    tref = spec.get("targetRef") or {}
    return (namespace, str(tref.get("kind", "")), str(tref.get("name", "")))
