"""CustomResourceDefinitions and custom resources on the test API server, via the client.

Cases:
- creating a CRD makes its routes and discovery appear (Established condition set);
  deleting it removes them (404) along with its objects;
- namespaced and cluster-scoped custom resources: create/get/list/patch/delete through
  CustomObjectsApi; 404 and 409 messages name `<plural>.<group>`;
- openAPIV3Schema validation -> 422 Invalid with `details.causes` for: type, required, enum,
  minimum/maximum, pattern, maxLength, minLength, x-kubernetes-int-or-string,
  additionalProperties schemas, list-type map duplicates, date-time format, CEL
  x-kubernetes-validations; several errors reported together;
- unknown fields are pruned (not rejected) unless x-kubernetes-preserve-unknown-fields;
  `default` values are filled in;
- the status subresource: main writes ignore status, /status writes ignore spec and do not
  bump generation; an update without resourceVersion -> 422;
- finalizers on custom resources; server-side apply (apply-patch+yaml) creates then merges.
"""

from __future__ import annotations

import copy
from typing import Any

import kubernetes
import pytest

from tests.fakes.kubeapi.handle import KubeApi, status_body, typed_api

ApiException = kubernetes.client.exceptions.ApiException


GROUP, VERSION = "dakr.devzero.io", "v1alpha1"
QUANTITY = {"anyOf": [{"type": "integer"}, {"type": "string"}],
            "x-kubernetes-int-or-string": True,
            "pattern": r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE])?$"}
SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["spec"],
    "properties": {
        "apiVersion": {"type": "string"}, "kind": {"type": "string"},
        "metadata": {"type": "object"},
        "spec": {
            "type": "object",
            "required": ["recommendationId", "action", "targetRef"],
            "properties": {
                "recommendationId": {"type": "string", "minLength": 1, "maxLength": 20,
                                     "pattern": "^[a-z0-9-]*$"},
                "action": {"type": "string",
                           "enum": ["Rightsizing", "ReplicaScaling", "LiveMigration"]},
                "targetRef": {"type": "object", "required": ["name"],
                              "properties": {"kind": {"type": "string", "default": "Deployment"},
                                             "name": {"type": "string"}}},
                "containers": {
                    "type": "array", "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["name"],
                    "items": {"type": "object", "required": ["name"], "properties": {
                        "name": {"type": "string"},
                        "resources": {"type": "object", "properties": {
                            "requests": {"type": "object", "additionalProperties": QUANTITY}}}}}},
                "replicas": {"type": "integer", "minimum": 0},
                "hpa": {"type": "object",
                        "properties": {"minReplicas": {"type": "integer", "minimum": 1},
                                       "maxReplicas": {"type": "integer"}},
                        "x-kubernetes-validations": [{
                            "rule": "!has(self.minReplicas) || !has(self.maxReplicas) || "
                                    "self.maxReplicas >= self.minReplicas",
                            "message": "hpa.maxReplicas must be greater than or equal to "
                                       "hpa.minReplicas"}]},
                "confidence": {"type": "number", "minimum": 0, "maximum": 1},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "appliedAt": {"type": "string", "format": "date-time"},
            },
        },
        "status": {"type": "object", "properties": {"phase": {"type": "string"}}},
    },
}


def _crd(plural: str, kind: str, scope: str = "Namespaced",
         schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {"group": GROUP, "scope": scope,
                 "names": {"plural": plural, "singular": kind.lower(), "kind": kind,
                           "shortNames": ["wrec"]},
                 "versions": [{"name": VERSION, "served": True, "storage": True,
                               "subresources": {"status": {}},
                               "schema": {"openAPIV3Schema": schema or SCHEMA}}]},
    }


def _rec(name: str = "rec-1", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"recommendationId": name, "action": "Rightsizing",
                            "targetRef": {"name": "web"}}
    body.update(spec)
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "WorkloadRecommendation",
            "metadata": {"name": name}, "spec": body}


@pytest.fixture
def custom(kubeapi: KubeApi) -> Any:
    client = kubeapi.api_client()
    typed_api(kubernetes.client.ApiextensionsV1Api, client).create_custom_resource_definition(
        _crd("workloadrecommendations", "WorkloadRecommendation"))
    return typed_api(kubernetes.client.CustomObjectsApi, client)


def _create(custom: Any, body: dict[str, Any]) -> dict[str, Any]:
    return dict(custom.create_namespaced_custom_object(
        GROUP, VERSION, "default", "workloadrecommendations", body))


def test_crd_routes_appear_and_disappear(kubeapi: KubeApi) -> None:
    client = kubeapi.api_client()
    ext = typed_api(kubernetes.client.ApiextensionsV1Api, client)
    custom = typed_api(kubernetes.client.CustomObjectsApi, client)
    with pytest.raises(ApiException) as e:
        custom.list_namespaced_custom_object(GROUP, VERSION, "default",
                                             "workloadrecommendations")
    assert e.value.status == 404
    crd = ext.create_custom_resource_definition(
        _crd("workloadrecommendations", "WorkloadRecommendation"))
    assert crd.metadata.name == f"workloadrecommendations.{GROUP}"
    established = ext.read_custom_resource_definition(crd.metadata.name)
    assert {c.type: c.status for c in established.status.conditions}["Established"] == "True"
    resources = custom.get_api_resources(GROUP, VERSION)
    assert [r.name for r in resources.resources] == [
        "workloadrecommendations", "workloadrecommendations/status"]
    assert resources.resources[0].short_names == ["wrec"]
    _create(custom, _rec())
    assert len(custom.list_namespaced_custom_object(
        GROUP, VERSION, "default", "workloadrecommendations")["items"]) == 1
    ext.delete_custom_resource_definition(crd.metadata.name)
    with pytest.raises(ApiException) as e:
        custom.list_namespaced_custom_object(GROUP, VERSION, "default",
                                             "workloadrecommendations")
    assert e.value.status == 404


def test_crd_itself_is_validated(kubeapi: KubeApi) -> None:
    ext = typed_api(kubernetes.client.ApiextensionsV1Api, kubeapi.api_client())
    bad = _crd("things", "Thing")
    bad["metadata"]["name"] = "wrong.name"
    with pytest.raises(ApiException) as e:
        ext.create_custom_resource_definition(bad)
    assert e.value.status == 422
    assert status_body(e.value)["details"]["causes"][0]["field"] == "metadata.name"


def test_namespaced_and_cluster_scoped_objects(kubeapi: KubeApi, custom: Any) -> None:
    created = _create(custom, _rec())
    assert created["metadata"]["generation"] == 1 and created["metadata"]["uid"]
    assert created["spec"]["targetRef"]["kind"] == "Deployment"  # defaulted
    with pytest.raises(ApiException) as e:
        _create(custom, _rec())
    assert e.value.status == 409
    assert status_body(e.value)["message"] == (
        f'workloadrecommendations.{GROUP} "rec-1" already exists')
    with pytest.raises(ApiException) as e:
        custom.get_namespaced_custom_object(GROUP, VERSION, "default",
                                            "workloadrecommendations", "nope")
    assert status_body(e.value)["message"] == f'workloadrecommendations.{GROUP} "nope" not found'
    ext = typed_api(kubernetes.client.ApiextensionsV1Api, kubeapi.api_client())
    ext.create_custom_resource_definition(
        _crd("nodegrouprecommendations", "NodeGroupRecommendation", scope="Cluster",
             schema={"type": "object", "properties": {"spec": {
                 "type": "object", "properties": {"targetNodeCount": {"type": "integer"}}}}}))
    ng = custom.create_cluster_custom_object(GROUP, VERSION, "nodegrouprecommendations", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "NodeGroupRecommendation",
        "metadata": {"name": "ng-1"}, "spec": {"targetNodeCount": 3}})
    assert "namespace" not in ng["metadata"]
    patched = custom.patch_cluster_custom_object(
        GROUP, VERSION, "nodegrouprecommendations", "ng-1", {"spec": {"targetNodeCount": 2}})
    assert patched["spec"]["targetNodeCount"] == 2 and patched["metadata"]["generation"] == 2
    listed = custom.list_cluster_custom_object(GROUP, VERSION, "nodegrouprecommendations")
    assert [i["metadata"]["name"] for i in listed["items"]] == ["ng-1"]
    custom.delete_cluster_custom_object(GROUP, VERSION, "nodegrouprecommendations", "ng-1")
    assert not kubeapi.exists(f"{GROUP}/{VERSION}", "NodeGroupRecommendation", "ng-1", "")


@pytest.mark.parametrize(
    ("change", "reason", "field", "message"),
    [
        (lambda s: s.pop("action"), "FieldValueRequired", "spec.action", "Required value"),
        (lambda s: s.update(action="Explode"), "FieldValueNotSupported", "spec.action",
         'Unsupported value: "Explode": supported values: "Rightsizing", "ReplicaScaling", '
         '"LiveMigration"'),
        (lambda s: s.update(replicas="three"), "FieldValueInvalid", "spec.replicas",
         'Invalid value: "string": spec.replicas in body must be of type integer: "string"'),
        (lambda s: s.update(replicas=-1), "FieldValueInvalid", "spec.replicas",
         "Invalid value: -1: spec.replicas in body should be greater than or equal to 0"),
        (lambda s: s.update(confidence=1.5), "FieldValueInvalid", "spec.confidence",
         "Invalid value: 1.5: spec.confidence in body should be less than or equal to 1"),
        (lambda s: s.update(recommendationId="Has Spaces"), "FieldValueInvalid",
         "spec.recommendationId",
         "Invalid value: \"Has Spaces\": spec.recommendationId in body should match "
         "'^[a-z0-9-]*$'"),
        (lambda s: s.update(recommendationId="x" * 21), "FieldValueTooLong",
         "spec.recommendationId", "Too long: may not be more than 20 bytes"),
        (lambda s: s.update(recommendationId=""), "FieldValueInvalid", "spec.recommendationId",
         'Invalid value: "": spec.recommendationId in body should be at least 1 chars long'),
        (lambda s: s.update(containers=[{"name": "a", "resources": {"requests": {
            "cpu": True}}}]), "FieldValueInvalid", "spec.containers[0].resources.requests.cpu",
         'Invalid value: "boolean": spec.containers[0].resources.requests.cpu in body must '
         'be of type integer,string: "boolean"'),
        (lambda s: s.update(containers=[{"name": "a", "resources": {"requests": {
            "cpu": "lots"}}}]), "FieldValueInvalid", "spec.containers[0].resources.requests.cpu",
         'Invalid value: "lots": spec.containers[0].resources.requests.cpu in body should '
         "match"),
        (lambda s: s.update(containers=[{"name": "a"}, {"name": "a"}]), "FieldValueDuplicate",
         "spec.containers[1]", 'Duplicate value: {"name":"a"}'),
        (lambda s: s.update(hpa={"minReplicas": 3, "maxReplicas": 2}), "FieldValueInvalid",
         "spec.hpa", 'Invalid value: "object": hpa.maxReplicas must be greater than or equal '
         "to hpa.minReplicas"),
        (lambda s: s.update(appliedAt="yesterday"), "FieldValueInvalid", "spec.appliedAt",
         'Invalid value: "yesterday": spec.appliedAt in body must be of type date-time'),
    ],
)
def test_schema_violations_are_422(
    custom: Any, change: Any, reason: str, field: str, message: str
) -> None:
    body = _rec()
    change(body["spec"])
    with pytest.raises(ApiException) as e:
        _create(custom, body)
    assert e.value.status == 422
    status = status_body(e.value)
    assert status["reason"] == "Invalid"
    assert status["details"]["kind"] == "WorkloadRecommendation"
    assert status["details"]["group"] == GROUP
    causes = status["details"]["causes"]
    assert len(causes) == 1, causes
    assert causes[0]["reason"] == reason and causes[0]["field"] == field
    assert causes[0]["message"].startswith(message), causes[0]["message"]
    assert status["message"].startswith(
        f'WorkloadRecommendation.{GROUP} "rec-1" is invalid: {field}: ')


def test_valid_quantities_and_multiple_errors(custom: Any) -> None:
    ok = _rec(containers=[{"name": "a", "resources": {"requests": {"cpu": "250m",
                                                                   "memory": 64}}}],
              hpa={"minReplicas": 2, "maxReplicas": 4}, appliedAt="2025-01-02T03:04:05Z")
    assert _create(custom, ok)["spec"]["containers"][0]["resources"]["requests"]["memory"] == 64
    bad = _rec("rec-2", replicas=-1)
    del bad["spec"]["targetRef"]
    with pytest.raises(ApiException) as e:
        _create(custom, bad)
    status = status_body(e.value)
    assert {c["field"] for c in status["details"]["causes"]} == {"spec.targetRef",
                                                                 "spec.replicas"}
    assert status["message"].startswith(f'WorkloadRecommendation.{GROUP} "rec-2" is invalid: [')


def test_unknown_fields_pruned_unless_preserved(custom: Any) -> None:
    body = _rec(bogus=1, extra={"anything": {"goes": [1, 2]}})
    body["spec"]["targetRef"]["unknown"] = "x"
    body["topLevelJunk"] = True
    created = _create(custom, body)
    assert "bogus" not in created["spec"] and "topLevelJunk" not in created
    assert "unknown" not in created["spec"]["targetRef"]
    assert created["spec"]["extra"] == {"anything": {"goes": [1, 2]}}


def test_status_subresource_semantics(custom: Any) -> None:
    body = _rec()
    body["status"] = {"phase": "Applied"}
    created = _create(custom, body)
    assert "status" not in created  # dropped on create, as with a status subresource
    args = (GROUP, VERSION, "default", "workloadrecommendations", "rec-1")
    after = custom.patch_namespaced_custom_object_status(
        *args, {"status": {"phase": "Approved"}, "spec": {"replicas": 5}})
    assert after["status"]["phase"] == "Approved" and "replicas" not in after["spec"]
    assert after["metadata"]["generation"] == 1
    after = custom.patch_namespaced_custom_object(
        *args, {"status": {"phase": "Failed"}, "spec": {"replicas": 5}})
    assert after["status"]["phase"] == "Approved" and after["spec"]["replicas"] == 5
    assert after["metadata"]["generation"] == 2
    got = custom.get_namespaced_custom_object_status(*args)
    assert got["status"]["phase"] == "Approved"
    # Replace without a resourceVersion is refused for custom resources.
    unconditional = copy.deepcopy(got)
    del unconditional["metadata"]["resourceVersion"]
    with pytest.raises(ApiException) as e:
        custom.replace_namespaced_custom_object(*args, unconditional)
    assert e.value.status == 422
    stale = copy.deepcopy(got)
    custom.replace_namespaced_custom_object(*args, got)  # no-op write keeps the rv
    stale["spec"]["replicas"] = 1
    stale["metadata"]["resourceVersion"] = "1"
    with pytest.raises(ApiException) as e:
        custom.replace_namespaced_custom_object(*args, stale)
    assert e.value.status == 409
    assert status_body(e.value)["message"].startswith(
        f'Operation cannot be fulfilled on workloadrecommendations.{GROUP} "rec-1": ')


def test_custom_resource_finalizers(kubeapi: KubeApi, custom: Any) -> None:
    body = _rec()
    body["metadata"]["finalizers"] = ["dakr.devzero.io/rollback"]
    _create(custom, body)
    args = (GROUP, VERSION, "default", "workloadrecommendations", "rec-1")
    custom.delete_namespaced_custom_object(*args)
    held = custom.get_namespaced_custom_object(*args)
    assert held["metadata"]["deletionTimestamp"]
    custom.patch_namespaced_custom_object(*args, {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as e:
        custom.get_namespaced_custom_object(*args)
    assert e.value.status == 404


def test_server_side_apply(custom: Any, kubeapi: KubeApi) -> None:
    args = (GROUP, VERSION, "default", "workloadrecommendations", "rec-1")
    # The first apply creates (201, which this client version returns as None).
    custom.patch_namespaced_custom_object(
        *args, _rec(), field_manager="dakr", _content_type="application/apply-patch+yaml")
    assert custom.get_namespaced_custom_object(*args)["spec"]["action"] == "Rightsizing"
    assert kubeapi.requests.log[-2].content_type == "application/apply-patch+yaml"
    again = custom.patch_namespaced_custom_object(
        *args, _rec(replicas=3), field_manager="dakr",
        _content_type="application/apply-patch+yaml")
    assert again["spec"]["replicas"] == 3 and again["metadata"]["generation"] == 2
    with pytest.raises(ApiException) as e:
        custom.patch_namespaced_custom_object(
            *args, _rec(), _content_type="application/apply-patch+yaml")
    assert e.value.status == 422
