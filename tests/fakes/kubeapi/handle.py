"""The handle tests hold on a running test API server, and `serve()` to run one.

Kept apart from the pytest fixtures (tests.fakes.kubeapi.fixtures) so that test modules and
benchmarks can import it without registering or importing a pytest plugin.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import kubernetes
import yaml

from tests.fakes.kubeapi import admission as admission_mod
from tests.fakes.kubeapi import disruption as disruption_mod
from tests.fakes.kubeapi import faults as faults_mod
from tests.fakes.kubeapi import kubelet as kubelet_mod
from tests.fakes.kubeapi import server, status
from tests.fakes.kubeapi import store as store_mod

JSON = dict[str, Any]


class KubeApi:
    """Handle on a running server: URL, kubeconfig, clients, seeding helpers, faults, counters."""

    def __init__(self, srv: server.KubeApiServer, workdir: str) -> None:
        self.server = srv
        self.url: str = srv.url
        self.kubeconfig_path = os.path.join(workdir, "kubeconfig")
        srv.write_kubeconfig(self.kubeconfig_path)
        self._clients: list[Any] = []

    @property
    def store(self) -> store_mod.Store:
        return self.server.store

    @property
    def faults(self) -> faults_mod.Faults:
        return self.server.faults

    @property
    def requests(self) -> faults_mod.Requests:
        return self.server.requests

    @property
    def kubelet(self) -> kubelet_mod.Kubelet:
        """The nodes' simulated kubelet: resize modes, checkpoint modes, Jobs, `settled()`."""
        return self.server.kubelet

    @property
    def disruptions(self) -> disruption_mod.Recorder:
        """Every PodDisruptionBudget breach a request or kubelet step caused."""
        return self.server.disruptions

    @property
    def admission(self) -> admission_mod.Admission:
        """The mutating-webhook stage: `.calls` records every webhook call."""
        return self.server.admission

    # ---------------------------------------------------------------- clients

    def configuration(self, token: str | None = None) -> Any:
        """A `kubernetes.client.Configuration` loaded from the kubeconfig like production."""
        cfg = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=self.kubeconfig_path, client_configuration=cfg, persist_config=False)
        if token is not None:
            cfg.refresh_api_key_hook = None  # it would reload the kubeconfig's token
            cfg.api_key["BearerToken"] = f"Bearer {token}"
        return cfg

    def api_client(self, token: str | None = None) -> Any:
        """A configured `kubernetes.client.ApiClient`, closed when the fixture ends."""
        client = kubernetes.client.ApiClient(self.configuration(token))
        self._clients.append(client)
        return client

    def add_token(self, token: str, user: str) -> None:
        """Make `token` authenticate as `user` (e.g. system:serviceaccount:ns:sa)."""
        self.server.tokens[token] = user

    def enable_rbac(self, *rbac_yaml: str) -> None:
        """Seed RBAC objects (YAML text) and enforce them for non-admin tokens."""
        for text in rbac_yaml:
            self.seed_yaml(text)
        self.server.enable_rbac()

    def service_account_client(self, namespace: str, name: str) -> Any:
        """An ApiClient authenticated as system:serviceaccount:<namespace>:<name>."""
        return self.api_client(token=self.server.service_account_token(namespace, name))

    def close(self) -> None:
        for client in self._clients:
            client.close()
        self._clients.clear()

    # ---------------------------------------------------------------- seeding

    def seed(self, *objs: JSON) -> list[JSON]:
        """Store objects as given (status kept, no validation), creating namespaces as needed.

        This is how a test sets up state a controller would have produced (pod phases,
        deployment status, PDB status); it still emits watch events and bumps versions.
        """
        out = []
        for obj in objs:
            rt = self.store.find_type(obj["apiVersion"], obj["kind"])
            ns = (obj.get("metadata") or {}).get("namespace") or "default"
            if rt.namespaced:
                self.ensure_namespace(ns)
            out.append(self.store._raw_put(rt, obj))
        return out

    def seed_yaml(self, text: str) -> list[JSON]:
        docs = [d for d in yaml.safe_load_all(text) if d]
        items: list[JSON] = []
        for d in docs:
            items.extend(d.get("items") or [] if d.get("kind") == "List" else [d])
        return self.seed(*items)

    def ensure_namespace(self, name: str) -> None:
        ns_type = self.store.type_for("", "v1", "namespaces")
        try:
            self.store.get(ns_type, "", name)
        except status.ApiError:
            self.store._raw_put(ns_type, {
                "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name},
                "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})

    def get(self, api_version: str, kind: str, name: str, namespace: str = "default") -> JSON:
        rt = self.store.find_type(api_version, kind)
        return self.store.get(rt, namespace if rt.namespaced else "", name)

    def exists(self, api_version: str, kind: str, name: str, namespace: str = "default") -> bool:
        try:
            self.get(api_version, kind, name, namespace)
            return True
        except status.ApiError:
            return False

    def items(self, api_version: str, kind: str, namespace: str | None = None) -> list[JSON]:
        rt = self.store.find_type(api_version, kind)
        items, _, _ = self.store.select(rt, namespace)
        return items

    def update(self, obj: JSON) -> JSON:
        """Overwrite an existing object as given (status included), like a controller would."""
        return self.seed(obj)[0]

    def modify(self, api_version: str, kind: str, name: str, change: Callable[[JSON], None],
               namespace: str = "default") -> JSON:
        obj = self.get(api_version, kind, name, namespace)
        change(obj)
        return self.update(obj)

    # ---------------------------------------------------------------- builders

    @staticmethod
    def container(name: str = "app", cpu: str | None = "100m", memory: str | None = "128Mi",
                  cpu_limit: str | None = None, memory_limit: str | None = None,
                  image: str = "registry.example/app:1") -> JSON:
        requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v}
        limits = {k: v for k, v in (("cpu", cpu_limit), ("memory", memory_limit)) if v}
        resources: JSON = {}
        if requests:
            resources["requests"] = requests
        if limits:
            resources["limits"] = limits
        return {"name": name, "image": image, "resources": resources}

    def deployment(self, name: str, namespace: str = "default", replicas: int = 1,
                   containers: list[JSON] | None = None, labels: dict[str, str] | None = None,
                   kind: str = "Deployment") -> JSON:
        labels = labels or {"app": name}
        spec: JSON = {
            "selector": {"matchLabels": dict(labels)},
            "template": {"metadata": {"labels": dict(labels)},
                         "spec": {"containers": copy.deepcopy(containers or [self.container()])}},
        }
        if kind != "DaemonSet":
            spec["replicas"] = replicas
        return {"apiVersion": "apps/v1", "kind": kind,
                "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
                "spec": spec,
                "status": {"replicas": replicas, "readyReplicas": replicas,
                           "availableReplicas": replicas, "updatedReplicas": replicas,
                           "observedGeneration": 1}}

    def pod(self, name: str, namespace: str = "default", labels: dict[str, str] | None = None,
            node: str | None = None, phase: str = "Running", ready: bool = True,
            containers: list[JSON] | None = None, owner: JSON | None = None) -> JSON:
        from tests.fakes.kubeapi import validation

        containers = copy.deepcopy(containers or [self.container()])
        spec: JSON = {"containers": containers}
        if node:
            spec["nodeName"] = node
        meta: JSON = {"name": name, "namespace": namespace, "labels": dict(labels or {})}
        if owner:
            meta["ownerReferences"] = [owner]
        return {
            "apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec,
            "status": {
                "phase": phase, "qosClass": validation.qos_class(spec),
                "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                "containerStatuses": [
                    {"name": c["name"], "ready": ready, "restartCount": 0, "image": c["image"],
                     "imageID": "", "resources": copy.deepcopy(c.get("resources") or {})}
                    for c in containers],
            },
        }

    def seed_workload(self, name: str, replicas: int, namespace: str = "default",
                      ready: int | None = None, node: str | None = None,
                      containers: list[JSON] | None = None,
                      kind: str = "Deployment") -> dict[str, Any]:
        """A Deployment (or StatefulSet) with its ReplicaSet and pods, owner references set.

        `ready` pods (default: all) are Running and Ready; the rest are Running, not Ready.
        Returns {"workload": ..., "replicaset": ... (Deployment only), "pods": [...]}.
        """
        ready = replicas if ready is None else ready
        labels = {"app": name}
        workload = self.seed(self.deployment(name, namespace, replicas, containers, labels,
                                             kind=kind))[0]
        out: dict[str, Any] = {"workload": workload}
        owner = workload
        if kind == "Deployment":
            rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
                  "metadata": {"name": f"{name}-5d8f7c9b4", "namespace": namespace,
                               "labels": dict(labels),
                               "ownerReferences": [_owner_ref(workload)]},
                  "spec": copy.deepcopy(workload["spec"]),
                  "status": {"replicas": replicas, "readyReplicas": ready}}
            owner = out["replicaset"] = self.seed(rs)[0]
        pods = []
        for i in range(replicas):
            pod_name = f"{name}-{i}" if kind == "StatefulSet" else f"{name}-5d8f7c9b4-{i:05d}"
            pods.append(self.pod(pod_name, namespace, labels, node=node, ready=i < ready,
                                 containers=containers, owner=_owner_ref(owner)))
        out["pods"] = self.seed(*pods)
        return out

    @staticmethod
    def node(name: str, unschedulable: bool = False, labels: dict[str, str] | None = None,
             cpu: str = "4", memory: str = "16Gi") -> JSON:
        spec: JSON = {"unschedulable": True} if unschedulable else {}
        return {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": dict(labels or {})}, "spec": spec,
                "status": {"capacity": {"cpu": cpu, "memory": memory, "pods": "110"},
                           "allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
                           "conditions": [{"type": "Ready", "status": "True"}]}}

    @staticmethod
    def pdb(name: str, selector: dict[str, str], namespace: str = "default",
            min_available: int | str | None = None,
            max_unavailable: int | str | None = None) -> JSON:
        spec: JSON = {"selector": {"matchLabels": dict(selector)}}
        if min_available is not None:
            spec["minAvailable"] = min_available
        if max_unavailable is not None:
            spec["maxUnavailable"] = max_unavailable
        return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def _owner_ref(obj: JSON) -> JSON:
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"],
            "name": obj["metadata"]["name"], "uid": obj["metadata"]["uid"],
            "controller": True, "blockOwnerDeletion": True}


@contextlib.contextmanager
def serve(**options: Any) -> Iterator[KubeApi]:
    """Run a server for the duration of the block (options: see KubeApiServer)."""
    srv = server.KubeApiServer(**options).start()
    with tempfile.TemporaryDirectory(prefix="kubeapi-") as workdir:
        handle = KubeApi(srv, workdir)
        try:
            yield handle
        finally:
            handle.close()
            srv.stop()


def typed_api(cls: Any, client: Any) -> Any:
    """An API object of the official client, typed Any: tests pass plain dicts where the
    client's models are typed."""
    return cls(client)


def status_body(e: Any) -> dict[str, Any]:
    """The Status document of an ApiException, as the server sent it."""
    return dict(json.loads(e.body))
