"""Fault injection, request counters, auth and the standalone entry point of the test server.

Cases:
- fail_next with 409 (update -> Conflict, create -> AlreadyExists), 429 (TooManyRequests
  with Retry-After), 500 (InternalError), 503, 504 (Timeout): each as a real Status body,
  each for exactly n matching requests (verb/resource filters), then normal service;
- a "timeout" fault holds the request past the client's timeout and never answers: the
  PATCH is not applied; with after_apply=True it is applied and still times out;
- a "reset" fault drops the connection; delay() answers late but correctly;
- request counters by (verb, resource, subresource) and reset();
- with require_auth, a missing or unknown token -> 401; an authorizer callback -> 403 with
  the real Forbidden message shape;
- RBAC from seeded ClusterRole/Role/bindings: service-account tokens allowed exactly what
  their rules grant (verbs, subresources, resourceNames, namespace vs cluster scope);
- `python -m tests.fakes.kubeapi --port 0 --kubeconfig-out FILE` serves a kubeconfig the official
  client loads, and exits cleanly on SIGTERM;
- kubectl (when installed) with the fixture's kubeconfig: apply (twice: unchanged), scale,
  get -o json, get as a server-side Table (columns), drain (cordon + eviction).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from typing import Any

import kubernetes
import pytest
import urllib3

from tests.fakes.kubeapi.handle import KubeApi, status_body, typed_api

ApiException = kubernetes.client.exceptions.ApiException


def _apps(k: KubeApi) -> Any:
    k.seed(k.deployment("web"))
    return typed_api(kubernetes.client.AppsV1Api, k.api_client())


@pytest.mark.parametrize(
    ("code", "reason", "message"),
    [
        (409, "Conflict", 'Operation cannot be fulfilled on deployments.apps "web": the object '
                          "has been modified"),
        (429, "TooManyRequests", "Too many requests, please try again later."),
        (500, "InternalError", "Internal error occurred: injected fault"),
        (503, "ServiceUnavailable", "the server is currently unable to handle the request"),
        (504, "Timeout", "Timeout: request did not complete within requested timeout"),
    ],
)
def test_fail_next_status_codes(kubeapi: KubeApi, code: int, reason: str, message: str) -> None:
    apps = _apps(kubeapi)
    kubeapi.faults.fail_next(2, status=code, verb="patch", resource="deployments")
    apps.read_namespaced_deployment("web", "default")  # other verbs are untouched
    for _ in range(2):
        with pytest.raises(ApiException) as e:
            apps.patch_namespaced_deployment("web", "default", {"spec": {"replicas": 2}})
        assert e.value.status == code
        body = status_body(e.value)
        assert body["reason"] == reason and body["message"].startswith(message)
        assert body["kind"] == "Status" and body["code"] == code
    if code == 429:
        headers: Any = e.value.headers
        assert headers["Retry-After"] == "1"
    assert kubeapi.get("apps/v1", "Deployment", "web")["spec"]["replicas"] == 1
    assert apps.patch_namespaced_deployment(
        "web", "default", {"spec": {"replicas": 2}}).spec.replicas == 2
    assert kubeapi.faults.pending == 0


def test_fail_next_conflict_on_create_is_already_exists(kubeapi: KubeApi) -> None:
    core = typed_api(kubernetes.client.CoreV1Api, kubeapi.api_client())
    kubeapi.faults.fail_next(1, status=409, verb="create", resource="configmaps")
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map("default", {"metadata": {"name": "c"}})
    assert status_body(e.value)["reason"] == "AlreadyExists"


def test_timeout_fault(kubeapi: KubeApi) -> None:
    apps = _apps(kubeapi)
    kubeapi.faults.fail_next(1, status="timeout", seconds=3, verb="patch")
    started = time.monotonic()
    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        apps.patch_namespaced_deployment("web", "default", {"spec": {"replicas": 3}},
                                         _request_timeout=0.5)
    assert time.monotonic() - started < 2.5
    assert kubeapi.get("apps/v1", "Deployment", "web")["spec"]["replicas"] == 1
    kubeapi.faults.timeout_next(1, seconds=3, verb="patch", after_apply=True)
    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        apps.patch_namespaced_deployment("web", "default", {"spec": {"replicas": 4}},
                                         _request_timeout=0.5)
    assert kubeapi.get("apps/v1", "Deployment", "web")["spec"]["replicas"] == 4


def test_reset_and_delay(kubeapi: KubeApi) -> None:
    apps = _apps(kubeapi)
    kubeapi.faults.fail_next(1, status="reset", verb="patch")
    with pytest.raises(urllib3.exceptions.HTTPError):
        apps.patch_namespaced_deployment("web", "default", {"spec": {"replicas": 3}})
    kubeapi.faults.delay(0.3, n=1, verb="get", resource="deployments")
    started = time.monotonic()
    assert apps.read_namespaced_deployment("web", "default").metadata.name == "web"
    assert time.monotonic() - started >= 0.3


def test_request_counters(kubeapi: KubeApi) -> None:
    apps = _apps(kubeapi)
    apps.read_namespaced_deployment("web", "default")
    apps.read_namespaced_deployment("web", "default")
    apps.patch_namespaced_deployment("web", "default", {"spec": {"replicas": 2}})
    apps.patch_namespaced_deployment_status("web", "default", {"status": {"replicas": 2}})
    apps.list_namespaced_deployment("default")
    assert kubeapi.requests["get", "deployments"] == 2
    assert kubeapi.requests["patch", "deployments"] == 1
    assert kubeapi.requests["patch", "deployments", "status"] == 1
    assert kubeapi.requests.count("patch") == 2
    assert kubeapi.requests.count(resource="deployments") == 5
    assert [i.verb for i in kubeapi.requests.writes()] == ["patch", "patch"]
    kubeapi.requests.reset()
    assert kubeapi.requests.count() == 0 and kubeapi.requests.log == []


def test_authentication_and_authorization(kubeapi: KubeApi) -> None:
    kubeapi.server.require_auth = True
    kubeapi.add_token("sa-token", "system:serviceaccount:ops:reconciler")
    with pytest.raises(ApiException) as e:
        typed_api(kubernetes.client.CoreV1Api, kubeapi.api_client(token="wrong")).list_namespace()
    assert e.value.status == 401 and status_body(e.value)["reason"] == "Unauthorized"

    def deny_patch(user: str, info: Any) -> str | None:
        if info.verb == "patch" and user.startswith("system:serviceaccount:"):
            return (f'User "{user}" cannot patch resource "{info.resource}" in API group '
                    f'"{info.group}" in the namespace "{info.namespace}"')
        return None

    kubeapi.server.authorizer = deny_patch
    kubeapi.seed(kubeapi.deployment("web"))
    apps = typed_api(kubernetes.client.AppsV1Api, kubeapi.api_client(token="sa-token"))
    assert apps.read_namespaced_deployment("web", "default").metadata.name == "web"
    with pytest.raises(ApiException) as e:
        apps.patch_namespaced_deployment("web", "default", {"spec": {"replicas": 2}})
    assert e.value.status == 403
    assert status_body(e.value)["message"] == (
        'deployments.apps "web" is forbidden: User "system:serviceaccount:ops:reconciler" '
        'cannot patch resource "deployments" in API group "apps" in the namespace "default"')
    assert kubeapi.requests.log[-1].user == "system:serviceaccount:ops:reconciler"


def test_standalone_entry_point(tmp_path: Any) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    with subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.kubeapi", "--port", "0", "--kubeconfig-out",
         str(kubeconfig)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.startswith("kubeapi serving on http://127.0.0.1:")
            cfg = kubernetes.client.Configuration()
            kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=str(kubeconfig),
                                               client_configuration=cfg)
            with kubernetes.client.ApiClient(cfg) as client:
                core = typed_api(kubernetes.client.CoreV1Api, client)
                core.create_namespaced_config_map("default", {"metadata": {"name": "x"}})
                assert [c.metadata.name for c in core.list_namespaced_config_map(
                    "default").items] == ["x"]
        finally:
            proc.send_signal(signal.SIGTERM)
            _out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err


RBAC_YAML = """
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: reconciler}
rules:
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, patch]
- apiGroups: [""]
  resources: [pods/eviction]
  verbs: [create]
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: reconciler}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: reconciler}
subjects:
- {kind: ServiceAccount, name: reconciler, namespace: ops}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: cm-writer, namespace: team}
rules:
- apiGroups: [""]
  resources: [configmaps]
  verbs: ["*"]
  resourceNames: [allowed]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: cm-writer, namespace: team}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: cm-writer}
subjects:
- {kind: ServiceAccount, name: reconciler, namespace: ops}
"""


def test_rbac_enforcement(kubeapi: KubeApi) -> None:
    kubeapi.seed(kubeapi.deployment("web"), kubeapi.pod("p", labels={"app": "web"}))
    kubeapi.ensure_namespace("team")
    kubeapi.enable_rbac(RBAC_YAML)
    client = kubeapi.service_account_client("ops", "reconciler")
    apps = typed_api(kubernetes.client.AppsV1Api, client)
    core = typed_api(kubernetes.client.CoreV1Api, client)
    assert apps.patch_namespaced_deployment("web", "default", {"spec": {"replicas": 2}})
    with pytest.raises(ApiException) as e:
        apps.delete_namespaced_deployment("web", "default")
    assert e.value.status == 403 and status_body(e.value)["reason"] == "Forbidden"
    assert status_body(e.value)["message"] == (
        'deployments.apps "web" is forbidden: User "system:serviceaccount:ops:reconciler" '
        'cannot delete resource "deployments" in API group "apps" in the namespace "default"')
    with pytest.raises(ApiException) as e:
        core.list_node()
    assert status_body(e.value)["message"].endswith(
        'cannot list resource "nodes" in API group "" at the cluster scope')
    with pytest.raises(ApiException) as e:
        core.patch_namespaced_pod("p", "default", {"metadata": {"labels": {"x": "1"}}})
    assert e.value.status == 403
    core.create_namespaced_pod_eviction("p", "default", {"metadata": {"name": "p"}})
    # A namespaced Role limited by resourceNames.
    admin = typed_api(kubernetes.client.CoreV1Api, kubeapi.api_client())
    admin.create_namespaced_config_map("team", {"metadata": {"name": "allowed"}})
    admin.create_namespaced_config_map("team", {"metadata": {"name": "other"}})
    assert core.patch_namespaced_config_map("allowed", "team", {"data": {"a": "1"}})
    with pytest.raises(ApiException) as e:
        core.patch_namespaced_config_map("other", "team", {"data": {"a": "1"}})
    assert e.value.status == 403
    with pytest.raises(ApiException) as e:
        core.patch_namespaced_config_map("allowed", "default", {"data": {"a": "1"}})
    assert e.value.status == 403
    with pytest.raises(ApiException) as e:
        typed_api(kubernetes.client.CoreV1Api, kubeapi.api_client(token="nobody")).list_namespace()
    assert e.value.status == 401


KUBECTL_OBJECTS = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: app, image: nginx, resources: {requests: {cpu: 100m}}}]
---
apiVersion: v1
kind: Node
metadata: {name: n1}
---
apiVersion: v1
kind: Pod
metadata: {name: p1, namespace: default}
spec:
  nodeName: n1
  containers: [{name: app, image: nginx}]
"""


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_kubectl_apply_scale_and_drain(kubeapi: KubeApi, tmp_path: Any) -> None:
    manifest = tmp_path / "objects.yaml"
    manifest.write_text(KUBECTL_OBJECTS)

    def kubectl(*args: str) -> str:
        done = subprocess.run(
            ["kubectl", "--kubeconfig", kubeapi.kubeconfig_path, *args],
            capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "deployment.apps/web created" in kubectl("apply", "-f", str(manifest))
    assert "deployment.apps/web unchanged" in kubectl("apply", "-f", str(manifest))
    kubectl("scale", "deployment/web", "--replicas=3")
    deployment = json.loads(kubectl("get", "deployment", "web", "-o", "json"))
    assert deployment["spec"]["replicas"] == 3 and deployment["metadata"]["generation"] == 2
    header = kubectl("get", "deployment", "web").splitlines()[0].split()
    assert header == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]  # server-side Table
    out = kubectl("drain", "n1", "--force", "--timeout=20s")
    assert "pod/p1 evicted" in out
    assert kubeapi.get("v1", "Node", "n1", "")["spec"]["unschedulable"] is True
    assert not kubeapi.exists("v1", "Pod", "p1")
    assert kubeapi.requests.count("create", "pods", "eviction") == 1
