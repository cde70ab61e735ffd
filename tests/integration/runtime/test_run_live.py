"""`reconciler run` carrying out a LiveMigration, as a separate process against the test
Kubernetes API server (its simulated kubelet actuating resizes), with the default policy
library, as a user drives it with kubectl.

Cases:
- as shipped (no namespace opted in) a LiveMigration created through the API is Rejected
  NotCovered, with the setting named, and no pod is touched;
- opted in: a LiveMigration with an unusual object name is Applied within seconds, every
  pod of the Deployment reports the new values, the template is unchanged, the status says
  that pods created later start with the template's values without the webhook
  (DAKR_LIVE_WEBHOOK unset) and names the setting;
- deleting the custom resource resizes the pods back in place and the object goes;
- at no instant is the workload below its PodDisruptionBudget; SIGTERM ends it, exit 0;
- GitOps mode (a repository, the kube store) with the policy's `resizeRunning`: a
  LiveMigration created through the API opens its pull request and the operator resizes
  the running pods in place at once (ResizedInPlace), the Deployment in the cluster
  unchanged, the recommendation Applying until the merge.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reconciler.domain import model
from tests import crds, samples
from tests.fakes.kubeapi.handle import KubeApi
from tests.integration.runtime import operator_support as op
from tests.integration.runtime.test_operator import _repo_with

pytestmark = pytest.mark.timeout(300)

POLICIES = Path(__file__).resolve().parents[3] / "policies"


def argv(api: KubeApi, tmp: Path, *data: Path) -> list[str]:
    out = ["--mode", "direct", "--store", "kube", "--kubeconfig", api.kubeconfig_path,
           "--state-dir", str(tmp / "state"), "--policies", str(POLICIES)]
    for d in data:
        out += ["--policy-data", str(d)]
    return out


def live(name: str, rid: str) -> dict[str, Any]:
    return {"apiVersion": op.API, "kind": model.WORKLOAD,
            "metadata": {"namespace": "default", "name": name},
            "spec": {"recommendationId": rid, "action": "LiveMigration", "confidence": 0.9,
                     "targetRef": {"kind": "Deployment", "name": "web"},
                     "containers": [{"name": "app", "resources": {
                         "requests": {"cpu": "150m"}}}]}}


def pod_cpus(api: KubeApi) -> list[tuple[str, str]]:
    return [(p["spec"]["containers"][0]["resources"]["requests"]["cpu"],
             (p["status"]["containerStatuses"][0].get("resources") or {}).get(
                 "requests", {}).get("cpu", ""))
            for p in api.items("v1", "Pod", "default")]


def test_live_migration_through_the_operator(kubeapi: KubeApi, tmp_path: Path) -> None:
    api = kubeapi
    crds.install_crds(api)
    api.seed_workload("web", 3, containers=[api.container(
        "app", cpu="100m", memory="128Mi", cpu_limit="1", memory_limit="512Mi")])
    api.seed(api.pdb("web", {"app": "web"}, min_available=2))

    shipped = op.start(argv(api, tmp_path, POLICIES / "data.yaml"), tmp_path, name="shipped")
    try:
        op.create(api, live("as-shipped", "lm-shipped"))
        op.wait_for(lambda: op.phase_of(api, "lm-shipped") == model.REJECTED, timeout=30)
        rec = op.rec_of(api, "lm-shipped")
        assert rec is not None and "includeNamespaces" in str(rec["status"])
        assert all(cpu == ("100m", "100m") for cpu in pod_cpus(api))
    finally:
        assert shipped.stop() == 0
    op.delete(api, "as-shipped")

    running = op.start(argv(api, tmp_path, samples.OPT_IN), tmp_path)
    try:
        op.create(api, live("my.odd-name-1", "lm-1"))
        op.wait_for(lambda: op.phase_of(api, "lm-1") == model.APPLIED, timeout=60)
        assert pod_cpus(api) == [("150m", "150m")] * 3
        assert op.requests_of(api, "web")["cpu"] == "100m"  # no rollout
        rec = op.rec_of(api, "lm-1")
        assert rec is not None and "liveMigration.enabled" in rec["status"]["message"]
        op.delete(api, "my.odd-name-1")
        op.wait_for(lambda: op.rec_of(api, "lm-1") is None, timeout=60)
        op.wait_for(lambda: pod_cpus(api) == [("100m", "100m")] * 3, timeout=30)
    finally:
        assert running.stop() == 0
    assert api.disruptions.breaches == []


def test_gitops_operator_resizes_running_pods_with_the_pull_request(
        kubeapi: KubeApi, tmp_path: Path) -> None:
    api = kubeapi
    crds.install_crds(api)
    api.seed_workload("svc-0", 2, containers=[api.container(
        "app", cpu="100m", memory="128Mi", cpu_limit="1", memory_limit="512Mi")])
    origin = _repo_with(tmp_path, 1)
    data = tmp_path / "live.yaml"
    data.write_text("config: {defaults: {liveMigration: {resizeRunning: true}}}\n")
    running = op.start(["--repo", str(origin), "--forge", "local", "--store", "kube",
                        "--kubeconfig", api.kubeconfig_path, "--state-dir",
                        str(tmp_path / "state"), "--policies", str(POLICIES),
                        "--policy-data", str(samples.OPT_IN), "--policy-data", str(data),
                        "--batch-window", "0.5"], tmp_path, name="gitops")
    try:
        rec = live("svc-0-live", "lm-g")
        rec["spec"]["targetRef"]["name"] = "svc-0"
        rec["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "80m"
        op.create(api, rec)

        def resized() -> dict[str, Any] | None:
            r = op.rec_of(api, "lm-g")
            conds = {c["type"]: c for c in ((r or {}).get("status") or {}).get(
                "conditions") or []}
            c = conds.get("ResizedInPlace")
            return r if c and c["status"] == "True" else None

        got = op.wait_for(resized, timeout=60)
        assert got["status"]["phase"] == model.APPLYING
        assert got["status"]["pullRequest"]["branch"].startswith("dakr/")
        cpus = [(p["spec"]["containers"][0]["resources"]["requests"]["cpu"],
                 p["status"]["containerStatuses"][0]["resources"]["requests"]["cpu"])
                for p in api.items("v1", "Pod", "default")]
        assert cpus == [("80m", "80m")] * 2
        assert op.requests_of(api, "svc-0")["cpu"] == "100m"  # the merge changes it
    finally:
        assert running.stop() == 0, running.logs()[-3000:]
    assert api.disruptions.breaches == []
