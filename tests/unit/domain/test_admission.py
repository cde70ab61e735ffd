"""The live-migration admission webhook's pure part (reconciler.domain.admission), table
tests. Every patch is decoded and applied (RFC 6902 ``add``, RFC 6901 pointers) to the
pod it was computed for, and the result is what is checked.

Cases:
- owner mapping: a ReplicaSet ``<deployment>-<hash>`` with the pod's pod-template-hash
  label is that Deployment (names with dashes too); a mismatched or missing hash label, a
  ReplicaSet of another API group, a non-controller owner, a Job, no owners, an empty
  Deployment name: no workload; StatefulSet and DaemonSet owners map directly;
- QoS class as Kubernetes computes it: BestEffort, Burstable, Guaranteed (limits alone
  default the requests), zero values not counted, init containers count, pod-level
  resources decide alone;
- reviews: a changed request set in place (only that key); limits added where the pod has
  none; resources added to a container without any; a container found by name at any
  index; a Guaranteed pod keeps Guaranteed when request and limit move together;
- QoS guard: a change that would turn Guaranteed into Burstable, or BestEffort into
  Burstable, is not made (a warning says why); request-over-limit guard likewise (also
  against a limit defaulted from nothing: the pod's own limit); pod-level resources and an
  unparsable recommended value: not made, with a warning;
- equal values (0.1 and 100m, 1Gi and 1024Mi) give no patch; a mix patches only what
  differs; a container the pod lacks and a resource other than cpu/memory are ignored;
- not mutated: UPDATE, DELETE, another kind, a subresource, a pod of another namespace,
  an unindexed workload, a pod without a controller; every answer is allowed with the
  request's uid;
- malformed: no uid (allowed, uid ""), no object, containers not a list, a namespace that
  is not a string: well-formed allowed answers; not an AdmissionReview at all (a list,
  another kind, v1beta1, no request): 400;
- warnings are one short line, control characters escaped; pods named by generateName;
- property (hypothesis, derandomized): whatever JSON stands in a pod's metadata, spec,
  containers and resources, or in a recommended value, the answer is allowed, carries the
  request's uid, and any patch applies to the pod it was computed for; fallback() (the
  answer after a failure) is allowed with the uid when there is one;
- contribution(): Applied and Applying LiveMigrations persisted by the webhook count;
  other phases, persist template, no liveMigration status, another action or kind, a
  record being deleted, a bad target, nothing set: none; values filtered to
  requests/limits of cpu/memory strings; merge(): a newer recommendation wins a field
  both set, different fields combine.
"""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.domain import admission

NS = "shop"
HASH = "5d8f7c9b4"
RS_OWNER = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": f"web-{HASH}",
            "uid": "u-rs", "controller": True, "blockOwnerDeletion": True}
WEB = (NS, "Deployment", "web")
POD_KIND = {"group": "", "version": "v1", "kind": "Pod"}
PODS = {"group": "", "version": "v1", "resource": "pods"}


def c(name: str = "app", requests: dict[str, str] | None = None,
      limits: dict[str, str] | None = None, *, bare: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "image": "registry.example/app:1"}
    if bare:
        return out
    res: dict[str, Any] = {}
    if requests is not None:
        res["requests"] = requests
    if limits is not None:
        res["limits"] = limits
    out["resources"] = res
    return out


def pod(*containers: dict[str, Any], owner: dict[str, Any] | None = RS_OWNER,
        labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"generateName": f"web-{HASH}-", "namespace": NS,
                            "labels": {"app": "web", "pod-template-hash": HASH}
                            if labels is None else labels}
    if owner is not None:
        meta["ownerReferences"] = [owner]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"containers": list(containers) or [c(requests={"cpu": "100m"})],
                     **spec}}


def review_of(obj: Any, *, operation: str = "CREATE", kind: dict[str, str] = POD_KIND,
              resource: dict[str, str] = PODS, uid: Any = "uid-1",
              namespace: Any = NS, sub: str = "") -> dict[str, Any]:
    req: dict[str, Any] = {"uid": uid, "kind": kind, "resource": resource,
                           "requestKind": kind, "requestResource": resource,
                           "namespace": namespace, "operation": operation,
                           "userInfo": {"username": "system:serviceaccount:kube-system:rs"},
                           "object": obj, "oldObject": None, "dryRun": False}
    if sub:
        req["subResource"] = sub
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req}


def index(values: dict[str, Any], target: tuple[str, str, str] = WEB) -> admission.Index:
    return {target: values}


def ops_of(out: admission.Outcome) -> list[dict[str, Any]]:
    assert out.body is not None
    resp = out.body["response"]
    if "patch" not in resp:
        return []
    assert resp["patchType"] == "JSONPatch"
    ops: list[dict[str, Any]] = json.loads(base64.b64decode(resp["patch"]))
    return ops


def unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def apply_patch(doc: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """RFC 6902 ``add`` (the only operation the webhook sends): the parent must exist."""
    out = copy.deepcopy(doc)
    for op in ops:
        assert op["op"] == "add", op
        *parents, last = [unescape(t) for t in op["path"].split("/")[1:]]
        node: Any = out
        for t in parents:
            node = node[int(t)] if isinstance(node, list) else node[t]
        assert isinstance(node, dict), op
        node[unescape(last)] = copy.deepcopy(op["value"])
    return out


def mutated(obj: dict[str, Any], values: dict[str, Any]) -> tuple[admission.Outcome,
                                                                  dict[str, Any]]:
    out = admission.review(review_of(obj), index(values))
    assert out.status == 200 and out.body is not None
    assert out.body["apiVersion"] == "admission.k8s.io/v1"
    assert out.body["kind"] == "AdmissionReview"
    assert out.body["response"]["uid"] == "uid-1"
    assert out.body["response"]["allowed"] is True
    return out, apply_patch(obj, ops_of(out))


# --------------------------------------------------------------------------- owners


OWNERS: dict[str, tuple[dict[str, Any] | None, dict[str, str], tuple[str, str, str] | None]] = {
    "replicaset-of-deployment": (RS_OWNER, {"pod-template-hash": HASH}, WEB),
    "dashed-deployment-name": ({**RS_OWNER, "name": f"web-api-v2-{HASH}"},
                               {"pod-template-hash": HASH}, (NS, "Deployment", "web-api-v2")),
    "hash-label-differs": (RS_OWNER, {"pod-template-hash": "abcdef123"}, None),
    "no-hash-label": (RS_OWNER, {"app": "web"}, None),
    "empty-hash-label": (RS_OWNER, {"pod-template-hash": ""}, None),
    "replicaset-of-another-group": ({**RS_OWNER, "apiVersion": "example.com/v1"},
                                    {"pod-template-hash": HASH}, None),
    "empty-deployment-name": ({**RS_OWNER, "name": f"-{HASH}"},
                              {"pod-template-hash": HASH}, None),
    "statefulset": ({"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db",
                     "uid": "u", "controller": True}, {}, (NS, "StatefulSet", "db")),
    "daemonset": ({"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent",
                   "uid": "u", "controller": True}, {}, (NS, "DaemonSet", "agent")),
    "not-the-controller": ({**RS_OWNER, "controller": False}, {"pod-template-hash": HASH},
                           None),
    "job": ({"apiVersion": "batch/v1", "kind": "Job", "name": "web", "uid": "u",
             "controller": True}, {}, None),
    "no-owner": (None, {"pod-template-hash": HASH}, None),
}


@pytest.mark.parametrize("case", OWNERS)
def test_owner_mapping(case: str) -> None:
    owner, labels, expected = OWNERS[case]
    meta: dict[str, Any] = {"labels": labels}
    if owner is not None:
        meta["ownerReferences"] = [{"apiVersion": "v1", "kind": "ConfigMap", "name": "x",
                                    "uid": "u"}, owner]
    assert admission.owner_workload(NS, meta) == expected


def test_owner_mapping_needs_a_list_of_references() -> None:
    assert admission.owner_workload(NS, {"ownerReferences": "web"}) is None
    assert admission.owner_workload(NS, {"ownerReferences": [RS_OWNER],
                                         "labels": "pod-template-hash"}) is None


# --------------------------------------------------------------------------- QoS


QOS: dict[str, tuple[dict[str, Any], str]] = {
    "nothing": ({"containers": [c()]}, "BestEffort"),
    "no-resources-key": ({"containers": [c(bare=True)]}, "BestEffort"),
    "requests-only": ({"containers": [c(requests={"cpu": "100m"})]}, "Burstable"),
    "equal": ({"containers": [c(requests={"cpu": "1", "memory": "1Gi"},
                                limits={"cpu": "1000m", "memory": "1024Mi"})]}, "Guaranteed"),
    "limits-default-requests": ({"containers": [c(limits={"cpu": "1", "memory": "1Gi"})]},
                                "Guaranteed"),
    "cpu-limit-only": ({"containers": [c(limits={"cpu": "1"})]}, "Burstable"),
    "request-below-limit": ({"containers": [c(requests={"cpu": "1", "memory": "1Gi"},
                                              limits={"cpu": "2", "memory": "1Gi"})]},
                            "Burstable"),
    "one-of-two-containers": ({"containers": [c(limits={"cpu": "1", "memory": "1Gi"}),
                                              c("side")]}, "Burstable"),
    "zero-requests": ({"containers": [c(requests={"cpu": "0", "memory": "0"})]},
                      "BestEffort"),
    "other-resources-only": ({"containers": [c(requests={"ephemeral-storage": "1Gi"})]},
                             "BestEffort"),
    "init-container-counts": ({"containers": [c(limits={"cpu": "1", "memory": "1Gi"})],
                               "initContainers": [c("init", requests={"cpu": "1"})]},
                              "Burstable"),
    "pod-level": ({"containers": [c(requests={"cpu": "1"})],
                   "resources": {"limits": {"cpu": "2", "memory": "1Gi"}}}, "Guaranteed"),
}


@pytest.mark.parametrize("case", QOS)
def test_qos_class(case: str) -> None:
    spec, expected = QOS[case]
    assert admission.qos_class(spec) == expected


# --------------------------------------------------------------------------- reviews


def test_a_changed_request_is_set_and_nothing_else() -> None:
    obj = pod(c(requests={"cpu": "500m", "memory": "256Mi"}, limits={"memory": "512Mi"}))
    out, got = mutated(obj, {"app": {"requests": {"cpu": "200m"}}})
    assert out.result == admission.PATCHED and out.target == WEB
    assert ops_of(out) == [{"op": "add", "path": "/spec/containers/0/resources/requests/cpu",
                            "value": "200m"}]
    assert got["spec"]["containers"][0]["resources"] == {
        "requests": {"cpu": "200m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}}
    assert out.patched == {"app": {"requests": {"cpu": "200m"}}}
    assert out.pod == f"{NS}/web-{HASH}-*"
    assert out.warnings == () and "warnings" not in out.body["response"]  # type: ignore[index]


def test_maps_are_added_where_the_pod_has_none() -> None:
    obj = pod(c(requests={"cpu": "500m"}), c("side", bare=True), c("log"))
    values = {"app": {"limits": {"memory": "1Gi"}},
              "side": {"requests": {"cpu": "50m", "memory": "32Mi"}},
              "log": {"requests": {"memory": "16Mi"}}}
    out, got = mutated(obj, values)
    assert ops_of(out) == [
        {"op": "add", "path": "/spec/containers/0/resources/limits",
         "value": {"memory": "1Gi"}},
        {"op": "add", "path": "/spec/containers/1/resources",
         "value": {"requests": {"cpu": "50m", "memory": "32Mi"}}},
        {"op": "add", "path": "/spec/containers/2/resources/requests",
         "value": {"memory": "16Mi"}},
    ]
    by_name = {x["name"]: x["resources"] for x in got["spec"]["containers"]}
    assert by_name == {"app": {"requests": {"cpu": "500m"}, "limits": {"memory": "1Gi"}},
                       "side": {"requests": {"cpu": "50m", "memory": "32Mi"}},
                       "log": {"requests": {"memory": "16Mi"}}}


def test_containers_are_found_by_name() -> None:
    obj = pod(c("side", requests={"cpu": "10m"}), c("app", requests={"cpu": "1"}))
    out, got = mutated(obj, {"app": {"requests": {"cpu": "300m"}}})
    assert [op["path"] for op in ops_of(out)] == ["/spec/containers/1/resources/requests/cpu"]
    assert got["spec"]["containers"][0] == obj["spec"]["containers"][0]


def test_guaranteed_stays_guaranteed_when_request_and_limit_move_together() -> None:
    both = {"cpu": "1", "memory": "1Gi"}
    obj = pod(c(requests=dict(both), limits=dict(both)))
    out, got = mutated(obj, {"app": {"requests": {"cpu": "500m"}, "limits": {"cpu": "500m"}}})
    assert out.result == admission.PATCHED
    assert admission.qos_class(got["spec"]) == "Guaranteed"
    assert got["spec"]["containers"][0]["resources"]["limits"]["cpu"] == "500m"


SKIPS: dict[str, tuple[dict[str, Any], dict[str, Any], str]] = {
    "guaranteed-to-burstable": (
        pod(c(requests={"cpu": "1", "memory": "1Gi"}, limits={"cpu": "1", "memory": "1Gi"})),
        {"app": {"requests": {"cpu": "500m"}}},
        "QoS class would change from Guaranteed to Burstable"),
    "besteffort-to-burstable": (
        pod(c()), {"app": {"requests": {"cpu": "100m"}}},
        "QoS class would change from BestEffort to Burstable"),
    "request-over-limit": (
        pod(c(requests={"cpu": "100m"}, limits={"cpu": "200m"})),
        {"app": {"requests": {"cpu": "300m"}}},
        "the cpu request 300m would exceed its limit 200m"),
    "limit-under-request": (
        pod(c(requests={"memory": "512Mi"})), {"app": {"limits": {"memory": "256Mi"}}},
        "the memory request 512Mi would exceed its limit 256Mi"),
    "pod-level-resources": (
        pod(c(requests={"cpu": "100m"}), resources={"requests": {"cpu": "1"}}),
        {"app": {"requests": {"cpu": "200m"}}}, "the pod sets pod-level resources"),
    "not-a-quantity": (
        pod(c(requests={"cpu": "100m"})), {"app": {"requests": {"cpu": "lots"}}},
        "requests.cpu of container app is not a quantity"),
}


@pytest.mark.parametrize("case", SKIPS)
def test_guards_leave_the_pod_as_it_is_with_a_warning(case: str) -> None:
    obj, values, why = SKIPS[case]
    out, got = mutated(obj, values)
    assert out.result == admission.SKIPPED and out.target == WEB
    assert ops_of(out) == [] and got == obj
    (warning,) = out.body["response"]["warnings"]  # type: ignore[index]
    assert warning.startswith(admission.PREFIX) and why in warning, warning
    assert out.warnings == (warning,)


EQUAL: dict[str, tuple[dict[str, Any], dict[str, Any], list[str]]] = {
    "same-text": (pod(c(requests={"cpu": "100m"})), {"app": {"requests": {"cpu": "100m"}}},
                  []),
    "same-quantity": (pod(c(requests={"cpu": "0.1", "memory": "1Gi"})),
                      {"app": {"requests": {"cpu": "100m", "memory": "1024Mi"}}}, []),
    "one-of-two-differs": (pod(c(requests={"cpu": "100m", "memory": "1Gi"})),
                           {"app": {"requests": {"cpu": "100m", "memory": "2Gi"}}},
                           ["/spec/containers/0/resources/requests/memory"]),
    "container-not-in-pod": (pod(c(requests={"cpu": "100m"})),
                             {"sidecar": {"requests": {"cpu": "1"}}}, []),
    "not-cpu-or-memory": (pod(c(requests={"cpu": "100m"})),
                          {"app": {"requests": {"ephemeral-storage": "1Gi"}}}, []),
}


@pytest.mark.parametrize("case", EQUAL)
def test_values_the_pod_already_has_are_not_patched(case: str) -> None:
    obj, values, paths = EQUAL[case]
    out, _ = mutated(obj, values)
    assert [op["path"] for op in ops_of(out)] == paths
    assert out.result == (admission.PATCHED if paths else admission.UNCHANGED)
    assert "warnings" not in out.body["response"]  # type: ignore[index]


VALUES = {"app": {"requests": {"cpu": "200m"}}}
IGNORED: dict[str, dict[str, Any]] = {
    "update": review_of(pod(), operation="UPDATE"),
    "delete": review_of(pod(), operation="DELETE"),
    "deployment": review_of(pod(), kind={"group": "apps", "version": "v1",
                                         "kind": "Deployment"},
                            resource={"group": "apps", "version": "v1",
                                      "resource": "deployments"}),
    "pod-v2": review_of(pod(), kind={**POD_KIND, "version": "v2"}),
    "subresource": review_of(pod(), sub="binding"),
    "other-namespace": review_of(pod(), namespace="other"),
    "unindexed-workload": review_of(pod(owner={**RS_OWNER, "name": f"api-{HASH}"})),
    "no-controller": review_of(pod(owner=None)),
}


@pytest.mark.parametrize("case", IGNORED)
def test_anything_else_is_allowed_unchanged(case: str) -> None:
    out = admission.review(IGNORED[case], index(VALUES))
    assert out.status == 200 and out.result == admission.IGNORED
    assert out.body == {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                        "response": {"uid": "uid-1", "allowed": True}}


def _without(doc: dict[str, Any], *path: str) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    node = out
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return out


MALFORMED: dict[str, tuple[dict[str, Any], str]] = {
    "no-uid": (_without(review_of(pod()), "request", "uid"), ""),
    "uid-not-a-string": (review_of(pod(), uid=7), ""),
    "no-object": (_without(review_of(pod()), "request", "object"), "uid-1"),
    "object-not-a-map": (review_of(["pod"]), "uid-1"),
    "no-spec": (review_of(_without(pod(), "spec")), "uid-1"),
    "containers-not-a-list": (review_of({**pod(), "spec": {"containers": {"app": {}}}}),
                              "uid-1"),
    "no-metadata": (review_of(_without(pod(), "metadata")), "uid-1"),
    "namespace-not-a-string": (review_of(pod(), namespace=["shop"]), "uid-1"),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_reviews_get_a_well_formed_allowed_answer(case: str) -> None:
    doc, uid = MALFORMED[case]
    out = admission.review(doc, index(VALUES))
    assert out.status == 200 and out.result == admission.MALFORMED
    assert out.body == {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                        "response": {"uid": uid, "allowed": True}}


NOT_A_REVIEW: dict[str, Any] = {
    "list": [review_of(pod())],
    "string": "AdmissionReview",
    "another-kind": {**review_of(pod()), "kind": "TokenReview"},
    "v1beta1": {**review_of(pod()), "apiVersion": "admission.k8s.io/v1beta1"},
    "no-request": _without(review_of(pod()), "request"),
    "request-not-a-map": {**review_of(pod()), "request": "CREATE"},
}


@pytest.mark.parametrize("case", NOT_A_REVIEW)
def test_a_body_that_is_not_an_admission_review_is_a_400(case: str) -> None:
    out = admission.review(NOT_A_REVIEW[case], index(VALUES))
    assert out.status == 400 and out.body is None
    assert out.result == admission.BAD_REQUEST and out.error


def test_warnings_are_one_short_line() -> None:
    name = "w" * 40 + "\n" + "x" * 200
    owner = {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": name, "uid": "u",
             "controller": True}
    obj = pod(c(requests={"cpu": "1", "memory": "1Gi"}, limits={"cpu": "1", "memory": "1Gi"}),
              owner=owner)
    out = admission.review(review_of(obj),
                           index({"app": {"requests": {"cpu": "1m"}}}, (NS, "StatefulSet",
                                                                        name)))
    (warning,) = out.warnings
    assert len(warning) <= admission.WARNING_LIMIT
    assert "\n" not in warning and "\\n" in warning


def test_a_named_pod_is_logged_by_name() -> None:
    obj = pod(c(requests={"cpu": "100m"}))
    obj["metadata"]["name"] = "web-0"
    out, _ = mutated(obj, VALUES)
    assert out.pod == f"{NS}/web-0"


def test_pointer_escaping() -> None:
    assert admission.pointer("example.com/gpu~1") == "example.com~1gpu~01"
    assert unescape(admission.pointer("a/b~c")) == "a/b~c"


# --------------------------------------------------------------------------- the index


def status(phase: str = "Applied", persist: str | None = "webhook",
           containers: Any = None, target: Any = None) -> dict[str, Any]:
    out: dict[str, Any] = {"phase": phase, "previous": {
        "containers": {"app": {"requests": {"cpu": "500m"}}},
        "set": {"containers": containers if containers is not None
                else {"app": {"requests": {"cpu": "200m"}}}},
        "target": target if target is not None
        else {"kind": "Deployment", "namespace": NS, "name": "web"}}}
    if persist is not None:
        out["liveMigration"] = {"persist": persist, "fallback": "none"}
    return out


LIVE = {"recommendationId": "rec-1", "action": "LiveMigration",
        "targetRef": {"kind": "Deployment", "name": "web"}}

CONTRIBUTIONS: dict[str, tuple[dict[str, Any], dict[str, Any], Any]] = {
    "applied": (LIVE, status(), {"app": {"requests": {"cpu": "200m"}}}),
    "applying": (LIVE, status("Applying"), {"app": {"requests": {"cpu": "200m"}}}),
    "rolled-back": (LIVE, status("RolledBack"), None),
    "failed": (LIVE, status("Failed"), None),
    "superseded": (LIVE, status("Superseded"), None),
    "pending": (LIVE, status("Pending"), None),
    "approved": (LIVE, status("Approved"), None),
    "persisted-in-the-template": (LIVE, status(persist="template"), None),
    "no-live-migration-status": (LIVE, status(persist=None), None),
    "rightsizing": ({**LIVE, "action": "Rightsizing"}, status(), None),
    "target-kind-unknown": (LIVE, status(target={"kind": "Job", "namespace": NS,
                                                 "name": "web"}), None),
    "target-without-namespace": (LIVE, status(target={"kind": "Deployment", "name": "web"}),
                                 None),
    "nothing-set": (LIVE, status(containers={}), None),
    "filtered": (LIVE, status(containers={
        "app": {"requests": {"cpu": "200m", "nvidia.com/gpu": "1", "memory": 5},
                "limits": {"memory": "1Gi"}, "claims": {"x": "y"}},
        "side": "not-a-map", "log": {"requests": {"cpu": ""}}}),
        {"app": {"requests": {"cpu": "200m"}, "limits": {"memory": "1Gi"}}}),
}


@pytest.mark.parametrize("case", CONTRIBUTIONS)
def test_contribution(case: str) -> None:
    spec, st, values = CONTRIBUTIONS[case]
    got = admission.contribution("WorkloadRecommendation", "rec-1", spec, st,
                                 created_at="2025-01-01T00:00:00Z")
    if values is None:
        assert got is None
    else:
        assert got == admission.Contribution("rec-1", WEB, values,
                                             ("2025-01-01T00:00:00Z", "rec-1"))


def test_no_contribution_from_a_deleted_record_or_a_node_group() -> None:
    assert admission.contribution("WorkloadRecommendation", "rec-1", LIVE, status(),
                                  deleting=True) is None
    assert admission.contribution("NodeGroupRecommendation", "rec-1", LIVE, status()) is None


def test_merge_newer_wins_a_shared_field_and_fields_combine() -> None:
    old = admission.Contribution("rec-1", WEB, {"app": {"requests": {"cpu": "200m",
                                                                     "memory": "1Gi"}}},
                                 ("2025-01-01T00:00:00Z", "rec-1"))
    new = admission.Contribution("rec-2", WEB, {"app": {"requests": {"cpu": "300m"},
                                                        "limits": {"memory": "2Gi"}},
                                                "side": {"requests": {"cpu": "10m"}}},
                                 ("2025-01-02T00:00:00Z", "rec-2"))
    want = {"app": {"requests": {"cpu": "300m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
            "side": {"requests": {"cpu": "10m"}}}
    assert admission.merge([new, old]) == want
    assert admission.merge([old, new]) == want


# --------------------------------------------------------------------------- property


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.sampled_from(["", "app", "100m", "1Gi", "0", "-1", "1e3", "x/y~z", HASH,
                       "ReplicaSet", "apps/v1", "requests", "limits", "cpu", "memory"]),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(["name", "resources", "requests", "limits", "cpu",
                                       "memory", "labels", "ownerReferences", "kind",
                                       "controller", "containers", "pod-template-hash",
                                       "initContainers", "apiVersion"]), inner, max_size=5),
    max_leaves=20)
QUANTITY_TEXT = st.sampled_from(["100m", "0.1", "2", "1Gi", "1024Mi", "0", "junk", "1e3"])
CONTAINER = st.fixed_dictionaries({"name": st.sampled_from(["app", "side"])}, optional={
    "resources": st.one_of(JSON_VALUES, st.fixed_dictionaries({}, optional={
        "requests": st.one_of(JSON_VALUES, st.dictionaries(
            st.sampled_from(["cpu", "memory"]), QUANTITY_TEXT)),
        "limits": st.one_of(JSON_VALUES, st.dictionaries(
            st.sampled_from(["cpu", "memory"]), QUANTITY_TEXT))}))})


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(containers=st.lists(st.one_of(CONTAINER, CONTAINER, CONTAINER, JSON_VALUES),
                          max_size=3),
       meta=st.one_of(JSON_VALUES, st.just(pod()["metadata"]), st.just(pod()["metadata"])),
       extra=st.dictionaries(st.sampled_from(["initContainers", "resources"]), JSON_VALUES,
                             max_size=2),
       values=st.dictionaries(st.sampled_from(["app", "side"]), st.dictionaries(
           st.sampled_from(["requests", "limits"]), st.dictionaries(
               st.sampled_from(["cpu", "memory"]), QUANTITY_TEXT, min_size=1),
           min_size=1, max_size=2), min_size=1, max_size=2))
def test_any_pod_gets_a_well_formed_allowed_answer(containers: list[Any], meta: Any,
                                                   extra: dict[str, Any],
                                                   values: dict[str, Any]) -> None:
    obj = {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
           "spec": {"containers": containers, **extra}}
    out = admission.review(review_of(obj), index(values))
    assert out.status == 200 and out.body is not None
    assert out.body["response"]["uid"] == "uid-1"
    assert out.body["response"]["allowed"] is True
    if out.result == admission.PATCHED:
        patched = apply_patch(obj, ops_of(out))
        assert admission.qos_class(patched["spec"]) == admission.qos_class(obj["spec"])


def test_fallback_answers_allowed() -> None:
    doc = review_of(pod())
    assert admission.fallback(doc).body == {
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "response": {"uid": "uid-1", "allowed": True}}
    assert admission.fallback(["x"]).body["response"] == {  # type: ignore[index]
        "uid": "", "allowed": True}
