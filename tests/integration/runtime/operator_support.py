"""Running `reconciler run` as a separate process, as the chart does, for the operator tests.

The operator talks to the test Kubernetes API server, the reference platform and Git
origins over real sockets; the tests look at the results where a user would: the custom
resources and workloads in the API server, the platform's record of acks and upstream
messages, the branches of the origin, /readyz and /metrics.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
import yaml

from reconciler.domain import model
from tests.fakes.kubeapi.handle import KubeApi
from tests.integration.run_support import free_port, get, samples

GROUP, VERSION = model.GROUP, model.VERSION
API = f"{GROUP}/{VERSION}"


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0,
             interval: float = 0.05) -> Any:
    """``predicate()`` once it is truthy; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = predicate()
        if got:
            return got
        if time.monotonic() >= deadline:
            raise AssertionError(f"not true within {timeout:g}s: {predicate}")
        time.sleep(interval)


def kubeconfig(api: KubeApi, path: Path, token: str) -> Path:
    """A kubeconfig for the test API server that authenticates with ``token``."""
    server = api.configuration().host
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "test", "cluster": {"server": server}}],
        "users": [{"name": "test", "user": {"token": token}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}]}))
    return path


@dataclass
class Running:
    """One operator process."""

    proc: subprocess.Popen[bytes]
    health_port: int
    log_path: Path

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.health_port}{path}"

    def ready(self) -> bool:
        return get(self.url("/readyz"))[0] == 200

    def metrics(self) -> dict[Any, float]:
        code, text = get(self.url("/metrics"))
        return samples(text) if code == 200 else {}

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, as the kubelet sends it; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"the operator did not stop on SIGTERM:\n{self.logs()[-3000:]}"
                                 ) from None

    def kill(self) -> None:
        """SIGKILL: a crash, no clean-up at all."""
        self.proc.kill()
        self.proc.wait(10)


def start(argv: Sequence[str], tmp: Path, *, env: dict[str, str] | None = None,
          name: str = "operator", wait_ready: bool = True,
          timeout: float = 60.0) -> Running:
    """`python -m reconciler -v run --health-addr ... <argv>` in its own process."""
    port = free_port()
    log_path = tmp / f"{name}.log"
    cmd = [sys.executable, "-m", "reconciler", "-v", "run",
           "--health-addr", f"127.0.0.1:{port}", *argv]
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=full_env)
    running = Running(proc, port, log_path)
    if wait_ready:
        deadline = time.monotonic() + timeout
        while not running.ready():
            if proc.poll() is not None:
                raise AssertionError(f"the operator exited {proc.returncode}:\n"
                                     f"{running.logs()[-3000:]}")
            if time.monotonic() > deadline:
                running.kill()
                raise AssertionError(f"not ready within {timeout:g}s:\n{running.logs()[-3000:]}")
            time.sleep(0.05)
    return running


def wrec(rid: str, target: str, *, name: str | None = None, cpu: str | None = None,
         memory: str | None = None, replicas: int | None = None,
         namespace: str = "default", container: str = "app") -> dict[str, Any]:
    """A WorkloadRecommendation as a user (or the platform) writes it."""
    spec: dict[str, Any] = {"recommendationId": rid, "confidence": 0.9,
                            "targetRef": {"kind": "Deployment", "name": target}}
    if cpu or memory:
        requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v}
        spec["action"] = "Rightsizing"
        spec["containers"] = [{"name": container, "resources": {"requests": requests}}]
    if replicas is not None:
        spec.setdefault("action", "ReplicaScaling")
        spec["replicas"] = replicas
    meta: dict[str, Any] = {"namespace": namespace, "name": name or rid}
    return {"apiVersion": API, "kind": model.WORKLOAD, "metadata": meta, "spec": spec}


def create(api: KubeApi, *docs: dict[str, Any]) -> None:
    """Create recommendations through the API, as `kubectl apply` does (the CRD's schema
    checks them)."""
    custom = kubernetes.client.CustomObjectsApi(api.api_client())
    for d in docs:
        custom.create_namespaced_custom_object(GROUP, VERSION, d["metadata"]["namespace"],
                                               "workloadrecommendations", d)


def delete(api: KubeApi, name: str, namespace: str = "default") -> None:
    kubernetes.client.CustomObjectsApi(api.api_client()).delete_namespaced_custom_object(
        GROUP, VERSION, namespace, "workloadrecommendations", name)


def phase_of(api: KubeApi, rid: str, namespace: str = "default") -> str | None:
    """The phase of the recommendation with this id, whatever its object's name."""
    for obj in api.items(API, model.WORKLOAD, namespace):
        if (obj.get("spec") or {}).get("recommendationId") == rid:
            return str((obj.get("status") or {}).get("phase", model.PENDING))
    return None


def rec_of(api: KubeApi, rid: str, namespace: str = "default") -> dict[str, Any] | None:
    for obj in api.items(API, model.WORKLOAD, namespace):
        if (obj.get("spec") or {}).get("recommendationId") == rid:
            return obj
    return None


def requests_of(api: KubeApi, deployment: str, namespace: str = "default") -> dict[str, str]:
    obj = api.get("apps/v1", "Deployment", deployment, namespace)
    return dict(obj["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"])
