"""Validation of untrusted recommendation documents (``reconciler.core.validation``).

Cases covered:
- the two DESIGN.md samples (a WorkloadRecommendation and a NodeGroupRecommendation) parse;
- one big table of single-field mutations of those samples, each asserting the exact field
  path of the error and a keyword of its reason: negative and zero quantities, requests
  above limits, absurd values (more than 1024 CPUs, more than 16Ti), unparseable quantities,
  unknown resources, unknown kind (top level and ``targetRef.kind``), wrong apiVersion,
  unknown action, names that are not DNS-1123 (uppercase, underscore, too long, empty,
  leading/trailing dash, dots in a label, injection such as ``a\\nb: c`` and
  ``x"; rm -rf``), missing targetRef / recommendationId / spec, missing or empty containers
  for Rightsizing and LiveMigration, duplicate container names, replicas below 0 or above
  the cap, hpa min above max, non-UTF-8 (lone surrogates) and control characters, YAML/JSON
  injection strings with newlines in ``source``, over-long strings, wrong types (string or
  bool replicas, confidence 1.5, non-boolean autoApply), unknown spec / container fields,
  ReplicaScaling without replicas and hpa or with both, bad savings, unknown status phase,
  namespace on the cluster-scoped kind, consolidate not lowering the count, nodesToRemove
  longer than the drop or with duplicates;
- valid variants (boundaries included) parse;
- several errors in one document are all reported, with ``field: reason`` in the message;
  hostile strings are reported all at once and stop deeper checks;
- a non-object document is refused with the ``(document)`` field;
- ``parse_many``: a bad item in the middle is refused alone, indexes and raw ids right;
  duplicate ids in a batch refuse the later item (the key is kind + id);
- ``raw_id`` drops ids with control characters;
- ``metadata.name`` is derived from the id when absent, kept when given; namespace
  defaults to ``default``;
- round trip: ``parse(rec.to_dict())`` equals ``rec`` (and their ``to_dict()`` match);
- ``targetRef: {}``, ``containers: [{}]`` and ``resources: {}`` are refused.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from reconciler.domain import errors, model, validation

Doc = dict[str, Any]
Mutation = Callable[[Doc], None]

# DESIGN.md "The recommendation format", verbatim in structure and values.
WORKLOAD: Doc = {
    "apiVersion": "dakr.devzero.io/v1alpha1",
    "kind": "WorkloadRecommendation",
    "metadata": {"namespace": "default"},
    "spec": {
        "recommendationId": "rec-0001",
        "action": "Rightsizing",
        "targetRef": {"kind": "Deployment", "name": "cartservice"},
        "containers": [
            {
                "name": "server",
                "resources": {
                    "requests": {"cpu": "100m", "memory": "64Mi"},
                    "limits": {"cpu": "200m", "memory": "128Mi"},
                },
            }
        ],
        "replicas": 3,
        "hpa": {"minReplicas": 2, "maxReplicas": 6},
        "confidence": 0.9,
        "projectedSavings": {"monthly": 42.30, "currency": "USD"},
        "autoApply": True,
    },
    "status": {"phase": "Pending", "projectedSavings": "$42.30/month"},
}

NODE_GROUP: Doc = {
    "apiVersion": "dakr.devzero.io/v1alpha1",
    "kind": "NodeGroupRecommendation",
    "spec": {
        "recommendationId": "ng-0001",
        "nodeGroup": "default-pool",
        "action": "consolidate",
        "currentNodeCount": 5,
        "targetNodeCount": 3,
        "nodesToRemove": ["node-a", "node-b"],
    },
}

_DROP = object()


def _set(path: str, value: object) -> Mutation:
    """A mutation: ``path`` is dotted with ``[i]`` indexes; ``_DROP`` deletes the key."""

    def apply(doc: Doc) -> None:
        parts: list[str | int] = []
        for part in path.split("."):
            while "[" in part:
                head, rest = part.split("[", 1)
                if head:
                    parts.append(head)
                idx, part = rest.split("]", 1)
                parts.append(int(idx))
            if part:
                parts.append(part)
        node: Any = doc
        for p in parts[:-1]:
            node = node[p]
        if value is _DROP:
            del node[parts[-1]]
        else:
            node[parts[-1]] = value

    return apply


def _all(*mutations: Mutation) -> Mutation:
    def apply(doc: Doc) -> None:
        for m in mutations:
            m(doc)

    return apply


def _mutated(base: Doc, mutation: Mutation) -> Doc:
    doc = copy.deepcopy(base)
    mutation(doc)
    return doc


def _errors_of(doc: object) -> list[errors.FieldError]:
    with pytest.raises(errors.ValidationError) as exc:
        validation.parse(doc)
    assert exc.value.errors, "a ValidationError must name at least one field"
    for e in exc.value.errors:
        assert isinstance(e, errors.FieldError)
    return exc.value.errors


W, N = WORKLOAD, NODE_GROUP
C0 = "spec.containers[0]"
REQ = f"{C0}.resources.requests"
LIM = f"{C0}.resources.limits"

BAD_CASES = [
    # --- quantities
    pytest.param(W, _set(f"{REQ}.cpu", "-100m"), f"{REQ}.cpu", "greater than zero", id="neg-cpu"),
    pytest.param(W, _set(f"{REQ}.cpu", "0"), f"{REQ}.cpu", "greater than zero", id="zero-cpu"),
    pytest.param(W, _set(f"{LIM}.memory", "0Mi"), f"{LIM}.memory", "greater than zero",
                 id="zero-memory-limit"),
    pytest.param(W, _set(f"{REQ}.memory", -1), f"{REQ}.memory", "greater than zero",
                 id="neg-memory-yaml-int"),
    pytest.param(W, _set(f"{REQ}.cpu", "300m"), f"{REQ}.cpu", "less than or equal",
                 id="cpu-request-above-limit"),
    pytest.param(W, _set(f"{REQ}.memory", "0.25Gi"), f"{REQ}.memory", "less than or equal",
                 id="memory-request-above-limit-other-form"),
    pytest.param(W, _set(f"{LIM}.cpu", "1025"), f"{LIM}.cpu", "1024 CPUs", id="cpu-absurd"),
    pytest.param(W, _set(f"{LIM}.cpu", "2k"), f"{LIM}.cpu", "1024 CPUs", id="cpu-absurd-k"),
    pytest.param(W, _set(f"{LIM}.memory", "17Ti"), f"{LIM}.memory", "16Ti",
                 id="memory-absurd"),
    pytest.param(W, _set(f"{LIM}.memory", "1Pi"), f"{LIM}.memory", "16Ti",
                 id="memory-absurd-pi"),
    pytest.param(W, _set(f"{REQ}.cpu", "abc"), f"{REQ}.cpu", "not a quantity",
                 id="cpu-garbage"),
    pytest.param(W, _set(f"{REQ}.cpu", "1e999"), f"{REQ}.cpu", "exponent",
                 id="cpu-huge-exponent"),
    pytest.param(W, _set(f"{REQ}.cpu", True), f"{REQ}.cpu", "quantity string",
                 id="cpu-bool"),
    pytest.param(W, _set(f"{REQ}.cpu", None), f"{REQ}.cpu", "quantity string",
                 id="cpu-null"),
    pytest.param(W, _set(f"{REQ}.cpu", float("nan")), f"{REQ}.cpu", "finite", id="cpu-nan"),
    pytest.param(W, _set(f"{REQ}.gpu", "1"), f"{REQ}.gpu", "unknown resource",
                 id="unknown-resource"),
    pytest.param(W, _set(f"{C0}.resources.requests", ["cpu"]), f"{C0}.resources.requests",
                 "must be an object", id="requests-not-object"),
    # --- kinds, versions, actions
    pytest.param(W, _set("kind", "Recommendation"), "kind", "unknown kind", id="kind-unknown"),
    pytest.param(W, _set("kind", _DROP), "kind", "unknown kind", id="kind-missing"),
    pytest.param(W, _set("apiVersion", "dakr.devzero.io/v1"), "apiVersion", "must be",
                 id="api-version"),
    pytest.param(W, _set("spec.targetRef.kind", "CronJob"), "spec.targetRef.kind",
                 "unknown kind", id="target-kind-unknown"),
    pytest.param(W, _set("spec.targetRef.kind", "deployment"), "spec.targetRef.kind",
                 "unknown kind", id="target-kind-lowercase"),
    pytest.param(W, _set("spec.targetRef.kind", _DROP), "spec.targetRef.kind", "unknown kind",
                 id="target-kind-missing"),
    pytest.param(W, _set("spec.targetRef.apiVersion", "apps/v1beta1"),
                 "spec.targetRef.apiVersion", "apps/v1", id="target-api-version"),
    pytest.param(W, _set("spec.action", "Delete"), "spec.action", "unknown action",
                 id="action-unknown"),
    pytest.param(W, _set("spec.action", "consolidate"), "spec.action", "unknown action",
                 id="action-of-other-kind"),
    pytest.param(W, _set("spec.action", _DROP), "spec.action", "unknown action",
                 id="action-missing"),
    # --- names
    pytest.param(W, _set("spec.targetRef.name", "CartService"), "spec.targetRef.name",
                 "DNS-1123", id="name-uppercase"),
    pytest.param(W, _set(f"{C0}.name", "my_server"), f"{C0}.name", "DNS-1123 label",
                 id="container-underscore"),
    pytest.param(W, _set(f"{C0}.name", "a" * 64), f"{C0}.name", "no more than 63",
                 id="container-too-long"),
    pytest.param(W, _set("spec.targetRef.name", "a" * 254), "spec.targetRef.name",
                 "no more than 253", id="target-too-long"),
    pytest.param(W, _set(f"{C0}.name", ""), f"{C0}.name", "must not be empty",
                 id="container-empty"),
    pytest.param(W, _set("spec.targetRef.name", ""), "spec.targetRef.name",
                 "must not be empty", id="target-empty"),
    pytest.param(W, _set(f"{C0}.name", "-server"), f"{C0}.name", "DNS-1123",
                 id="leading-dash"),
    pytest.param(W, _set(f"{C0}.name", "server-"), f"{C0}.name", "DNS-1123",
                 id="trailing-dash"),
    pytest.param(W, _set(f"{C0}.name", "web.server"), f"{C0}.name", "DNS-1123 label",
                 id="dot-in-label"),
    pytest.param(W, _set("spec.targetRef.name", "a\nb: c"), "spec.targetRef.name",
                 "control characters", id="name-yaml-injection"),
    pytest.param(W, _set("spec.targetRef.name", 'x"; rm -rf'), "spec.targetRef.name",
                 "DNS-1123", id="name-shell-injection"),
    pytest.param(W, _set("spec.targetRef.name", "../../etc"), "spec.targetRef.name",
                 "DNS-1123", id="name-path-traversal"),
    pytest.param(W, _set("spec.targetRef.name", 7), "spec.targetRef.name",
                 "must be a string", id="name-int"),
    pytest.param(W, _set("spec.targetRef.name", _DROP), "spec.targetRef.name", "required",
                 id="name-missing"),
    pytest.param(W, _set("metadata.namespace", "Kube_System"), "metadata.namespace",
                 "DNS-1123 label", id="namespace-invalid"),
    pytest.param(W, _set("metadata.namespace", "a.b"), "metadata.namespace",
                 "DNS-1123 label", id="namespace-dotted"),
    pytest.param(W, _set("metadata.name", "Rec_1"), "metadata.name", "DNS-1123 subdomain",
                 id="metadata-name-invalid"),
    pytest.param(W, _set("spec.recommendationId", "rec 0001"), "spec.recommendationId",
                 "DNS-1123", id="id-space"),
    pytest.param(W, _set("spec.recommendationId", _DROP), "spec.recommendationId", "required",
                 id="id-missing"),
    pytest.param(W, _set("spec.recommendationId", 1), "spec.recommendationId",
                 "must be a string", id="id-int"),
    # --- structure
    pytest.param(W, _set("spec", _DROP), "spec", "is required", id="spec-missing"),
    pytest.param(W, _set("spec", "x"), "spec", "must be an object", id="spec-string"),
    pytest.param(W, _set("metadata", ["x"]), "metadata", "must be an object",
                 id="metadata-list"),
    pytest.param(W, _set("spec.targetRef", _DROP), "spec.targetRef", "is required",
                 id="target-ref-missing"),
    pytest.param(W, _set("spec.targetRef", "deployment/cartservice"), "spec.targetRef",
                 "must be an object", id="target-ref-string"),
    pytest.param(W, _set("spec.targetRef.namespace", "other"), "spec.targetRef.namespace",
                 "unknown field", id="target-ref-unknown-field"),
    pytest.param(W, _set("spec.containers", _DROP), "spec.containers", "required",
                 id="containers-missing-rightsizing"),
    pytest.param(W, _all(_set("spec.action", "LiveMigration"), _set("spec.containers", _DROP)),
                 "spec.containers", "required", id="containers-missing-live-migration"),
    pytest.param(W, _set("spec.containers", []), "spec.containers", "at least one",
                 id="containers-empty"),
    pytest.param(W, _set("spec.containers", {"name": "server"}), "spec.containers",
                 "must be an array", id="containers-object"),
    pytest.param(W, _set("spec.containers[0]", None), C0, "is required",
                 id="container-null"),
    pytest.param(
        W,
        lambda d: d["spec"]["containers"].append(copy.deepcopy(d["spec"]["containers"][0])),
        "spec.containers[1].name", "duplicate", id="containers-duplicate-name",
    ),
    pytest.param(W, _set(f"{C0}.resources", _DROP), f"{C0}.resources", "is required",
                 id="container-resources-missing"),
    pytest.param(W, _set(f"{C0}.image", "nginx"), f"{C0}.image", "unknown field",
                 id="container-unknown-field"),
    pytest.param(W, _set(f"{C0}.resources.claims", []), f"{C0}.resources.claims",
                 "unknown field", id="resources-unknown-field"),
    pytest.param(W, _set("spec.dryRun", True), "spec.dryRun", "unknown field",
                 id="spec-unknown-field"),
    pytest.param(W, _set("spec.namespace", "prod"), "spec.namespace", "unknown field",
                 id="spec-namespace-field"),
    # --- replicas and hpa
    pytest.param(W, _set("spec.replicas", -1), "spec.replicas", "greater than or equal to 0",
                 id="replicas-negative"),
    pytest.param(W, _set("spec.replicas", 10_001), "spec.replicas", "at most",
                 id="replicas-absurd"),
    pytest.param(W, _set("spec.replicas", "3"), "spec.replicas", "integer, got string",
                 id="replicas-string"),
    pytest.param(W, _set("spec.replicas", True), "spec.replicas", "integer, got boolean",
                 id="replicas-bool"),
    pytest.param(W, _set("spec.replicas", 3.0), "spec.replicas", "integer, got number",
                 id="replicas-float"),
    pytest.param(W, _set("spec.hpa.minReplicas", 7), "spec.hpa.minReplicas",
                 "greater than maxReplicas", id="hpa-min-above-max"),
    pytest.param(W, _set("spec.hpa.minReplicas", 0), "spec.hpa.minReplicas",
                 "greater than or equal to 1", id="hpa-min-zero"),
    pytest.param(W, _set("spec.hpa", {}), "spec.hpa", "minReplicas or maxReplicas",
                 id="hpa-empty"),
    pytest.param(W, _set("spec.hpa", 3), "spec.hpa", "must be an object", id="hpa-int"),
    pytest.param(W, _set("spec.hpa.targetCPU", 80), "spec.hpa.targetCPU", "unknown field",
                 id="hpa-unknown-field"),
    pytest.param(
        W,
        _all(_set("spec.action", "ReplicaScaling"), _set("spec.replicas", _DROP),
             _set("spec.hpa", _DROP)),
        "spec.replicas", "needs replicas or hpa", id="replica-scaling-without-target",
    ),
    pytest.param(W, _set("spec.action", "ReplicaScaling"), "spec.hpa", "not both",
                 id="replica-scaling-with-both"),
    # --- other scalar fields
    pytest.param(W, _set("spec.confidence", 1.5), "spec.confidence", "between 0 and 1",
                 id="confidence-above-1"),
    pytest.param(W, _set("spec.confidence", -0.1), "spec.confidence", "between 0 and 1",
                 id="confidence-negative"),
    pytest.param(W, _set("spec.confidence", "0.9"), "spec.confidence", "between 0 and 1",
                 id="confidence-string"),
    pytest.param(W, _set("spec.confidence", True), "spec.confidence", "between 0 and 1",
                 id="confidence-bool"),
    pytest.param(W, _set("spec.confidence", float("nan")), "spec.confidence",
                 "between 0 and 1", id="confidence-nan"),
    pytest.param(W, _set("spec.autoApply", "yes"), "spec.autoApply", "must be a boolean",
                 id="auto-apply-string"),
    pytest.param(W, _set("spec.projectedSavings.monthly", "42"), "spec.projectedSavings.monthly",
                 "must be a number", id="savings-string"),
    pytest.param(W, _set("spec.projectedSavings.monthly", float("inf")),
                 "spec.projectedSavings.monthly", "finite", id="savings-inf"),
    pytest.param(W, _set("spec.projectedSavings.currency", "dollars"),
                 "spec.projectedSavings.currency", "ISO 4217", id="savings-currency"),
    pytest.param(W, _set("spec.projectedSavings.rate", 1), "spec.projectedSavings.rate",
                 "unknown field", id="savings-unknown-field"),
    pytest.param(W, _set("status.phase", "Done"), "status.phase", "unknown phase",
                 id="status-phase"),
    # --- hostile strings
    pytest.param(W, _set("spec.source", "\udcff"), "spec.source", "UTF-8",
                 id="source-lone-surrogate"),
    pytest.param(W, _set("spec.source", "vpa\ud800"), "spec.source", "UTF-8",
                 id="source-high-surrogate"),
    pytest.param(W, _set(f"{C0}.name", "\udcff"), f"{C0}.name", "UTF-8",
                 id="container-name-surrogate"),
    pytest.param(W, _set("spec.source", "krr\x00"), "spec.source", "control characters",
                 id="source-nul"),
    pytest.param(W, _set("spec.source", "\x1b[31mred"), "spec.source", "control characters",
                 id="source-ansi-escape"),
    pytest.param(W, _set("spec.source", "a\tb"), "spec.source", "control characters",
                 id="source-tab"),
    pytest.param(W, _set("spec.source", "x\u0085y"), "spec.source", "control characters",
                 id="source-c1-next-line"),
    pytest.param(W, _set("spec.source", "vpa\nkind: Secret"), "spec.source",
                 "control characters", id="source-yaml-injection"),
    pytest.param(W, _set("spec.source", "vpa\r\n---\napiVersion: v1"), "spec.source",
                 "control characters", id="source-yaml-document-injection"),
    pytest.param(W, _set("spec.source", 'vpa"}\n{"kind": "Secret'), "spec.source",
                 "control characters", id="source-json-injection"),
    pytest.param(W, _set("spec.source", "x" * 1025), "spec.source", "longer than 1024",
                 id="source-too-long"),
    pytest.param(W, _set("spec.source", 5), "spec.source", "must be a string",
                 id="source-int"),
    pytest.param(W, _set("metadata.labels", {"team": "a\nb"}), "metadata.labels.team",
                 "control characters", id="label-value-newline"),
    # --- node group
    pytest.param(N, _set("metadata", {"namespace": "default"}), "metadata.namespace",
                 "cluster-scoped", id="ng-namespace"),
    pytest.param(N, _set("spec.targetNodeCount", 5), "spec.targetNodeCount",
                 "must lower the node count", id="ng-consolidate-same"),
    pytest.param(N, _all(_set("spec.targetNodeCount", 6), _set("spec.nodesToRemove", [])),
                 "spec.targetNodeCount", "must lower the node count", id="ng-consolidate-up"),
    pytest.param(N, _set("spec.targetNodeCount", _DROP), "spec.targetNodeCount",
                 "is required", id="ng-target-missing"),
    pytest.param(N, _set("spec.targetNodeCount", -1), "spec.targetNodeCount",
                 "greater than or equal to 0", id="ng-target-negative"),
    pytest.param(N, _set("spec.targetNodeCount", "3"), "spec.targetNodeCount",
                 "integer, got string", id="ng-target-string"),
    pytest.param(N, _set("spec.currentNodeCount", True), "spec.currentNodeCount",
                 "integer, got boolean", id="ng-current-bool"),
    pytest.param(N, _set("spec.action", "Rightsizing"), "spec.action", "unknown action",
                 id="ng-action"),
    pytest.param(N, _set("spec.nodeGroup", "Default_Pool"), "spec.nodeGroup", "DNS-1123",
                 id="ng-group-name"),
    pytest.param(N, _set("spec.nodeGroup", _DROP), "spec.nodeGroup", "is required",
                 id="ng-group-missing"),
    pytest.param(N, _set("spec.nodesToRemove", ["node-a", "node-a"]), "spec.nodesToRemove[1]",
                 "duplicate", id="ng-nodes-duplicate"),
    pytest.param(N, _set("spec.nodesToRemove", ["node-a", "node-b", "node-c"]),
                 "spec.nodesToRemove", "only drops by 2", id="ng-nodes-too-many"),
    pytest.param(N, _set("spec.nodesToRemove", "node-a"), "spec.nodesToRemove",
                 "must be an array", id="ng-nodes-string"),
    pytest.param(N, _set("spec.nodesToRemove", ["Node_A"]), "spec.nodesToRemove[0]",
                 "DNS-1123", id="ng-node-name"),
    pytest.param(N, _set("spec.nodesToRemove", ["node-a\nrm"]), "spec.nodesToRemove[0]",
                 "control characters", id="ng-node-injection"),
    pytest.param(N, _set("spec.priority", 5000), "spec.priority", "at most 1000",
                 id="ng-priority"),
    pytest.param(N, _set("spec.containers", []), "spec.containers", "unknown field",
                 id="ng-unknown-field"),
    pytest.param(N, _set("spec.source", "\udcff"), "spec.source", "UTF-8",
                 id="ng-source-surrogate"),
    pytest.param(N, _set("spec.source", "a\nb: c"), "spec.source", "control characters",
                 id="ng-source-injection"),
    pytest.param(N, _set("spec.recommendationId", "NG 1"), "spec.recommendationId",
                 "DNS-1123", id="ng-id"),
    # --- empty mappings must not slip through
    pytest.param(
        W, _set("spec.targetRef", {}), "spec.targetRef.kind", "",
        id="target-ref-empty",
    ),
    pytest.param(
        W, _set("spec.containers", [{}]), f"{C0}.name", "",
        id="container-empty",
    ),
    pytest.param(
        W, _set(f"{C0}.resources", {}), f"{C0}.resources", "requests or limits",
        id="resources-empty",
    ),
]


@pytest.mark.parametrize("base", [WORKLOAD, NODE_GROUP], ids=["workload", "node-group"])
def test_design_samples_parse(base: Doc) -> None:
    rec = validation.parse(copy.deepcopy(base))
    assert rec.kind == base["kind"]
    assert rec.id == base["spec"]["recommendationId"]


@pytest.mark.parametrize(("base", "mutation", "field", "keyword"), BAD_CASES)
def test_one_bad_field(base: Doc, mutation: Mutation, field: str, keyword: str) -> None:
    errs = _errors_of(_mutated(base, mutation))
    matching = [e for e in errs if e.field == field]
    assert matching, f"no error on {field!r}; got {[str(e) for e in errs]}"
    assert any(keyword in e.reason for e in matching), [e.reason for e in matching]


GOOD_CASES = [
    pytest.param(W, _set("spec.targetRef.kind", "StatefulSet"), id="statefulset"),
    pytest.param(W, _set("spec.targetRef.kind", "DaemonSet"), id="daemonset"),
    pytest.param(W, _set("spec.targetRef.apiVersion", "apps/v1"), id="target-api-version"),
    pytest.param(W, _set("spec.action", "LiveMigration"), id="live-migration"),
    pytest.param(
        W, _all(_set("spec.action", "ReplicaScaling"), _set("spec.containers", _DROP),
                _set("spec.replicas", _DROP)), id="replica-scaling-hpa",
    ),
    pytest.param(
        W, _all(_set("spec.action", "ReplicaScaling"), _set("spec.containers", _DROP),
                _set("spec.hpa", _DROP), _set("spec.replicas", 0)), id="replica-scaling-zero",
    ),
    pytest.param(W, _set("spec.hpa", {"maxReplicas": 4}), id="hpa-max-only"),
    pytest.param(W, _set("spec.hpa", {"minReplicas": 3, "maxReplicas": 3}), id="hpa-min-eq-max"),
    pytest.param(W, _set(f"{REQ}.cpu", 0.1), id="cpu-yaml-float"),
    pytest.param(W, _set(f"{LIM}.cpu", 1), id="cpu-yaml-int"),
    pytest.param(W, _set(f"{REQ}.cpu", "200m"), id="request-equals-limit"),
    pytest.param(W, _set(f"{REQ}.memory", "0.125Gi"), id="request-equals-limit-other-form"),
    pytest.param(W, _all(_set(f"{LIM}.cpu", "1024"), _set(f"{LIM}.memory", "16Ti")),
                 id="limits-at-the-cap"),
    pytest.param(W, _set(f"{REQ}.ephemeral-storage", "1Gi"), id="ephemeral-storage"),
    pytest.param(W, _set(f"{C0}.resources", {"limits": {"memory": "1Gi"}}), id="limits-only"),
    pytest.param(W, _set(f"{C0}.name", "a" * 63), id="container-name-63"),
    pytest.param(W, _set("spec.targetRef.name", "web.v2-api"), id="target-subdomain"),
    pytest.param(W, _set("spec.confidence", 0), id="confidence-0"),
    pytest.param(W, _set("spec.confidence", 1), id="confidence-1-int"),
    pytest.param(W, _set("spec.source", "krr 1.8 (café, 東京)"), id="source-unicode"),
    pytest.param(W, _set("spec.projectedSavings", {"monthly": -3.5, "currency": "EUR"}),
                 id="savings-negative-eur"),
    pytest.param(W, _set("status", _DROP), id="no-status"),
    pytest.param(W, _set("status.phase", "Applied"), id="status-applied"),
    pytest.param(W, _set("metadata.labels", {"team": "payments"}), id="metadata-labels"),
    pytest.param(N, _all(_set("spec.targetNodeCount", 4), _set("spec.nodesToRemove", ["node-a"])),
                 id="ng-consolidate-by-one"),
    pytest.param(N, _all(_set("spec.action", "scale"), _set("spec.targetNodeCount", 8),
                         _set("spec.nodesToRemove", [])), id="ng-scale-up"),
    pytest.param(N, _set("spec.currentNodeCount", _DROP), id="ng-no-current"),
    pytest.param(N, _set("spec.priority", -1000), id="ng-priority-min"),
    pytest.param(N, _set("metadata", {"name": "ng-custom"}), id="ng-metadata-name"),
]


@pytest.mark.parametrize(("base", "mutation"), GOOD_CASES)
def test_valid_variants(base: Doc, mutation: Mutation) -> None:
    doc = _mutated(base, mutation)
    rec = validation.parse(doc)
    assert rec.kind == doc["kind"]


def test_sample_values_are_carried() -> None:
    rec = validation.parse(copy.deepcopy(WORKLOAD))
    assert isinstance(rec, model.WorkloadRecommendation)
    assert rec.namespace == "default"
    assert rec.action == model.RIGHTSIZING
    assert rec.targetRef == model.TargetRef("Deployment", "cartservice")
    (c,) = rec.containers
    assert c.name == "server"
    assert {k: str(v) for k, v in c.requests.items()} == {"cpu": "100m", "memory": "64Mi"}
    assert {k: str(v) for k, v in c.limits.items()} == {"cpu": "200m", "memory": "128Mi"}
    assert rec.replicas == 3
    assert rec.hpa == model.HpaBounds(2, 6)
    assert rec.confidence == 0.9
    assert rec.projectedSavings == model.Savings(42.30, "USD")
    assert rec.autoApply is True
    assert rec.status.phase == model.PENDING
    assert rec.target_key == ("default", "Deployment", "cartservice")

    ng = validation.parse(copy.deepcopy(NODE_GROUP))
    assert isinstance(ng, model.NodeGroupRecommendation)
    assert (ng.nodeGroup, ng.action, ng.currentNodeCount, ng.targetNodeCount) == (
        "default-pool", "consolidate", 5, 3)
    assert ng.nodesToRemove == ("node-a", "node-b")
    assert ng.namespace == ""
    assert ng.target_key == ("", "NodeGroup", "default-pool")


def test_several_errors_in_one_document_are_all_reported() -> None:
    doc = _mutated(WORKLOAD, _all(
        _set("spec.action", "Delete"),
        _set("spec.replicas", -2),
        _set(f"{REQ}.cpu", "abc"),
        _set("spec.targetRef.kind", "Pod"),
        _set("spec.confidence", 7),
        _set("spec.extra", 1),
    ))
    with pytest.raises(errors.ValidationError) as exc:
        validation.parse(doc)
    fields = {e.field for e in exc.value.errors}
    assert fields >= {"spec.action", "spec.replicas", f"{REQ}.cpu", "spec.targetRef.kind",
                      "spec.confidence", "spec.extra"}
    message = str(exc.value)
    for e in exc.value.errors:
        assert f"{e.field}: {e.reason}" in message


def test_hostile_strings_are_all_reported_and_stop_deeper_checks() -> None:
    doc = _mutated(WORKLOAD, _all(
        _set("spec.source", "a\nb"),
        _set("spec.targetRef.name", "\udcff"),
        _set("spec.replicas", -5),  # a structural error, not looked at after hostile text
    ))
    errs = _errors_of(doc)
    assert {e.field for e in errs} == {"spec.source", "spec.targetRef.name"}


@pytest.mark.parametrize("doc", [None, "kind: WorkloadRecommendation", [WORKLOAD], 3])
def test_non_object_document(doc: object) -> None:
    errs = _errors_of(doc)
    assert [e.field for e in errs] == ["(document)"]
    assert "must be an object" in errs[0].reason


def _workload(rec_id: str, **spec: Any) -> Doc:
    doc = copy.deepcopy(WORKLOAD)
    doc["spec"]["recommendationId"] = rec_id
    doc["spec"].update(spec)
    return doc


def test_parse_many_refuses_only_the_bad_item() -> None:
    docs: list[object] = [
        _workload("rec-a"),
        _workload("rec-b", replicas="three"),
        copy.deepcopy(NODE_GROUP),
        "not a document",
        _workload("rec-c"),
    ]
    results = validation.parse_many(docs)
    assert [r.index for r in results] == [0, 1, 2, 3, 4]
    assert [r.ok for r in results] == [True, False, True, False, True]
    assert [r.recommendation.id for r in results if r.recommendation is not None] == [
        "rec-a", "ng-0001", "rec-c"]
    bad = results[1]
    assert bad.recommendation is None
    assert bad.raw_id == "rec-b"
    assert [e.field for e in bad.errors] == ["spec.replicas"]
    assert results[3].raw_id == ""
    assert results[3].errors[0].field == "(document)"
    for good in (results[0], results[2], results[4]):
        assert good.errors == ()


def test_parse_many_refuses_duplicate_ids() -> None:
    docs: list[object] = [
        _workload("rec-a"),
        _workload("rec-a", replicas=5),
        _workload("rec-b"),
        # The same id on the other kind is a different key.
        _mutated(NODE_GROUP, _set("spec.recommendationId", "rec-a")),
    ]
    results = validation.parse_many(docs)
    assert [r.ok for r in results] == [True, False, True, True]
    (err,) = results[1].errors
    assert err.field == "spec.recommendationId"
    assert "duplicate id 'rec-a'" in err.reason
    assert "item 0" in err.reason
    assert results[1].raw_id == "rec-a"


def test_parse_many_empty_batch() -> None:
    assert validation.parse_many([]) == []


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        pytest.param(_workload("rec-a"), "rec-a", id="valid"),
        # As written, even when invalid: a user can find it.
        pytest.param(_workload("Rec_A"), "Rec_A", id="invalid-but-clean"),
        pytest.param(_workload("rec\x00-a"), "", id="nul"),
        pytest.param(_workload("rec\x1b[2J"), "", id="escape"),
        pytest.param(_workload("rec\n-a"), "", id="newline"),
        pytest.param(_workload("rec\t-a"), "", id="tab"),
        pytest.param(_workload("x" * 254), "", id="too-long"),
        pytest.param(_workload(7), "", id="int"),  # type: ignore[arg-type]
        pytest.param({"spec": "x"}, "", id="spec-string"),
        pytest.param(None, "", id="none"),
    ],
)
def test_raw_id(doc: object, expected: str) -> None:
    assert validation.raw_id(doc) == expected


def test_metadata_name_derived_from_id_when_absent() -> None:
    rec = validation.parse(_workload("rec-0042"))
    assert rec.name == "rec-0042"
    assert rec.to_dict()["metadata"] == {"name": "rec-0042", "namespace": "default"}
    ng = validation.parse(copy.deepcopy(NODE_GROUP))
    assert ng.name == "ng-0001"
    assert ng.to_dict()["metadata"] == {"name": "ng-0001"}


def test_metadata_name_kept_when_given() -> None:
    doc = _workload("rec-0042")
    doc["metadata"]["name"] = "cartservice-rightsizing"
    assert validation.parse(doc).name == "cartservice-rightsizing"


def test_namespace_defaults_to_default() -> None:
    doc = _workload("rec-0042")
    del doc["metadata"]
    rec = validation.parse(doc)
    assert rec.namespace == "default"
    assert rec.name == "rec-0042"


@pytest.mark.parametrize("base", [WORKLOAD, NODE_GROUP], ids=["workload", "node-group"])
def test_round_trip(base: Doc) -> None:
    rec = validation.parse(copy.deepcopy(base))
    again = validation.parse(rec.to_dict())
    assert again.to_dict() == rec.to_dict()
    assert again == rec


def test_round_trip_canonicalizes_quantities() -> None:
    doc = _workload("rec-q")
    doc["spec"]["containers"][0]["resources"] = {
        "requests": {"cpu": 0.1, "memory": "0.0625Gi"},
        "limits": {"cpu": "2000m", "memory": "134217728"},
    }
    rec = validation.parse(doc)
    res = rec.to_dict()["spec"]["containers"][0]["resources"]
    assert res == {"requests": {"cpu": "100m", "memory": "64Mi"},
                   "limits": {"cpu": "2", "memory": "134217728"}}
    assert validation.parse(rec.to_dict()).to_dict() == rec.to_dict()


def test_status_keeps_only_the_phase() -> None:
    rec = validation.parse(copy.deepcopy(WORKLOAD))
    # The operator writes status; an incoming projectedSavings display string is dropped.
    assert rec.to_dict()["status"] == {"phase": "Pending"}
