"""The policy input document (``reconciler.core.policy_input``).

Cases covered:
- ``build`` returns exactly the keys ``recommendation``, ``target``, ``normalized``,
  ``cluster``, ``history``, ``now``; the recommendation is its CR form, the target is passed
  through (or ``None``), ``now`` is passed through, history defaults to
  ``{"lastApplied": None}``; the cluster facts have defaults that ``cluster=`` overrides;
- what the operator was told (``Operator``: namespace, mode, checkpointRestore) is in
  ``cluster``, with defaults (table); the whole document is JSON-serializable and the inputs are not
  mutated;
- ``normalized``: CPU as float cores, memory and ephemeral-storage as int bytes (rounded up);
  ``proposed`` merges the current values with the recommended ones; a container missing on
  the target (or no target) is ``found: false`` with empty current values; unparseable
  values on the target are left out; replicas ``current`` (1 when the key is absent) and
  ``proposed``; no ``replicas`` key without a replica proposal; node groups give ``{}``;
- ``cluster.nodeGroup`` for node groups: currentSize from the target's replicas (else the
  recommendation's currentNodeCount), minSize/maxSize from the cluster-autoscaler's Cluster
  API annotations, unknown keys left out (table); facts given by the caller win;
- ``gitops_tool`` from Argo CD (tracking-id annotation, ``argocd.argoproj.io/instance``
  label, ``app.kubernetes.io/instance`` plus an Argo CD annotation) and Flux
  (kustomize-controller and helm-controller labels); a Helm-only instance label, missing
  or null metadata and no target give ``None``; ``build`` puts the tool in
  ``cluster.gitops.tool``.

Label and annotation names: Argo CD "Resource Tracking" docs
(argo-cd.readthedocs.io/en/stable/user-guide/resource_tracking: annotation
``argocd.argoproj.io/tracking-id``, label ``app.kubernetes.io/instance`` by default or a custom
one such as ``argocd.argoproj.io/instance``); Flux kustomize-controller and helm-controller
set ``kustomize.toolkit.fluxcd.io/name`` and ``helm.toolkit.fluxcd.io/name`` on applied objects.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from reconciler.domain import model, policy_input, validation

NOW = "2026-11-24T22:00:00Z"

TARGET: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "cartservice", "namespace": "default"},
    "spec": {
        "replicas": 2,
        "template": {"spec": {"containers": [
            {"name": "server", "resources": {
                "requests": {"cpu": "200m", "memory": "64Mi"},
                "limits": {"cpu": "1", "memory": "256Mi", "ephemeral-storage": "1Gi"},
            }},
            {"name": "sidecar", "resources": {"requests": {"cpu": "lots", "memory": 0.5}}},
        ]}},
    },
}


def _rec(containers: list[dict[str, Any]] | None = None, *, replicas: int | None = None,
         action: str = "Rightsizing") -> model.WorkloadRecommendation:
    spec: dict[str, Any] = {"recommendationId": "rec-0001", "action": action,
                            "targetRef": {"kind": "Deployment", "name": "cartservice"}}
    if containers is not None:
        spec["containers"] = containers
    if replicas is not None:
        spec["replicas"] = replicas
    rec = validation.parse({"apiVersion": "dakr.devzero.io/v1alpha1",
                            "kind": "WorkloadRecommendation",
                            "metadata": {"namespace": "default"}, "spec": spec})
    assert isinstance(rec, model.WorkloadRecommendation)
    return rec


SERVER_DOWN = {"name": "server", "resources": {"requests": {"cpu": "100m"},
                                               "limits": {"memory": "128Mi"}}}


def _node_group() -> model.Recommendation:
    return validation.parse({
        "apiVersion": "dakr.devzero.io/v1alpha1", "kind": "NodeGroupRecommendation",
        "spec": {"recommendationId": "ng-1", "nodeGroup": "pool", "action": "consolidate",
                 "currentNodeCount": 3, "targetNodeCount": 2},
    })


def test_build_keys_and_pass_through() -> None:
    rec = _rec([SERVER_DOWN])
    target = copy.deepcopy(TARGET)
    doc = policy_input.build(rec, target, now=NOW)
    assert set(doc) == {"recommendation", "target", "normalized", "cluster", "history", "now"}
    assert doc["recommendation"] == rec.to_dict()
    assert doc["target"] == TARGET
    assert doc["now"] == NOW
    assert doc["history"] == {"lastApplied": None}
    assert doc["cluster"] == {"operatorNamespace": "dakr-operator", "operatorMode": "gitops",
                              "hpa": None, "pdbs": [], "gitops": {"tool": None}, "nodes": [],
                              "nodeGroup": None, "checkpointRestore": False}
    assert json.loads(json.dumps(doc)) == doc
    assert target == TARGET, "build must not mutate the target"


def test_build_without_target() -> None:
    doc = policy_input.build(_rec([SERVER_DOWN]), None, now=NOW)
    assert doc["target"] is None
    assert doc["normalized"]["containers"]["server"]["found"] is False


def test_build_cluster_history_and_namespace() -> None:
    history = {"lastApplied": "2026-11-20T10:00:00Z", "count": 1}
    cluster = {"hpa": {"minReplicas": 2, "maxReplicas": 5}, "pdbs": [{"name": "cart-pdb"}],
               "gitops": {"tool": "argocd"}}
    doc = policy_input.build(_rec([SERVER_DOWN]), TARGET, now=NOW, cluster=cluster,
                             history=history, operator=policy_input.Operator(namespace="ops"))
    assert doc["history"] == history
    assert doc["cluster"]["operatorNamespace"] == "ops"
    assert doc["cluster"]["hpa"] == {"minReplicas": 2, "maxReplicas": 5}
    assert doc["cluster"]["pdbs"] == [{"name": "cart-pdb"}]
    assert doc["cluster"]["gitops"] == {"tool": "argocd"}
    assert doc["cluster"]["nodes"] == []  # defaults kept for keys not given


@pytest.mark.parametrize(("operator", "cluster"), [
    (policy_input.Operator(), {"operatorNamespace": "dakr-operator", "operatorMode": "gitops",
                               "checkpointRestore": False}),
    (policy_input.Operator(namespace="ops", mode="direct", checkpoint_restore=True),
     {"operatorNamespace": "ops", "operatorMode": "direct", "checkpointRestore": True}),
])
def test_build_says_what_the_operator_was_told(operator: policy_input.Operator,
                                               cluster: dict[str, Any]) -> None:
    doc = policy_input.build(_rec([SERVER_DOWN]), TARGET, now=NOW, operator=operator)
    assert {k: doc["cluster"][k] for k in cluster} == cluster


def test_normalized_numbers_and_merge() -> None:
    doc = policy_input.build(_rec([SERVER_DOWN]), TARGET, now=NOW)
    server = doc["normalized"]["containers"]["server"]
    assert server == {
        "found": True,
        "current": {"requests": {"cpu": 0.2, "memory": 67108864},
                    "limits": {"cpu": 1.0, "memory": 268435456,
                               "ephemeral-storage": 1073741824}},
        "proposed": {"requests": {"cpu": 0.1, "memory": 67108864},
                     "limits": {"cpu": 1.0, "memory": 134217728,
                                "ephemeral-storage": 1073741824}},
    }
    assert set(doc["normalized"]["containers"]) == {"server"}  # only recommended containers
    for section in ("current", "proposed"):
        for values in server[section].values():
            assert isinstance(values["cpu"], float)
            assert isinstance(values["memory"], int)
            assert not isinstance(values["memory"], bool)


@pytest.mark.parametrize(
    ("raw", "resource", "expected"),
    [
        ("250m", "cpu", 0.25),
        ("2", "cpu", 2.0),
        (1, "cpu", 1.0),
        ("1.5Gi", "memory", 1610612736),
        ("1G", "memory", 1_000_000_000),
        ("0.5", "memory", 1),   # whole bytes, rounded up
        (256, "memory", 256),
        ("1Ki", "ephemeral-storage", 1024),
    ],
)
def test_normalized_units(raw: str | int, resource: str, expected: float | int) -> None:
    target = copy.deepcopy(TARGET)
    target["spec"]["template"]["spec"]["containers"] = [
        {"name": "server", "resources": {"requests": {resource: raw}}}]
    doc = policy_input.build(_rec([{"name": "server",
                                    "resources": {"limits": {"cpu": "4"}}}]), target, now=NOW)
    got = doc["normalized"]["containers"]["server"]["current"]["requests"][resource]
    assert got == expected
    assert type(got) is type(expected)


def test_normalized_skips_unparseable_target_values() -> None:
    rec = _rec([{"name": "sidecar", "resources": {"requests": {"cpu": "10m"}}}])
    side = policy_input.build(rec, TARGET, now=NOW)["normalized"]["containers"]["sidecar"]
    assert side["current"]["requests"] == {"memory": 1}
    assert side["proposed"]["requests"] == {"cpu": 0.01, "memory": 1}


def test_normalized_missing_container() -> None:
    rec = _rec([{"name": "web", "resources": {"requests": {"cpu": "300m", "memory": "1Gi"}}}])
    web = policy_input.build(rec, TARGET, now=NOW)["normalized"]["containers"]["web"]
    assert web == {
        "found": False,
        "current": {"requests": {}, "limits": {}},
        "proposed": {"requests": {"cpu": 0.3, "memory": 1073741824}, "limits": {}},
    }


@pytest.mark.parametrize(
    ("target_replicas", "proposed", "expected"),
    [(2, 4, {"current": 2, "proposed": 4}),
     (None, 3, {"current": 1, "proposed": 3}),
     (5, 0, {"current": 5, "proposed": 0})],
)
def test_normalized_replicas(target_replicas: int | None, proposed: int,
                             expected: dict[str, int]) -> None:
    target = copy.deepcopy(TARGET)
    if target_replicas is None:
        del target["spec"]["replicas"]
    else:
        target["spec"]["replicas"] = target_replicas
    doc = policy_input.build(_rec(action="ReplicaScaling", replicas=proposed), target, now=NOW)
    assert doc["normalized"] == {"containers": {}, "replicas": expected}


def test_normalized_without_replica_proposal() -> None:
    doc = policy_input.build(_rec([SERVER_DOWN]), TARGET, now=NOW)
    assert "replicas" not in doc["normalized"]


def test_node_group_normalized_is_empty() -> None:
    ng = _node_group()
    doc = policy_input.build(ng, None, now=NOW)
    assert doc["normalized"] == {}
    assert doc["recommendation"]["kind"] == model.NODE_GROUP


def _with_meta(labels: dict[str, Any] | None = None,
               annotations: dict[str, Any] | None = None) -> dict[str, Any]:
    target = copy.deepcopy(TARGET)
    target["metadata"]["labels"] = labels
    target["metadata"]["annotations"] = annotations
    return target


@pytest.mark.parametrize(
    ("target", "tool"),
    [
        pytest.param(_with_meta(annotations={
            "argocd.argoproj.io/tracking-id": "shop:apps/Deployment:default/cartservice"}),
            "argocd", id="argocd-annotation-tracking"),
        pytest.param(_with_meta(labels={"argocd.argoproj.io/instance": "shop"}), "argocd",
                     id="argocd-custom-instance-label"),
        pytest.param(_with_meta(labels={"app.kubernetes.io/instance": "shop"},
                                annotations={"argocd.argoproj.io/sync-wave": "1"}),
                     "argocd", id="argocd-instance-label-with-argocd-annotation"),
        pytest.param(_with_meta(labels={"kustomize.toolkit.fluxcd.io/name": "apps",
                                        "kustomize.toolkit.fluxcd.io/namespace": "flux-system"}),
                     "flux", id="flux-kustomization"),
        pytest.param(_with_meta(labels={"helm.toolkit.fluxcd.io/name": "cart",
                                        "helm.toolkit.fluxcd.io/namespace": "flux-system"}),
                     "flux", id="flux-helmrelease"),
        # Helm charts set app.kubernetes.io/instance too: alone it proves nothing.
        pytest.param(_with_meta(labels={"app.kubernetes.io/instance": "cart",
                                        "app.kubernetes.io/managed-by": "Helm"}),
                     None, id="helm-instance-label-only"),
        pytest.param(_with_meta(labels={"app": "cartservice"}, annotations={}), None,
                     id="plain"),
        pytest.param(_with_meta(), None, id="null-labels-and-annotations"),
        pytest.param({"kind": "Deployment"}, None, id="no-metadata"),
        pytest.param({}, None, id="empty-object"),
        pytest.param(None, None, id="no-target"),
    ],
)
def test_gitops_tool(target: dict[str, Any] | None, tool: str | None) -> None:
    assert policy_input.gitops_tool(target) == tool


def test_build_reports_detected_tool() -> None:
    target = _with_meta(labels={"kustomize.toolkit.fluxcd.io/name": "apps"})
    doc = policy_input.build(_rec([SERVER_DOWN]), target, now=NOW)
    assert doc["cluster"]["gitops"] == {"tool": "flux"}


def _machine_deployment(replicas: Any, annotations: dict[str, Any] | None) -> dict[str, Any]:
    return {"apiVersion": "cluster.x-k8s.io/v1beta1", "kind": "MachineDeployment",
            "metadata": {"name": "pool", "annotations": annotations},
            "spec": {"replicas": replicas}}


MIN_A = policy_input.MIN_SIZE_ANNOTATION
MAX_A = policy_input.MAX_SIZE_ANNOTATION


@pytest.mark.parametrize(("target", "expected"), [
    # replicas from the object, bounds from the autoscaler's annotations (strings there)
    (_machine_deployment(5, {MIN_A: "2", MAX_A: "8"}),
     {"name": "pool", "currentSize": 5, "minSize": 2, "maxSize": 8}),
    # no replicas on the object: the recommendation's currentNodeCount
    (_machine_deployment(None, {MIN_A: "1"}), {"name": "pool", "currentSize": 3, "minSize": 1}),
    # no annotations, or unusable ones: bounds unknown (left out, the rule cannot fire)
    (_machine_deployment(4, None), {"name": "pool", "currentSize": 4}),
    (_machine_deployment(4, {MIN_A: "two", MAX_A: "-1"}), {"name": "pool", "currentSize": 4}),
    (_machine_deployment(True, {MIN_A: 0}), {"name": "pool", "currentSize": 3, "minSize": 0}),
    # no object at all (FILE#path layouts give only replicas; nothing: the rec's count)
    (None, {"name": "pool", "currentSize": 3}),
    ({"kind": "NodeGroup", "metadata": {"name": "pool"}, "spec": {"replicas": 6}},
     {"name": "pool", "currentSize": 6}),
])
def test_node_group_facts_from_the_target(target: dict[str, Any] | None,
                                          expected: dict[str, Any]) -> None:
    doc = policy_input.build(_node_group(), target, now=NOW)
    assert doc["cluster"]["nodeGroup"] == expected


def test_node_group_facts_given_by_the_cluster_win() -> None:
    given = {"name": "pool", "minSize": 9, "currentSize": 10}
    doc = policy_input.build(_node_group(), _machine_deployment(5, {MIN_A: "2"}), now=NOW,
                             cluster={"nodeGroup": given})
    assert doc["cluster"]["nodeGroup"] == given

