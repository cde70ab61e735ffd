"""A LiveMigration in GitOps mode: the pull request carries the template change and, when
the policy says `resizeRunning`, the running pods are resized in place at once.

The real CLI (`reconciler apply --cluster-facts`), the demo repository behind a bare
origin, the fake GitHub on loopback, the embedded OPA engine with the default library, and
the test Kubernetes API server (its simulated kubelet actuating resizes) through the
official client.

Cases:
- as shipped (`resizeRunning: false`): the pull request is opened and no pod is touched;
- `resizeRunning: true`: the pull request is opened, every pod of the Deployment runs with
  the new values (spec and status), the Deployment in the cluster is unchanged, the
  recommendation stays Applying with a ResizedInPlace condition and each pod's previous
  values in status.liveMigration (persist: template, so the webhook leaves it alone);
- the pull request closed unmerged: the next run marks it Rejected and resizes the pods
  back in place, saying so;
- a pod whose resize is Infeasible with `fallback: none`: the pods already resized are put
  back, the pull request stays open (Applying), the condition names the kubelet's reason;
- without access to the cluster (no --cluster-facts) the output says the pods were not
  resized and names the setting;
- at no instant is the workload below its PodDisruptionBudget.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.adapters.store import sqlite as sqlite_store
from reconciler.cli import main as cli
from reconciler.domain import model
from tests import samples
from tests.fakes.forgeserver import GITHUB, ForgeServer
from tests.fakes.kubeapi.handle import KubeApi

TOKEN = "tok-gitops-live-5c1"
NOW = "2026-11-24T10:00:00Z"

LIVE = """
apiVersion: dakr.devzero.io/v1alpha1
kind: WorkloadRecommendation
metadata: {namespace: default}
spec:
  recommendationId: lm-cart
  action: LiveMigration
  targetRef: {kind: Deployment, name: cartservice}
  containers:
  - name: server
    resources:
      requests: {cpu: 150m}
  confidence: 0.9
"""


@pytest.fixture()
def server() -> Iterator[ForgeServer]:
    with ForgeServer(token=TOKEN, repos=("acme/app",)) as s:
        yield s


class Runner:
    def __init__(self, tmp: Path, origin: Path, server: ForgeServer, api: KubeApi,
                 capsys: pytest.CaptureFixture[str]) -> None:
        self.tmp, self.origin, self.server, self.api, self.capsys = (
            tmp, origin, server, api, capsys)
        (tmp / "token").write_text(TOKEN + "\n")
        self.n = 0

    def apply(self, live: dict[str, Any], *extra: str) -> dict[str, Any]:
        self.n += 1
        data = self.tmp / f"live-{self.n}.yaml"
        data.write_text(yaml.safe_dump({"config": {"defaults": {"liveMigration": live}}}))
        recs = self.tmp / "recs.yaml"
        recs.write_text(LIVE)
        rc = cli.main(["apply", "-f", str(recs), "--repo", str(self.origin), "--state-dir",
                       str(self.tmp / "state"), "--forge", GITHUB, "--forge-url",
                       self.server.url, "--forge-repo", "acme/app", "--token-file",
                       str(self.tmp / "token"), "--now", NOW, "--output", "json",
                       "--kubeconfig", self.api.kubeconfig_path,
                       "--policy-data", str(samples.OPT_IN), "--policy-data", str(data),
                       *extra])
        out = self.capsys.readouterr()
        assert rc == 0, out.err
        (item,) = json.loads(out.out)["results"]
        return dict(item)

    def status(self) -> dict[str, Any]:
        st = sqlite_store.SqliteStore(self.tmp / "state" / "reconciler.db")
        try:
            r = st.get(model.WORKLOAD, "lm-cart")
            assert r is not None
            return dict(r.status)
        finally:
            st.close()

    def cpus(self) -> list[tuple[str, str]]:
        """(spec, status) CPU request of each cartservice pod."""
        return [(p["spec"]["containers"][0]["resources"]["requests"]["cpu"],
                 (p["status"]["containerStatuses"][0].get("resources") or {}).get(
                     "requests", {}).get("cpu", ""))
                for p in self.api.items("v1", "Pod", "default")]

    def template_cpu(self) -> str:
        dep = self.api.get("apps/v1", "Deployment", "cartservice")
        return str(dep["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]
                   ["cpu"])


@pytest.fixture()
def run(tmp_path: Path, origin: Path, server: ForgeServer, kubeapi: KubeApi,
        capsys: pytest.CaptureFixture[str]) -> Iterator[Runner]:
    kubeapi.seed_workload("cartservice", 3, containers=[kubeapi.container(
        "server", cpu="200m", memory="64Mi", cpu_limit="300m", memory_limit="128Mi")])
    kubeapi.seed(kubeapi.pdb("cartservice", {"app": "cartservice"}, min_available=2))
    yield Runner(tmp_path, origin, server, kubeapi, capsys)
    assert kubeapi.disruptions.breaches == []


def in_place(status: dict[str, Any]) -> dict[str, Any]:
    (cond,) = [c for c in status["conditions"] if c["type"] == "ResizedInPlace"]
    return dict(cond)


def test_as_shipped_only_the_pull_request(run: Runner) -> None:
    item = run.apply({}, "--cluster-facts")
    assert item["phase"] == model.APPLYING and item["pullRequest"], item
    assert run.cpus() == [("200m", "200m")] * 3
    assert "liveMigration" not in run.status()


def test_running_pods_resized_with_the_pull_request_then_put_back_when_closed(
        run: Runner) -> None:
    item = run.apply({"resizeRunning": True}, "--cluster-facts")
    assert item["phase"] == model.APPLYING and item["pullRequest"], item
    assert "3 pod(s) resized in place while the pull request is open" in item["message"]
    assert run.cpus() == [("150m", "150m")] * 3
    assert run.template_cpu() == "200m"  # the cluster's template waits for the merge
    st = run.status()
    assert in_place(st)["status"] == "True"
    live = st["liveMigration"]
    assert live["persist"] == "template" and len(live["pods"]) == 3
    assert {p["previous"]["server"]["requests"]["cpu"] for p in live["pods"]} == {"200m"}

    (pr,) = run.server.pulls(GITHUB)
    run.server.close(GITHUB, pr["number"])
    again = run.apply({"resizeRunning": True}, "--cluster-facts")
    assert again["phase"] == model.REJECTED, again
    assert run.cpus() == [("200m", "200m")] * 3
    st = run.status()
    assert in_place(st)["reason"] == "PutBack"
    assert "3 pod(s) resized in place put back" in in_place(st)["message"]


def test_infeasible_with_fallback_none_puts_back_and_keeps_the_pull_request(
        run: Runner) -> None:
    pods = sorted(p["metadata"]["name"] for p in run.api.items("v1", "Pod", "default"))
    run.api.kubelet.set_mode("default", pods[1], "infeasible",
                             "Node didn't have enough capacity")
    item = run.apply({"resizeRunning": True}, "--cluster-facts")
    assert item["phase"] == model.APPLYING and item["pullRequest"], item
    assert "Node didn't have enough capacity" in item["message"]
    assert "put back" in item["message"]
    assert run.cpus() == [("200m", "200m")] * 3
    cond = in_place(run.status())
    assert (cond["status"], cond["reason"]) == ("False", "Infeasible")


def test_without_cluster_access_says_so(run: Runner) -> None:
    item = run.apply({"resizeRunning": True})
    assert item["phase"] == model.APPLYING, item
    assert "not resized in place" in item["message"]
    assert "--cluster-facts" in item["message"]
    assert run.cpus() == [("200m", "200m")] * 3
