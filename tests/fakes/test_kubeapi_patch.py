"""Patches and the scale/resize subresources of the test API server, via the official client.

Cases:
- JSON Patch (list body): add/replace/remove applied; a failing `test` op -> 422 Invalid with
  the real server's generic message and nothing stored; a path that does not exist -> 422;
- guarded JSON Patch with a `test` on metadata.resourceVersion gives optimistic concurrency;
- merge patch (`_content_type`): `null` deletes, lists replaced;
- strategic merge patch (the client's default for dict bodies): containers merged by name,
  `$patch: delete` removes one;
- a strategic merge patch on a custom resource -> 415 UnsupportedMediaType;
- deployments/statefulsets scale: get (autoscaling/v1 Scale with selector), replace, patch,
  stale resourceVersion -> 409, negative replicas -> 422;
- pods/resize: only resources change, generation moves, containerStatuses keep the old
  values in the answer and follow once the simulated kubelet has applied them;
  a QoS class change -> 422; changing anything else -> 422; a plain pod update of
  resources -> 422 (must go through resize).
"""

from __future__ import annotations

from typing import Any

import kubernetes
import pytest

from tests.fakes.kubeapi.handle import KubeApi, status_body, typed_api

ApiException = kubernetes.client.exceptions.ApiException


def _seed_web(k: KubeApi, replicas: int = 2) -> Any:
    k.seed(k.deployment("web", replicas=replicas, containers=[
        k.container("app", cpu="500m", memory="256Mi", cpu_limit="1", memory_limit="512Mi"),
        k.container("sidecar", cpu="50m", memory="32Mi")]))
    return typed_api(kubernetes.client.AppsV1Api, k.api_client())


def test_json_patch_applies_operations(kubeapi: KubeApi) -> None:
    apps = _seed_web(kubeapi)
    d = apps.patch_namespaced_deployment("web", "default", [
        {"op": "replace", "path": "/spec/replicas", "value": 4},
        {"op": "add", "path": "/metadata/annotations", "value": {"a/b": "1"}},
        {"op": "remove", "path": "/spec/template/spec/containers/1/resources/requests/memory"},
    ])
    assert d.spec.replicas == 4
    assert d.metadata.annotations == {"a/b": "1"}
    assert d.spec.template.spec.containers[1].resources.requests == {"cpu": "50m"}
    assert kubeapi.requests.count("patch", "deployments", "") == 1


def test_json_patch_failed_test_is_422_and_changes_nothing(kubeapi: KubeApi) -> None:
    apps = _seed_web(kubeapi)
    before = kubeapi.get("apps/v1", "Deployment", "web")
    with pytest.raises(ApiException) as e:
        apps.patch_namespaced_deployment("web", "default", [
            {"op": "replace", "path": "/spec/replicas", "value": 9},
            {"op": "test", "path": "/spec/template/spec/containers/0/resources/requests/cpu",
             "value": "999m"},
        ])
    assert e.value.status == 422
    assert status_body(e.value) == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "the server rejected our request due to an error in our request",
        "reason": "Invalid", "details": {}, "code": 422}
    assert kubeapi.get("apps/v1", "Deployment", "web") == before
    with pytest.raises(ApiException) as e:
        apps.patch_namespaced_deployment("web", "default", [
            {"op": "remove", "path": "/spec/nothing/here"}])
    assert e.value.status == 422


def test_json_patch_resource_version_guard(kubeapi: KubeApi) -> None:
    apps = _seed_web(kubeapi)
    rv = apps.read_namespaced_deployment("web", "default").metadata.resource_version
    guard = [{"op": "test", "path": "/metadata/resourceVersion", "value": rv},
             {"op": "replace", "path": "/spec/replicas", "value": 3}]
    assert apps.patch_namespaced_deployment("web", "default", guard).spec.replicas == 3
    with pytest.raises(ApiException) as e:
        apps.patch_namespaced_deployment("web", "default", guard)
    assert e.value.status == 422
    # A resourceVersion inside a merge patch is a precondition too.
    with pytest.raises(ApiException) as e:
        apps.patch_namespaced_deployment(
            "web", "default", {"metadata": {"resourceVersion": rv}, "spec": {"replicas": 1}})
    assert e.value.status == 409 and status_body(e.value)["reason"] == "Conflict"


def test_merge_patch_replaces_lists_and_deletes_nulls(kubeapi: KubeApi) -> None:
    apps = _seed_web(kubeapi)
    d = apps.patch_namespaced_deployment(
        "web", "default",
        {"metadata": {"labels": {"app": None, "x": "y"}},
         "spec": {"template": {"spec": {"containers": [{"name": "only", "image": "i:2"}]}}}},
        _content_type="application/merge-patch+json")
    assert d.metadata.labels == {"x": "y"}
    assert [c.name for c in d.spec.template.spec.containers] == ["only"]
    assert kubeapi.requests.log[-1].content_type == "application/merge-patch+json"


def test_strategic_merge_patch_merges_containers_by_name(kubeapi: KubeApi) -> None:
    apps = _seed_web(kubeapi)
    d = apps.patch_namespaced_deployment("web", "default", {"spec": {"template": {"spec": {
        "containers": [{"name": "sidecar", "resources": {"requests": {"cpu": "20m"}}}]}}}})
    containers = {c.name: c for c in d.spec.template.spec.containers}
    assert set(containers) == {"app", "sidecar"}
    assert containers["sidecar"].resources.requests == {"cpu": "20m", "memory": "32Mi"}
    assert containers["app"].resources.requests == {"cpu": "500m", "memory": "256Mi"}
    assert kubeapi.requests.log[-1].content_type == "application/strategic-merge-patch+json"
    d = apps.patch_namespaced_deployment("web", "default", {"spec": {"template": {"spec": {
        "containers": [{"name": "sidecar", "$patch": "delete"}]}}}})
    assert [c.name for c in d.spec.template.spec.containers] == ["app"]


def test_strategic_merge_patch_on_custom_resource_is_415(kubeapi: KubeApi) -> None:
    client = kubeapi.api_client()
    typed_api(kubernetes.client.ApiextensionsV1Api, client).create_custom_resource_definition({
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
                 "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                 "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
                     "openAPIV3Schema": {"type": "object",
                                         "x-kubernetes-preserve-unknown-fields": True}}}]}})
    custom = typed_api(kubernetes.client.CustomObjectsApi, client)
    custom.create_namespaced_custom_object("example.com", "v1", "default", "widgets", {
        "apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
        "spec": {"size": 1}})
    with pytest.raises(ApiException) as e:
        custom.patch_namespaced_custom_object(
            "example.com", "v1", "default", "widgets", "w", {"spec": {"size": 2}},
            _content_type="application/strategic-merge-patch+json")
    assert e.value.status == 415 and status_body(e.value)["reason"] == "UnsupportedMediaType"
    w = custom.patch_namespaced_custom_object(
        "example.com", "v1", "default", "widgets", "w", {"spec": {"size": 2}})
    assert w["spec"]["size"] == 2


def test_scale_subresource(kubeapi: KubeApi) -> None:
    apps = _seed_web(kubeapi)
    scale = apps.read_namespaced_deployment_scale("web", "default")
    assert scale.spec.replicas == 2 and scale.status.selector == "app=web"
    scale.spec.replicas = 5
    assert apps.replace_namespaced_deployment_scale("web", "default", scale).spec.replicas == 5
    d = kubeapi.get("apps/v1", "Deployment", "web")
    assert d["spec"]["replicas"] == 5 and d["metadata"]["generation"] == 2
    with pytest.raises(ApiException) as e:
        apps.replace_namespaced_deployment_scale("web", "default", scale)  # stale rv
    assert e.value.status == 409
    patched = apps.patch_namespaced_deployment_scale("web", "default", {"spec": {"replicas": 1}})
    assert patched.spec.replicas == 1
    with pytest.raises(ApiException) as e:
        apps.patch_namespaced_deployment_scale("web", "default", {"spec": {"replicas": -1}})
    assert e.value.status == 422
    assert status_body(e.value)["details"]["causes"][0]["field"] == "spec.replicas"
    kubeapi.seed(kubeapi.deployment("db", kind="StatefulSet", replicas=3))
    assert apps.read_namespaced_stateful_set_scale("db", "default").spec.replicas == 3
    assert kubeapi.requests.count(subresource="scale") == 6


def _seed_pod(k: KubeApi) -> Any:
    k.seed(k.pod("p", labels={"app": "web"}, containers=[
        k.container("app", cpu="500m", memory="256Mi", cpu_limit="1", memory_limit="512Mi")]))
    return typed_api(kubernetes.client.CoreV1Api, k.api_client())


def test_resize_changes_resources_in_place(kubeapi: KubeApi) -> None:
    core = _seed_pod(kubeapi)
    before = kubeapi.get("v1", "Pod", "p")
    pod = core.patch_namespaced_pod_resize("p", "default", {"spec": {"containers": [
        {"name": "app", "resources": {"requests": {"cpu": "250m"}, "limits": {"cpu": "500m"}}}]}})
    res = pod.spec.containers[0].resources
    assert res.requests == {"cpu": "250m", "memory": "256Mi"}
    assert res.limits == {"cpu": "500m", "memory": "512Mi"}
    # The API server records the wish; the kubelet applies it afterwards.
    assert pod.status.container_statuses[0].resources.requests["cpu"] == "500m"
    assert kubeapi.kubelet.settled()
    applied = kubeapi.get("v1", "Pod", "p")["status"]["containerStatuses"][0]["resources"]
    assert applied["requests"]["cpu"] == "250m"
    assert pod.metadata.uid == before["metadata"]["uid"]
    assert pod.metadata.generation == before["metadata"]["generation"] + 1
    assert kubeapi.requests.count("patch", "pods", "resize") == 1


@pytest.mark.parametrize(
    ("patch", "field", "message"),
    [
        # Requests raised to equal the limits: Burstable would become Guaranteed.
        ({"spec": {"containers": [{"name": "app", "resources": {
            "requests": {"cpu": "1", "memory": "512Mi"}}}]}},
         "spec", "Pod QOS Class may not change as a result of resizing"),
        ({"spec": {"containers": [{"name": "app", "image": "other:2"}]}},
         "spec", "Forbidden: only cpu and memory resources are mutable"),
    ],
)
def test_resize_rejections(kubeapi: KubeApi, patch: Any, field: str, message: str) -> None:
    core = _seed_pod(kubeapi)
    with pytest.raises(ApiException) as e:
        core.patch_namespaced_pod_resize("p", "default", patch)
    assert e.value.status == 422
    status = status_body(e.value)
    assert status["reason"] == "Invalid" and status["details"]["kind"] == "Pod"
    cause = status["details"]["causes"][0]
    assert cause["field"] == field and message in cause["message"]
    assert kubeapi.get("v1", "Pod", "p")["spec"]["containers"][0]["resources"]["requests"][
        "cpu"] == "500m"


def test_plain_pod_update_cannot_change_resources(kubeapi: KubeApi) -> None:
    core = _seed_pod(kubeapi)
    with pytest.raises(ApiException) as e:
        core.patch_namespaced_pod("p", "default", {"spec": {"containers": [
            {"name": "app", "resources": {"requests": {"cpu": "250m"}}}]}})
    assert e.value.status == 422
    assert "pod updates may not change fields" in status_body(e.value)["message"]
    # Labels are fine.
    assert core.patch_namespaced_pod("p", "default", {"metadata": {"labels": {"x": "1"}}})
