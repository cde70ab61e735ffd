"""The test API server's core semantics, proved through the official kubernetes client.

Cases:
- kubeconfig written by the fixture loads with `load_kube_config`; discovery (/api, /apis,
  group versions, /version) answers what the client and kubectl read;
- create: uid/resourceVersion/generation/creationTimestamp set, status cleared, 409
  AlreadyExists with the real message and details, 404 for a missing namespace, 422 for an
  invalid name, requests above limits, negative replicas;
- get/delete of a missing object: 404 NotFound `deployments.apps "x" not found`;
- update: stale resourceVersion -> 409 Conflict with the real message; generation moves only
  on spec changes; main-resource writes ignore status, /status writes ignore spec;
- workload status converges after a spec write (stand-in controllers), or stays put when
  controllers are off;
- resourceVersion is one cluster-wide counter;
- list: label selectors (=, !=, in, notin, exists, !key), field selectors (metadata.name,
  spec.nodeName, status.phase), across namespaces, limit/continue (resumed after the
  last key served, so a deletion between pages skips nothing; a token older than
  compaction -> 410 Expired), bad selector -> 400;
- delete: finalizers hold the object with a deletionTimestamp, removing the last finalizer
  deletes it; preconditions.uid mismatch -> 409; pods return the object, deployments a Status;
- dryRun=All on create/update/patch/delete stores nothing and leaves the rv alone;
- namespaces delete their contents; nodes, events, leases, HPAs, PDBs round-trip.
"""

from __future__ import annotations

from typing import Any

import kubernetes
import pytest

from tests.fakes.kubeapi.handle import KubeApi, status_body, typed_api

ApiException = kubernetes.client.exceptions.ApiException


def _apps(k: KubeApi) -> Any:
    return typed_api(kubernetes.client.AppsV1Api, k.api_client())


def _core(k: KubeApi) -> Any:
    return typed_api(kubernetes.client.CoreV1Api, k.api_client())


def _new_deployment(k: KubeApi, name: str = "web", **kw: Any) -> dict[str, Any]:
    d = k.deployment(name, **kw)
    del d["status"]
    return d


def test_kubeconfig_and_discovery(kubeapi: KubeApi) -> None:
    client = kubeapi.api_client()
    versions = typed_api(kubernetes.client.CoreApi, client).get_api_versions()
    assert versions.versions == ["v1"]
    apis = typed_api(kubernetes.client.ApisApi, client)
    groups = {g.name: g for g in apis.get_api_versions().groups}
    assert {"apps", "autoscaling", "policy", "coordination.k8s.io",
            "apiextensions.k8s.io"} <= set(groups)
    assert groups["autoscaling"].preferred_version.version == "v2"
    res = typed_api(kubernetes.client.AppsV1Api, client).get_api_resources()
    names = {r.name for r in res.resources}
    assert {"deployments", "deployments/scale", "deployments/status", "statefulsets",
            "daemonsets", "replicasets"} <= names
    core = typed_api(kubernetes.client.CoreV1Api, client)
    core_names = {r.name for r in core.get_api_resources().resources}
    assert {"pods", "pods/eviction", "pods/resize", "nodes", "namespaces", "events"} <= core_names
    info = typed_api(kubernetes.client.VersionApi, client).get_code()
    assert info.major == "1"
    # The handle's kubeconfig is what production code loads.
    cfg = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=kubeapi.kubeconfig_path,
                                       client_configuration=cfg)
    assert cfg.host == kubeapi.url


def test_create_sets_metadata_and_conflicts_on_duplicates(kubeapi: KubeApi) -> None:
    apps = _apps(kubeapi)
    body = _new_deployment(kubeapi)
    body["status"] = {"replicas": 99}
    created = apps.create_namespaced_deployment("default", body)
    assert created.metadata.uid and created.metadata.creation_timestamp
    assert created.metadata.generation == 1
    assert int(created.metadata.resource_version) > 0
    assert created.status.replicas is None  # status is the controllers' to write
    with pytest.raises(ApiException) as e:
        apps.create_namespaced_deployment("default", body)
    assert e.value.status == 409
    assert status_body(e.value) == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'deployments.apps "web" already exists', "reason": "AlreadyExists",
        "details": {"name": "web", "group": "apps", "kind": "deployments"}, "code": 409}


def test_create_in_missing_namespace_is_404(kubeapi: KubeApi) -> None:
    with pytest.raises(ApiException) as e:
        _apps(kubeapi).create_namespaced_deployment(
            "nowhere", _new_deployment(kubeapi, namespace="nowhere"))
    assert e.value.status == 404
    assert status_body(e.value)["message"] == 'namespaces "nowhere" not found'


@pytest.mark.parametrize(
    ("mutate", "field", "reason", "message"),
    [
        (lambda d: d["metadata"].update(name="Bad_Name"), "metadata.name", "FieldValueInvalid",
         'Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain'),
        (lambda d: d["spec"].update(replicas=-1), "spec.replicas", "FieldValueInvalid",
         "Invalid value: -1: must be greater than or equal to 0"),
        (lambda d: d["spec"]["template"]["spec"]["containers"][0]["resources"].update(
            requests={"cpu": "2"}, limits={"cpu": "1"}),
         "spec.template.spec.containers[0].resources.requests", "FieldValueInvalid",
         'Invalid value: "2": must be less than or equal to cpu limit of 1'),
    ],
)
def test_create_invalid_is_422_with_causes(
    kubeapi: KubeApi, mutate: Any, field: str, reason: str, message: str
) -> None:
    body = _new_deployment(kubeapi)
    mutate(body)
    with pytest.raises(ApiException) as e:
        _apps(kubeapi).create_namespaced_deployment("default", body)
    assert e.value.status == 422
    status = status_body(e.value)
    assert status["reason"] == "Invalid"
    assert status["details"]["kind"] == "Deployment"
    (cause,) = status["details"]["causes"]
    assert cause["field"] == field and cause["reason"] == reason
    assert cause["message"].startswith(message)
    assert status["message"].startswith(f'Deployment.apps "{body["metadata"]["name"]}" is '
                                        f"invalid: {field}: ")
    assert not kubeapi.exists("apps/v1", "Deployment", body["metadata"]["name"])


def test_bad_quantity_is_400(kubeapi: KubeApi) -> None:
    body = _new_deployment(kubeapi)
    body["spec"]["template"]["spec"]["containers"][0]["resources"] = {
        "requests": {"cpu": "lots"}}
    with pytest.raises(ApiException) as e:
        _apps(kubeapi).create_namespaced_deployment("default", body)
    assert e.value.status == 400
    assert "quantities must match the regular expression" in status_body(e.value)["message"]


def test_get_and_delete_missing_are_404(kubeapi: KubeApi) -> None:
    apps = _apps(kubeapi)
    for call in (apps.read_namespaced_deployment, apps.delete_namespaced_deployment):
        with pytest.raises(ApiException) as e:
            call("x", "default")
        assert e.value.status == 404
        assert status_body(e.value)["message"] == 'deployments.apps "x" not found'
        assert status_body(e.value)["reason"] == "NotFound"
    with pytest.raises(ApiException) as e:
        _core(kubeapi).read_namespaced_pod("p", "default")
    assert status_body(e.value)["message"] == 'pods "p" not found'
    assert status_body(e.value)["details"] == {"name": "p", "kind": "pods"}


def test_update_with_stale_resource_version_conflicts(kubeapi: KubeApi) -> None:
    kubeapi.server.controllers = False  # no status writes racing the test's own updates
    apps = _apps(kubeapi)
    first = apps.create_namespaced_deployment("default", _new_deployment(kubeapi))
    first.spec.replicas = 2
    apps.replace_namespaced_deployment("web", "default", first)
    first.spec.replicas = 5  # still carries the old resourceVersion
    with pytest.raises(ApiException) as e:
        apps.replace_namespaced_deployment("web", "default", first)
    assert e.value.status == 409
    status = status_body(e.value)
    assert status["reason"] == "Conflict"
    assert status["message"] == (
        'Operation cannot be fulfilled on deployments.apps "web": the object has been '
        "modified; please apply your changes to the latest version and try again")
    assert status["details"] == {"name": "web", "group": "apps", "kind": "deployments"}
    assert kubeapi.get("apps/v1", "Deployment", "web")["spec"]["replicas"] == 2


def test_generation_moves_only_with_spec(kubeapi: KubeApi) -> None:
    apps = _apps(kubeapi)
    apps.create_namespaced_deployment("default", _new_deployment(kubeapi))
    d = apps.patch_namespaced_deployment("web", "default",
                                         {"metadata": {"labels": {"team": "a"}}})
    assert d.metadata.generation == 1
    d = apps.patch_namespaced_deployment("web", "default", {"spec": {"replicas": 4}})
    assert d.metadata.generation == 2
    d = apps.patch_namespaced_deployment_status(
        "web", "default", {"status": {"replicas": 4, "observedGeneration": 2}})
    assert d.metadata.generation == 2 and d.status.replicas == 4


def test_status_and_spec_are_isolated(kubeapi: KubeApi) -> None:
    kubeapi.server.controllers = False
    apps = _apps(kubeapi)
    apps.create_namespaced_deployment("default", _new_deployment(kubeapi))
    # A write to the main resource cannot change status...
    d = apps.patch_namespaced_deployment(
        "web", "default", {"spec": {"replicas": 3}, "status": {"replicas": 7}})
    assert d.spec.replicas == 3 and d.status.replicas is None
    # ...and a write to /status cannot change spec.
    d = apps.patch_namespaced_deployment_status(
        "web", "default", {"spec": {"replicas": 9}, "status": {"readyReplicas": 3}})
    assert d.spec.replicas == 3 and d.status.ready_replicas == 3
    assert apps.read_namespaced_deployment_status("web", "default").status.ready_replicas == 3


def test_workload_status_converges_like_a_controller(kubeapi: KubeApi) -> None:
    apps = _apps(kubeapi)
    apps.create_namespaced_deployment("default", _new_deployment(kubeapi))
    apps.patch_namespaced_deployment("web", "default", {"spec": {"replicas": 3}})
    d = apps.read_namespaced_deployment("web", "default")
    assert d.status.observed_generation == d.metadata.generation == 2
    assert d.status.ready_replicas == d.status.updated_replicas == 3
    assert {c.type: c.status for c in d.status.conditions} == {
        "Available": "True", "Progressing": "True"}
    kubeapi.server.controllers = False  # a rollout that never finishes
    apps.patch_namespaced_deployment("web", "default", {"spec": {"replicas": 5}})
    d = apps.read_namespaced_deployment("web", "default")
    assert d.metadata.generation == 3 and d.status.observed_generation == 2
    assert d.status.ready_replicas == 3


def test_resource_version_is_cluster_wide(kubeapi: KubeApi) -> None:
    core = _core(kubeapi)
    a = core.create_namespaced_config_map(
        "default", {"metadata": {"name": "a"}, "data": {"k": "v"}})
    b = _apps(kubeapi).create_namespaced_deployment("default", _new_deployment(kubeapi))
    assert int(b.metadata.resource_version) == int(a.metadata.resource_version) + 1


def test_label_and_field_selectors(kubeapi: KubeApi) -> None:
    kubeapi.seed(
        kubeapi.pod("a", labels={"app": "web", "tier": "fe"}, node="n1"),
        kubeapi.pod("b", labels={"app": "web"}, node="n2", phase="Pending"),
        kubeapi.pod("c", labels={"app": "db", "tier": "be"}, node="n1"),
        kubeapi.pod("d", namespace="other", labels={"app": "web"}, node="n1"),
    )
    core = _core(kubeapi)

    def names(**kw: Any) -> list[str]:
        return sorted(p.metadata.name for p in core.list_namespaced_pod("default", **kw).items)

    assert names(label_selector="app=web") == ["a", "b"]
    assert names(label_selector="app!=web") == ["c"]
    assert names(label_selector="app in (web, db),tier") == ["a", "c"]
    assert names(label_selector="app notin (web)") == ["c"]
    assert names(label_selector="!tier") == ["b"]
    assert names(field_selector="spec.nodeName=n1") == ["a", "c"]
    assert names(field_selector="status.phase=Pending") == ["b"]
    assert names(field_selector="metadata.name=c") == ["c"]
    everywhere = core.list_pod_for_all_namespaces(field_selector="spec.nodeName=n1")
    assert sorted((p.metadata.namespace, p.metadata.name) for p in everywhere.items) == [
        ("default", "a"), ("default", "c"), ("other", "d")]
    with pytest.raises(ApiException) as e:
        names(field_selector="spec.bogus=1")
    assert e.value.status == 400 and status_body(e.value)["reason"] == "BadRequest"


def test_list_pages_with_limit_and_continue(kubeapi: KubeApi) -> None:
    kubeapi.seed(*[kubeapi.pod(f"p{i}") for i in range(5)])
    core = _core(kubeapi)
    page = core.list_namespaced_pod("default", limit=2)
    seen = [p.metadata.name for p in page.items]
    while page.metadata._continue:
        page = core.list_namespaced_pod("default", limit=2, _continue=page.metadata._continue)
        seen += [p.metadata.name for p in page.items]
    assert seen == [f"p{i}" for i in range(5)]


def test_list_continue_resumes_after_the_last_key_and_expires_with_compaction(
        kubeapi: KubeApi) -> None:
    kubeapi.seed(*[kubeapi.pod(f"p{i}") for i in range(6)])
    core = _core(kubeapi)
    page = core.list_namespaced_pod("default", limit=2)
    assert page.metadata.remaining_item_count == 4
    core.delete_namespaced_pod("p0", "default")  # served already: shifts nothing
    core.delete_namespaced_pod("p3", "default")
    nxt = core.list_namespaced_pod("default", limit=2, _continue=page.metadata._continue)
    assert [p.metadata.name for p in nxt.items] == ["p2", "p4"]
    assert nxt.metadata.resource_version == page.metadata.resource_version
    kubeapi.store.compact()
    with pytest.raises(ApiException) as e:
        core.list_namespaced_pod("default", limit=2, _continue=nxt.metadata._continue)
    assert e.value.status == 410 and status_body(e.value)["reason"] == "Expired"


def test_finalizers_hold_deletion_until_removed(kubeapi: KubeApi) -> None:
    core = _core(kubeapi)
    core.create_namespaced_config_map(
        "default", {"metadata": {"name": "held", "finalizers": ["example.com/keep"]}})
    core.delete_namespaced_config_map("held", "default")
    held = core.read_namespaced_config_map("held", "default")
    assert held.metadata.deletion_timestamp is not None
    # New finalizers cannot be added once deletion started.
    with pytest.raises(ApiException) as e:
        core.patch_namespaced_config_map(
            "held", "default", {"metadata": {"finalizers": ["example.com/keep", "x/y"]}})
    assert e.value.status == 403
    core.patch_namespaced_config_map("held", "default", [
        {"op": "remove", "path": "/metadata/finalizers"}])
    with pytest.raises(ApiException) as e:
        core.read_namespaced_config_map("held", "default")
    assert e.value.status == 404


def test_delete_preconditions_and_return_shapes(kubeapi: KubeApi) -> None:
    apps = _apps(kubeapi)
    core = _core(kubeapi)
    created = apps.create_namespaced_deployment("default", _new_deployment(kubeapi))
    with pytest.raises(ApiException) as e:
        apps.delete_namespaced_deployment(
            "web", "default", body={"preconditions": {"uid": "not-the-uid"}})
    assert e.value.status == 409 and status_body(e.value)["reason"] == "Conflict"
    message = status_body(e.value)["message"]
    assert "Precondition failed: UID in precondition: not-the-uid" in message
    result = apps.delete_namespaced_deployment(
        "web", "default", body={"preconditions": {"uid": created.metadata.uid}})
    if not isinstance(result, dict):
        result = result.to_dict()
    assert result["status"] == "Success" and result["details"]["uid"] == created.metadata.uid
    assert result["details"]["kind"] == "deployments"
    kubeapi.seed(kubeapi.pod("p"))
    deleted = core.delete_namespaced_pod("p", "default")
    assert deleted.metadata.name == "p"  # pods answer with the deleted object


def test_dry_run_stores_nothing(kubeapi: KubeApi) -> None:
    apps = _apps(kubeapi)
    created = apps.create_namespaced_deployment("default", _new_deployment(kubeapi, "dry"),
                                                dry_run="All")
    assert created.metadata.name == "dry"
    assert not kubeapi.exists("apps/v1", "Deployment", "dry")
    apps.create_namespaced_deployment("default", _new_deployment(kubeapi))
    rv = kubeapi.store.rv
    patched = apps.patch_namespaced_deployment("web", "default", {"spec": {"replicas": 7}},
                                               dry_run="All")
    assert patched.spec.replicas == 7 and patched.metadata.generation == 2
    current = apps.read_namespaced_deployment("web", "default")
    current.spec.replicas = 8
    assert apps.replace_namespaced_deployment("web", "default", current,
                                              dry_run="All").spec.replicas == 8
    apps.delete_namespaced_deployment("web", "default", dry_run="All")
    stored = kubeapi.get("apps/v1", "Deployment", "web")
    assert stored["spec"]["replicas"] == 1 and stored["metadata"]["generation"] == 1
    assert kubeapi.store.rv == rv
    # Dry-run still validates.
    with pytest.raises(ApiException) as e:
        apps.patch_namespaced_deployment("web", "default", {"spec": {"replicas": -2}},
                                         dry_run="All")
    assert e.value.status == 422


def test_namespace_delete_removes_contents(kubeapi: KubeApi) -> None:
    core = _core(kubeapi)
    core.create_namespace({"metadata": {"name": "team"}})
    core.create_namespaced_config_map("team", {"metadata": {"name": "c"}})
    core.delete_namespace("team")
    assert not kubeapi.exists("v1", "ConfigMap", "c", "team")
    assert not kubeapi.exists("v1", "Namespace", "team", "")


def test_other_kinds_round_trip(kubeapi: KubeApi) -> None:
    client = kubeapi.api_client()
    core = typed_api(kubernetes.client.CoreV1Api, client)
    kubeapi.seed(kubeapi.node("n1"))
    node = core.patch_node("n1", {"spec": {"unschedulable": True}})
    assert node.spec.unschedulable is True
    assert [n.metadata.name for n in core.list_node(
        field_selector="spec.unschedulable=true").items] == ["n1"]
    ev = core.create_namespaced_event("default", {
        "metadata": {"name": "e1"}, "involvedObject": {"kind": "Deployment", "name": "web"},
        "reason": "Rightsized", "message": "cpu 1 -> 500m", "type": "Normal"})
    assert ev.reason == "Rightsized"
    hpa_api = typed_api(kubernetes.client.AutoscalingV2Api, client)
    hpa = hpa_api.create_namespaced_horizontal_pod_autoscaler("default", {
        "metadata": {"name": "web"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                    "name": "web"}, "minReplicas": 2, "maxReplicas": 5}})
    assert hpa.spec.max_replicas == 5
    with pytest.raises(ApiException) as e:
        hpa_api.patch_namespaced_horizontal_pod_autoscaler(
            "web", "default", {"spec": {"maxReplicas": 1}})
    assert e.value.status == 422
    assert status_body(e.value)["details"]["causes"][0]["field"] == "spec.maxReplicas"
    pdb = typed_api(kubernetes.client.PolicyV1Api, client).create_namespaced_pod_disruption_budget(
        "default", kubeapi.pdb("web", {"app": "web"}, min_available="50%"))
    assert pdb.spec.min_available == "50%"
    coord = typed_api(kubernetes.client.CoordinationV1Api, client)
    lease = coord.create_namespaced_lease("default", {
        "metadata": {"name": "leader"},
        "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}})
    lease.spec.holder_identity = "b"
    assert coord.replace_namespaced_lease("leader", "default", lease).spec.holder_identity == "b"
    with pytest.raises(ApiException) as e:
        coord.replace_namespaced_lease("leader", "default", lease)  # stale now
    assert e.value.status == 409
    assert status_body(e.value)["details"]["group"] == "coordination.k8s.io"
