"""`reconciler run` as an operator: a separate process against the test Kubernetes API
server, the reference platform on loopback and real bare Git origins, with the default
policy library.

Cases:
- one operator (direct mode, custom-resource store, a platform stream) for over a minute:
  a WorkloadRecommendation created through the API under any name is applied within
  seconds; deleting it rolls the change back within seconds with no other work around; a
  recommendation the platform sends while connected is stored, acked, applied and its
  phase reported up the same connection; a CRD the platform sends is installed through the
  API; a rightsizing and a replica change for one Deployment, sent together, are both
  applied; /readyz is ready, /metrics counts the work;
  the platform saw one connection the whole time; SIGTERM ends it, exit 0;
- both writers in one process: an Argo-CD-managed workload gets a pull request while
  another is patched directly;
- a GitOps burst of 500 recommendations over the stream becomes one commit and one pull
  request (local store, no cluster);
- a recommendation decided while the policy engine (the OPA sidecar) fails stays Pending
  with a Retrying condition naming the reason and the next try, and is decided and
  applied once the engine answers again;
- killed (SIGKILL) in the middle of applying a burst and started again: every
  recommendation ends Applied and every Deployment was changed exactly once;
- two replicas with leader election: only the Lease holder writes; when it is killed the
  other takes over and carries on, and no write of the second comes before the last one of
  the first.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from reconciler.devtools import platform
from reconciler.domain import model
from tests import crds, samples
from tests.fakes.kubeapi.handle import KubeApi
from tests.fakes.opaserver import OpaServer
from tests.integration.run_support import value
from tests.integration.runtime import operator_support as op

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parents[3]
POLICIES = ROOT / "policies"


def direct_argv(api: KubeApi, tmp: Path, *extra: str) -> list[str]:
    return ["--mode", "direct", "--store", "kube", "--kubeconfig", api.kubeconfig_path,
            "--state-dir", str(tmp / "state"), "--policies", str(POLICIES),
            "--policy-data", str(samples.OPT_IN),
            "--resync", "30", *extra]


def feed(*docs: dict[str, Any]) -> list[Any]:
    return platform.build_feed(list(docs))


@pytest.fixture
def cluster(kubeapi: KubeApi) -> KubeApi:
    crds.install_crds(kubeapi)
    kubeapi.seed(*(kubeapi.deployment(n) for n in ("cart", "web", "both", "shop")))
    return kubeapi


def test_direct_operator_reacts_in_seconds(cluster: KubeApi, tmp_path: Path) -> None:
    api = cluster
    server = platform.PlatformServer([]).start()
    started = time.monotonic()
    running = op.start(direct_argv(api, tmp_path, "--source", f"platform:{server.address}"),
                       tmp_path)
    try:
        assert server.state.wait_for(lambda s: s.connections == 1, timeout=20)
        # A recommendation created with the API under a name of the user's choosing.
        t0 = time.monotonic()
        op.create(api, op.wrec("rec-api-1", "cart", name="my-cart-rec", cpu="80m"))
        op.wait_for(lambda: op.phase_of(api, "rec-api-1") == model.APPLIED, timeout=20)
        applied_in = time.monotonic() - t0
        assert op.requests_of(api, "cart")["cpu"] == "80m"
        obj = api.get(op.API, model.WORKLOAD, "my-cart-rec")
        assert obj["status"]["previous"]["containers"]["app"]["requests"]["cpu"] == "100m"
        assert "dakr.devzero.io/rollback" in obj["metadata"]["finalizers"]

        # Deleting it rolls the change back, with nothing else happening in the cluster.
        t1 = time.monotonic()
        op.delete(api, "my-cart-rec")
        op.wait_for(lambda: not api.exists(op.API, model.WORKLOAD, "my-cart-rec"), timeout=20)
        rolled_back_in = time.monotonic() - t1
        assert op.requests_of(api, "cart")["cpu"] == "100m"

        # The platform sends one while connected: stored, acked, applied, reported up.
        t2 = time.monotonic()
        server.add(feed(op.wrec("rec-plat-1", "web", cpu="70m")))
        assert server.state.wait_for(lambda s: any(
            u.get("recommendation_id") == "rec-plat-1" and u.get("phase") == model.APPLIED
            for u in s.upstream), timeout=20)
        reported_in = time.monotonic() - t2
        assert "rec-plat-1" in server.state.acked_ids()
        assert op.phase_of(api, "rec-plat-1") == model.APPLIED
        assert op.requests_of(api, "web")["cpu"] == "70m"

        # A CRD the platform sends (in the allowed group) is installed through the API.
        server.add(feed({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.dakr.devzero.io"},
            "spec": {"group": "dakr.devzero.io", "scope": "Namespaced",
                     "names": {"plural": "widgets", "singular": "widget", "kind": "Widget",
                               "listKind": "WidgetList"},
                     "versions": [{"name": "v1", "served": True, "storage": True,
                                   "schema": {"openAPIV3Schema": {
                                       "type": "object",
                                       "x-kubernetes-preserve-unknown-fields": True}}}]}}))
        assert server.state.wait_for(
            lambda s: "widgets.dakr.devzero.io" in s.acked_ids(), timeout=20)
        assert api.exists("apiextensions.k8s.io/v1", "CustomResourceDefinition",
                          "widgets.dakr.devzero.io", "")

        # A rightsizing and a replica change for one Deployment, sent together: both apply.
        server.add(feed(op.wrec("rec-both-cpu", "both", cpu="60m"),
                        op.wrec("rec-both-replicas", "both", replicas=3)))
        op.wait_for(lambda: op.phase_of(api, "rec-both-cpu") == model.APPLIED
                    and op.phase_of(api, "rec-both-replicas") == model.APPLIED, timeout=20)
        both = api.get("apps/v1", "Deployment", "both")
        assert both["spec"]["replicas"] == 3
        assert op.requests_of(api, "both")["cpu"] == "60m"

        assert running.ready()
        # (counted once each key's work is finished, just after its status is written)
        m = op.wait_for(lambda: (lambda m: m if value(
            m, "dakr_batch_items_total", mode="direct", phase=model.APPLIED) >= 4 else None)(
            running.metrics()), timeout=10)
        assert value(m, "dakr_stream_connected") == 1
        # One stream for the whole life of the process: no flapping connection.
        while time.monotonic() - started < 65:
            time.sleep(1)
            assert running.proc.poll() is None, running.logs()[-2000:]
        assert server.state.connections == 1 and len(server.state.hellos) == 1
    finally:
        rc = running.stop()
        server.stop(grace=0)
    assert rc == 0, running.logs()[-3000:]
    print(f"applied in {applied_in:.2f}s, rolled back in {rolled_back_in:.2f}s, "
          f"reported up in {reported_in:.2f}s")
    assert max(applied_in, rolled_back_in, reported_in) < 10  # seconds, not rounds


def test_both_writers_in_one_operator(kubeapi: KubeApi, origin: Path, tmp_path: Path) -> None:
    api = kubeapi
    crds.install_crds(api)
    server_container = api.container("server", cpu="100m", memory="64Mi")
    frontend = api.deployment("frontend", containers=[server_container])
    frontend["metadata"]["annotations"] = {
        "argocd.argoproj.io/tracking-id": "shop:apps/Deployment:default/frontend"}
    api.seed(frontend, api.deployment("cartservice", containers=[
        api.container("server", cpu="200m", memory="64Mi")]))
    running = op.start(direct_argv(api, tmp_path, "--repo", str(origin), "--forge", "local",
                                   "--batch-window", "0.5"), tmp_path)
    try:
        op.create(api, op.wrec("rec-front", "frontend", cpu="80m", container="server"),
                 op.wrec("rec-cart", "cartservice", cpu="150m", container="server"))
        op.wait_for(lambda: op.phase_of(api, "rec-cart") == model.APPLIED
                    and op.phase_of(api, "rec-front") == model.APPLYING, timeout=30)
    finally:
        assert running.stop() == 0, running.logs()[-3000:]
    # The managed one: a pull request, its live object untouched.
    front = op.rec_of(api, "rec-front")
    assert front is not None and front["status"]["pullRequest"]["branch"].startswith("dakr/")
    assert api.get("apps/v1", "Deployment", "frontend")["spec"]["template"]["spec"][
        "containers"][0]["resources"]["requests"]["cpu"] == "100m"
    branch = front["status"]["pullRequest"]["branch"]
    diff = _git(origin, "diff", "main", branch)
    assert "kubernetes-manifests/frontend.yaml" in diff and "80m" in diff
    assert "cartservice.yaml" not in diff
    # The other one: patched directly, no pull request.
    cart = op.rec_of(api, "rec-cart")
    assert cart is not None and "pullRequest" not in cart["status"]
    assert api.get("apps/v1", "Deployment", "cartservice")["spec"]["template"]["spec"][
        "containers"][0]["resources"]["requests"]["cpu"] == "150m"


def _git(repo: Path, *args: str) -> str:
    import subprocess

    return subprocess.run(["git", "--git-dir", str(repo), *args], capture_output=True,
                          text=True, check=True).stdout


DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: svc-{i}
  namespace: default
spec:
  replicas: 1
  selector:
    matchLabels: {{app: svc-{i}}}
  template:
    metadata:
      labels: {{app: svc-{i}}}
    spec:
      containers:
      - name: app
        image: registry.example/app:1
        resources:
          requests:
            cpu: 100m
            memory: 128Mi
"""


def _repo_with(tmp: Path, n: int) -> Path:
    import subprocess

    work = tmp / "seed"
    (work / "apps").mkdir(parents=True)
    for i in range(n):
        (work / "apps" / f"svc-{i}.yaml").write_text(DEPLOYMENT.format(i=i))
    origin = tmp / "origin.git"
    for cmd in (["git", "init", "-q", "--bare", str(origin)],):
        subprocess.run(cmd, check=True)
    for cmd in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"],
                ["git", "-c", "user.name=t", "-c", "user.email=t@x", "commit", "-qm", "apps"],
                ["git", "push", "-q", str(origin), "main"]):
        subprocess.run(cmd, cwd=work, check=True)
    return origin


def test_gitops_burst_is_one_pull_request(tmp_path: Path) -> None:
    n = 500
    origin = _repo_with(tmp_path, n)
    server = platform.PlatformServer(
        feed(*(op.wrec(f"rec-{i:03d}", f"svc-{i}", cpu="80m") for i in range(n)))).start()
    state = tmp_path / "state"
    running = op.start(["--repo", str(origin), "--forge", "local", "--state-dir", str(state),
                        "--policies", str(POLICIES),
            "--policy-data", str(samples.OPT_IN), "--source",
                        f"platform:{server.address}", "--batch-window", "2"], tmp_path)
    try:
        assert server.state.wait_for(lambda s: len(s.acked_ids()) == n, timeout=120)
        op.wait_for(lambda: sum(1 for u in server.state.upstream
                                if u.get("phase") == model.APPLYING) == n, timeout=180)
    finally:
        assert running.stop() == 0, running.logs()[-3000:]
        server.stop(grace=0)
    branches = [b for b in _git(origin, "branch", "--format=%(refname:short)").split()
                if b.startswith("dakr/")]
    assert len(branches) == 1, branches
    prs = json.loads((state / "pull-requests.json").read_text())
    assert len(prs["pullRequests"] if isinstance(prs, dict) else prs) == 1
    changed = _git(origin, "diff", "--name-only", "main", branches[0]).split()
    assert len(changed) == n
    assert _git(origin, "rev-list", "--count", f"main..{branches[0]}").strip() == "1"


def test_policy_unavailable_is_decided_again(cluster: KubeApi, tmp_path: Path) -> None:
    api = cluster
    with OpaServer(POLICIES, samples.DATA_FILES) as opa:
        opa.faults.status = 500  # the sidecar is up but cannot evaluate: no answer
        running = op.start(direct_argv(api, tmp_path, "--opa-url", opa.url,
                                       "--retry-max", "1"), tmp_path)
        try:
            op.create(api, op.wrec("rec-opa", "shop", cpu="90m"))

            def retrying() -> dict[str, Any] | None:
                rec = op.rec_of(api, "rec-opa")
                conds = {c["type"]: c for c in ((rec or {}).get("status") or {}).get(
                    "conditions") or []}
                c = conds.get("Retrying")
                return c if c and "next try at" in c["message"] else None

            cond = op.wait_for(retrying, timeout=20)
            assert cond["reason"] == "PolicyUnavailable" and cond["status"] == "True"
            assert op.phase_of(api, "rec-opa") == model.PENDING
            assert op.requests_of(api, "shop")["cpu"] == "100m"
            opa.faults.status = None  # the engine answers again
            op.wait_for(lambda: op.phase_of(api, "rec-opa") == model.APPLIED, timeout=20)
            assert op.requests_of(api, "shop")["cpu"] == "90m"
            m = running.metrics()
            assert value(m, "dakr_retries_total", reason="PolicyUnavailable") >= 1
        finally:
            assert running.stop() == 0, running.logs()[-3000:]


def test_killed_mid_batch_applies_nothing_twice(kubeapi: KubeApi, tmp_path: Path) -> None:
    api = kubeapi
    crds.install_crds(api)
    n = 40
    api.seed(*(api.deployment(f"svc-{i}") for i in range(n)))
    api.faults.delay(0.05, verb="patch", resource="deployments")  # a slow API server
    server = platform.PlatformServer(
        feed(*(op.wrec(f"rec-{i:02d}", f"svc-{i}", cpu="80m") for i in range(n)))).start()
    argv = direct_argv(api, tmp_path, "--source", f"platform:{server.address}")

    def applied() -> int:
        return sum(1 for o in api.items(op.API, model.WORKLOAD, "default")
                   if (o.get("status") or {}).get("phase") == model.APPLIED)

    first = op.start(argv, tmp_path, name="first")
    try:
        op.wait_for(lambda: applied() >= 5, timeout=60)
        first.kill()  # in the middle of the burst, no clean-up
        assert applied() < n
        second = op.start(argv, tmp_path, name="second")
        try:
            try:
                op.wait_for(lambda: applied() == n, timeout=120)
            except AssertionError:
                left = {o["spec"]["recommendationId"]: (o.get("status") or {})
                        for o in api.items(op.API, model.WORKLOAD, "default")
                        if (o.get("status") or {}).get("phase") != model.APPLIED}
                raise AssertionError(f"not Applied: {left}") from None
        finally:
            assert second.stop() == 0, second.logs()[-3000:]
    finally:
        if first.proc.poll() is None:
            first.kill()
        server.stop(grace=0)
    for i in range(n):
        dep = api.get("apps/v1", "Deployment", f"svc-{i}")
        assert dep["metadata"]["generation"] == 2, f"svc-{i} changed more than once"
        assert op.requests_of(api, f"svc-{i}")["cpu"] == "80m"
    assert len(api.items(op.API, model.WORKLOAD, "default")) == n  # nothing lost


def test_two_replicas_never_both_write(kubeapi: KubeApi, tmp_path: Path) -> None:
    api = kubeapi
    crds.install_crds(api)
    api.seed(*(api.deployment(f"svc-{i}") for i in range(10)))
    users = {"replica-a": "token-a", "replica-b": "token-b"}
    for user, token in users.items():
        api.add_token(token, user)
    env = {"DAKR_LEADER_ELECTION": "true", "DAKR_LEADER_ELECTION_LEASE": "dakr-leader",
           "POD_NAMESPACE": "default", "DAKR_LEADER_ELECTION_LEASE_DURATION": "3s",
           "DAKR_LEADER_ELECTION_RENEW_DEADLINE": "2s",
           "DAKR_LEADER_ELECTION_RETRY_PERIOD": "500ms"}
    replicas = {}
    for user, token in users.items():
        cfg = op.kubeconfig(api, tmp_path / f"{user}.kubeconfig", token)
        argv = ["--mode", "direct", "--store", "kube", "--kubeconfig", str(cfg),
                "--state-dir", str(tmp_path / user), "--policies", str(POLICIES),
            "--policy-data", str(samples.OPT_IN)]
        replicas[user] = op.start(argv, tmp_path, name=user,
                                  env={**env, "POD_NAME": user})

    def holder() -> str:
        lease = api.get("coordination.k8s.io/v1", "Lease", "dakr-leader")
        return str((lease.get("spec") or {}).get("holderIdentity") or "")

    try:
        leader = op.wait_for(lambda: holder().rpartition("_")[0], timeout=20)
        other = next(u for u in users if u != leader)
        op.create(api, *(op.wrec(f"rec-a{i}", f"svc-{i}", cpu="80m") for i in range(5)))
        op.wait_for(lambda: all(op.phase_of(api, f"rec-a{i}") == model.APPLIED
                                for i in range(5)), timeout=30)
        replicas[leader].kill()  # no release: the standby must wait out the lease
        op.wait_for(lambda: holder().startswith(other), timeout=30)
        op.create(api, *(op.wrec(f"rec-b{i}", f"svc-{i}", cpu="80m", memory="100Mi")
                   for i in range(5, 10)))
        op.wait_for(lambda: all(op.phase_of(api, f"rec-b{i}") == model.APPLIED
                                for i in range(5, 10)), timeout=40)
    finally:
        for r in replicas.values():
            if r.proc.poll() is None:
                r.stop()
    writes = [(w.user, w.resource) for w in api.requests.writes()
              if w.user in users and w.resource != "leases"]
    by_leader = [i for i, (u, _) in enumerate(writes) if u == leader]
    by_other = [i for i, (u, _) in enumerate(writes) if u == other]
    assert by_leader and by_other
    assert max(by_leader) < min(by_other), "the standby wrote while the leader led"
