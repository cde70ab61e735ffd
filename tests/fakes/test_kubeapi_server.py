"""Lifecycle and concurrency of the test API server itself.

Cases:
- leaving `serve()` stops every server thread and closes the port, even with an open watch
  stream and idle keep-alive connections;
- concurrent read-modify-write loops from several threads: stale writes get 409, retries
  succeed, no increment is lost (optimistic concurrency holds under contention);
- generateName creates unique names; deletecollection with a label selector deletes only
  the matching objects;
- the handle's helpers: seed_workload wires Deployment -> ReplicaSet -> pods with owner
  references; seed_yaml accepts multi-document YAML and `List`;
- the pytest plugin `tests.fakes.kubeapi.fixtures` works as documented (a conftest with
  pytest_plugins, fixtures `kubeapi` and `kubeapi_factory`), warnings as errors.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import kubernetes

from tests.fakes.kubeapi.handle import KubeApi, serve, typed_api

ApiException = kubernetes.client.exceptions.ApiException


def test_stop_ends_threads_and_closes_port() -> None:
    before = set(threading.enumerate())
    watching = threading.Event()
    with serve() as kube:
        port = kube.server.port
        core = typed_api(kubernetes.client.CoreV1Api, kube.api_client())
        core.list_namespace()  # leaves an idle keep-alive connection in the pool

        def watch() -> None:
            w: Any = kubernetes.watch.Watch()  # type: ignore[no-untyped-call]
            try:
                for _ in w.stream(core.list_namespaced_pod, "default",
                                  resource_version="0"):
                    pass
            except Exception:
                pass
            finally:
                watching.set()

        t = threading.Thread(target=watch)
        t.start()
        deadline = time.monotonic() + 5
        while kube.requests.count("watch") == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert kube.requests.count("watch") == 1
    assert watching.wait(5)
    t.join(5)
    time.sleep(0.05)
    leftover = [th for th in set(threading.enumerate()) - before if th.is_alive()]
    assert leftover == []
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_concurrent_updates_lose_nothing(kubeapi: KubeApi) -> None:
    core = typed_api(kubernetes.client.CoreV1Api, kubeapi.api_client())
    core.create_namespaced_config_map("default", {"metadata": {"name": "n"},
                                                  "data": {"count": "0"}})
    conflicts = []

    def bump(times: int) -> None:
        for _ in range(times):
            while True:
                cm = core.read_namespaced_config_map("n", "default")
                cm.data["count"] = str(int(cm.data["count"]) + 1)
                try:
                    core.replace_namespaced_config_map("n", "default", cm)
                    break
                except ApiException as e:
                    assert e.status == 409
                    conflicts.append(1)

    threads = [threading.Thread(target=bump, args=(5,)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert kubeapi.get("v1", "ConfigMap", "n")["data"]["count"] == "15"
    assert kubeapi.requests.count("update", "configmaps") == 15 + len(conflicts)


def test_generate_name_and_delete_collection(kubeapi: KubeApi) -> None:
    core = typed_api(kubernetes.client.CoreV1Api, kubeapi.api_client())
    names = {core.create_namespaced_config_map("default", {
        "metadata": {"generateName": "job-", "labels": {"kind": "tmp"}}}).metadata.name
        for _ in range(3)}
    assert len(names) == 3 and all(n.startswith("job-") and len(n) == 9 for n in names)
    core.create_namespaced_config_map("default", {"metadata": {"name": "keep"}})
    core.delete_collection_namespaced_config_map("default", label_selector="kind=tmp")
    assert [c["metadata"]["name"] for c in kubeapi.items("v1", "ConfigMap", "default")] == [
        "keep"]


def test_seed_helpers(kubeapi: KubeApi) -> None:
    made = kubeapi.seed_workload("api", 2, ready=1, node="n1")
    rs_ref = made["pods"][0]["metadata"]["ownerReferences"][0]
    assert rs_ref["kind"] == "ReplicaSet" and rs_ref["uid"] == made["replicaset"]["metadata"][
        "uid"]
    assert made["replicaset"]["metadata"]["ownerReferences"][0]["uid"] == made["workload"][
        "metadata"]["uid"]
    ready = [p["status"]["conditions"][0]["status"] for p in made["pods"]]
    assert ready == ["True", "False"]
    seeded = kubeapi.seed_yaml("""
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: ConfigMap, metadata: {name: a, namespace: team}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: b, namespace: team}
""")
    assert [o["metadata"]["name"] for o in seeded] == ["a", "b"]
    assert kubeapi.exists("v1", "Namespace", "team", "")


PLUGIN_CONFTEST = 'pytest_plugins = ["tests.fakes.kubeapi.fixtures"]\n'
PLUGIN_TEST = '''
import kubernetes


def test_fixture(kubeapi):
    kubeapi.seed(kubeapi.deployment("web"))
    apps = kubernetes.client.AppsV1Api(kubeapi.api_client())
    assert apps.read_namespaced_deployment("web", "default").spec.replicas == 1
    assert kubeapi.requests["get", "deployments"] == 1


def test_factory(kubeapi_factory):
    a, b = kubeapi_factory(), kubeapi_factory(controllers=False)
    assert a.url != b.url and b.server.controllers is False
'''


def test_fixtures_plugin_as_documented(tmp_path: Any) -> None:
    (tmp_path / "conftest.py").write_text(PLUGIN_CONFTEST)
    (tmp_path / "test_uses_plugin.py").write_text(PLUGIN_TEST)
    repo = os.getcwd()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error",
         "--rootdir", str(tmp_path), str(tmp_path)],
        capture_output=True, text=True, timeout=120, cwd=str(tmp_path),
        env={**os.environ, "PYTHONPATH": repo}, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout
