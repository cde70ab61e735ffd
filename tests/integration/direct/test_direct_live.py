"""LiveMigration in direct mode: running pods resized in place through pods/resize.

Through direct.run and the official client against the test API server (its simulated
kubelet moves resize conditions and container statuses), with the default policy library
and the suite's opt-in, plus per-test policy data for the live-migration settings.

Cases:
- done: every pod of the Deployment (found through Deployment -> ReplicaSet -> Pod, not a
  look-alike pod with the same labels) is resized in place, its status reports the new
  values, the pod template is unchanged (no rollout), each pod's previous values are in
  status.liveMigration and were written before the first resize (request log order); a
  re-run writes nothing; API requests per resized pod are counted;
- persist: template: the template carries the values too;
- a resize that would change the QoS class is refused before anything is sent: fallback
  none -> Failed naming the setting, no pod or template touched; fallback recreate -> the
  template changes (Applied, Recreated);
- rollback (deleting the recommendation): the pods are resized back in place, the template
  untouched, phase RolledBack, finalizer released;
- dry run: the server's dry-run of each resize, nothing changed;
- without the admission webhook deployed the output says that new pods start with the
  template's values and names the setting;
- the kubelet answers: Deferred past deferredTimeoutSeconds -> fallback none puts back the
  pods already resized (Failed, DeferredTooLong), fallback recreate changes the template;
  Infeasible and Error stop at once with the kubelet's message; in progress too long stops;
- refusals: a cluster older than 1.33 (404 for pods/resize while the pod exists) ->
  ResizeUnsupported; 1.33 refusing a memory limit decrease under NotRequired (422) ->
  ResizeRefused naming the field;
- RestartContainer resizes go one pod at a time within the PodDisruptionBudget (the test
  API server records no instant below it); a budget that cannot spare a pod stops the
  resize (DisruptionBudget) with nothing resized; a workload already short of healthy pods
  is not resized at all, even without restarts;
- move: checkpoint: pods whose resize is Infeasible on their node are moved with their
  state (checkpoint, restore Job, a Ready replacement with the new values, then the old
  pod evicted, the archives cleaned up), the recommendation Applied with the moves in its
  status; the cluster not declaring checkpoint/restore: Failed naming the chart value.
Every test using the `env` fixture also asserts that no PodDisruptionBudget was breached.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

from reconciler.adapters import kube
from reconciler.adapters.opa import embedded
from reconciler.adapters.store import kube as kube_store
from reconciler.config import settings
from reconciler.direct import apply as direct
from reconciler.direct import deletions
from reconciler.flow import batch as flow
from tests import samples
from tests.crds import install_crds
from tests.fakes.kubeapi.handle import KubeApi

FAST = kube.Options(qps=1000, burst=1000, retries=3, backoff=0.01, backoff_max=0.05,
                    timeout=5.0)
GROUP, VERSION, W = "dakr.devzero.io", "v1alpha1", "WorkloadRecommendation"


def live_rec(rec_id: str, requests: dict[str, str], limits: dict[str, str] | None = None,
             name: str = "web") -> dict[str, Any]:
    res: dict[str, Any] = {"requests": requests}
    if limits:
        res["limits"] = limits
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": W,
            "metadata": {"namespace": "default"},
            "spec": {"recommendationId": rec_id, "action": "LiveMigration",
                     "targetRef": {"kind": "Deployment", "name": name},
                     "containers": [{"name": "app", "resources": res}],
                     "confidence": 0.9}}


@dataclass
class Env:
    api: KubeApi
    tmp: Path
    client: Any
    live: dict[str, Any]
    webhook: bool = True
    move: settings.MoveSettings = dataclasses.field(default_factory=settings.MoveSettings)

    def engine(self) -> embedded.EmbeddedEngine:
        data = self.tmp / "live.yaml"
        data.write_text(yaml.safe_dump({"config": {"defaults": {"liveMigration": self.live}}}))
        return embedded.EmbeddedEngine(samples.POLICIES, (*samples.DATA_FILES, data))

    def adapter(self) -> kube.Kube:
        return kube.Kube(self.client, FAST, limiter=kube.RateLimiter(1000, 1000))

    def run(self, *docs: dict[str, Any], dry_run: bool = False) -> flow.Batch:
        cfg = settings.Settings(now="2026-03-01T10:00:00Z", mode="direct", move=self.move,
                                live=settings.LiveSettings(webhook=self.webhook))
        engine = self.engine()
        try:
            return direct.run(list(docs), cfg, kube_store.KubeStore(self.adapter()), engine,
                              self.adapter(), dry_run=dry_run)
        finally:
            engine.close()

    def pods(self) -> list[dict[str, Any]]:
        return sorted((p for p in self.api.items("v1", "Pod", "default")
                       if p["metadata"]["name"].startswith("web-")),
                      key=lambda p: p["metadata"]["name"])

    def rec(self, rec_id: str) -> dict[str, Any]:
        return self.api.get(f"{GROUP}/{VERSION}", W, rec_id)

    def template(self) -> dict[str, Any]:
        dep = self.api.get("apps/v1", "Deployment", "web")
        return dict(dep["spec"]["template"]["spec"]["containers"][0]["resources"])


def app(pod: dict[str, Any], where: str = "spec") -> dict[str, Any]:
    if where == "spec":
        return dict(pod["spec"]["containers"][0]["resources"])
    return dict(pod["status"]["containerStatuses"][0].get("resources") or {})


def make_env(kubeapi: KubeApi, tmp_path: Path) -> Env:
    install_crds(kubeapi)
    kubeapi.seed_workload("web", 3, containers=[kubeapi.container(
        "app", cpu="100m", memory="128Mi", cpu_limit="1", memory_limit="512Mi")])
    # Same labels, not owned by the Deployment: never resized.
    kubeapi.seed(kubeapi.pod("lookalike", labels={"app": "web"}))
    return Env(kubeapi, tmp_path, kubeapi.api_client(), {})


@pytest.fixture
def env(kubeapi: KubeApi, tmp_path: Path) -> Iterator[Env]:
    yield make_env(kubeapi, tmp_path)
    assert kubeapi.disruptions.breaches == []  # at no instant below a budget


def only(batch: flow.Batch) -> Any:
    assert len(batch.items) == 1, batch.to_json()
    return batch.items[0]


def test_resized_in_place(env: Env) -> None:
    before_template = env.template()
    env.api.requests.reset()
    item = only(env.run(live_rec("lm-1", {"cpu": "150m", "memory": "96Mi"})))
    assert item.phase == "Applied", item.message
    assert "3 pod(s) resized" in item.message and "admission webhook" in item.message
    for pod in env.pods():
        assert app(pod)["requests"] == {"cpu": "150m", "memory": "96Mi"}
        assert app(pod, "status")["requests"] == {"cpu": "150m", "memory": "96Mi"}
        assert app(pod)["limits"] == {"cpu": "1", "memory": "512Mi"}
    assert app(env.api.get("v1", "Pod", "lookalike"))["requests"]["cpu"] == "100m"
    assert env.template() == before_template  # no rollout
    status = env.rec("lm-1")["status"]
    lm = status["liveMigration"]
    assert lm["persist"] == "webhook" and lm["template"] is False
    assert [p["state"] for p in lm["pods"]] == ["Resized"] * 3
    assert lm["pods"][0]["previous"] == {"app": {"requests": {"cpu": "100m",
                                                              "memory": "128Mi"}}}
    assert status["previous"]["set"]["containers"] == {
        "app": {"requests": {"cpu": "150m", "memory": "96Mi"}}}
    writes = [(r.verb, r.resource, r.subresource) for r in env.api.requests.log
              if r.verb not in ("get", "list", "watch")]
    assert writes.index(("update", "workloadrecommendations", "status")) < writes.index(
        ("patch", "pods", "resize"))
    assert writes.count(("patch", "pods", "resize")) == 3
    assert not any(w[0] == "patch" and w[1] == "deployments" for w in writes)
    env.api.requests.reset()
    again = only(env.run(live_rec("lm-1", {"cpu": "150m", "memory": "96Mi"})))
    assert again.phase == "Applied"
    assert env.api.requests.count("patch", "pods", "resize") == 0


def test_persist_template(env: Env) -> None:
    env.live = {"persist": "template"}
    item = only(env.run(live_rec("lm-1", {"cpu": "150m"})))
    assert item.phase == "Applied" and "template changed too" in item.message, item.message
    assert env.template()["requests"]["cpu"] == "150m"
    assert all(app(p)["requests"]["cpu"] == "150m" for p in env.pods())
    assert env.rec("lm-1")["status"]["liveMigration"]["template"] is True


@pytest.fixture
def guaranteed(env: Env) -> Env:
    env.api.seed_workload("gw", 2, containers=[env.api.container(
        "app", cpu="500m", memory="256Mi", cpu_limit="500m", memory_limit="256Mi")])
    return env


def test_qos_change_refused_fallback_none(guaranteed: Env) -> None:
    env = guaranteed
    item = only(env.run(live_rec("lm-q", {"cpu": "300m"}, name="gw")))
    assert item.phase == "Failed", item.message
    assert "QoS class from Guaranteed to Burstable" in item.message
    assert "liveMigration.fallback" in item.message
    assert env.api.requests.count("patch", "pods", "resize") == 0
    dep = env.api.get("apps/v1", "Deployment", "gw")
    assert dep["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"][
        "cpu"] == "500m"


def test_qos_change_refused_fallback_recreate(guaranteed: Env) -> None:
    env = guaranteed
    env.live = {"fallback": "recreate"}
    item = only(env.run(live_rec("lm-q", {"cpu": "300m"}, name="gw")))
    assert item.phase == "Applied" and "fallback: recreate" in item.message, item.message
    dep = env.api.get("apps/v1", "Deployment", "gw")
    assert dep["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"][
        "cpu"] == "300m"
    assert env.rec("lm-q")["status"]["conditions"][-1]["reason"] == "Recreated"
    assert env.api.requests.count("patch", "pods", "resize") == 0


def test_rollback_resizes_back(env: Env) -> None:
    item = only(env.run(live_rec("lm-1", {"cpu": "150m", "memory": "96Mi"})))
    assert item.phase == "Applied", item.message
    kubernetes.client.CustomObjectsApi(env.client).delete_namespaced_custom_object(
        GROUP, VERSION, "default", "workloadrecommendations", "lm-1")
    store = kube_store.KubeStore(env.adapter())
    (back,) = deletions.reconcile(store, env.adapter())
    assert back.phase == "RolledBack" and "3 pod(s) resized back" in back.message, back.message
    for pod in env.pods():
        assert app(pod)["requests"] == {"cpu": "100m", "memory": "128Mi"}
    assert env.template()["requests"] == {"cpu": "100m", "memory": "128Mi"}
    assert not env.api.exists(f"{GROUP}/{VERSION}", W, "lm-1")


def test_dry_run_changes_nothing(env: Env) -> None:
    item = only(env.run(live_rec("lm-1", {"cpu": "150m"}), dry_run=True))
    assert item.phase == "Approved" and "would resize 3 pod(s)" in item.message, item.message
    assert all(app(p)["requests"]["cpu"] == "100m" for p in env.pods())
    assert env.api.requests.count("patch", "pods", "resize") == 3  # each a server dry-run


def test_without_webhook_says_so(env: Env) -> None:
    env.webhook = False
    item = only(env.run(live_rec("lm-1", {"cpu": "150m"})))
    assert item.phase == "Applied"
    assert "liveMigration.enabled" in item.message and "persist: template" in item.message


def web_pods(env: Env) -> list[str]:
    return [p["metadata"]["name"] for p in env.pods()]


def test_deferred_too_long_puts_back(env: Env) -> None:
    env.live = {"deferredTimeoutSeconds": 0.5}
    first, second, _ = web_pods(env)
    env.api.kubelet.set_mode("default", second, "defer", "node busy")
    item = only(env.run(live_rec("lm-d", {"cpu": "150m"})))
    assert item.phase == "Failed", item.message
    assert "Deferred for over 0.5 s" in item.message and "node busy" in item.message
    assert f"resized back: {first}, {second}" in item.message
    assert env.rec("lm-d")["status"]["conditions"][-1]["reason"] == "DeferredTooLong"
    env.api.kubelet.release("default", second)
    assert env.api.kubelet.settled()
    assert all(app(p)["requests"]["cpu"] == "100m" for p in env.pods())
    assert env.template()["requests"]["cpu"] == "100m"


def test_deferred_too_long_falls_back_to_recreate(env: Env) -> None:
    env.live = {"deferredTimeoutSeconds": 0.5, "fallback": "recreate"}
    env.api.kubelet.set_mode("default", web_pods(env)[0], "defer")
    item = only(env.run(live_rec("lm-d", {"cpu": "150m"})))
    assert item.phase == "Applied" and "fallback: recreate" in item.message, item.message
    assert env.template()["requests"]["cpu"] == "150m"


@pytest.mark.parametrize(("mode", "message", "reason"), [
    ("infeasible", "Node didn't have enough capacity", "Infeasible"),
    ("error", "cannot decrease memory limits", "Error"),
])
def test_kubelet_stops(env: Env, mode: str, message: str, reason: str) -> None:
    env.live = {"deferredTimeoutSeconds": 600}
    env.api.kubelet.set_mode("default", web_pods(env)[0], mode, message)
    item = only(env.run(live_rec("lm-s", {"cpu": "150m"})))
    assert item.phase == "Failed" and message in item.message, item.message
    assert env.rec("lm-s")["status"]["conditions"][-1]["reason"] == reason
    assert env.api.requests.count("patch", "pods", "resize") <= 2  # one out, one back


def test_in_progress_too_long(env: Env) -> None:
    env.live = {"inProgressTimeoutSeconds": 0.5}
    env.api.kubelet.set_mode("default", web_pods(env)[0], "stall")
    item = only(env.run(live_rec("lm-p", {"cpu": "150m"})))
    assert item.phase == "Failed" and "still in progress after 0.5 s" in item.message


def test_cluster_without_resize(kubeapi_factory: Any, tmp_path: Path) -> None:
    env = make_env(kubeapi_factory(version=(1, 32)), tmp_path)
    item = only(env.run(live_rec("lm-old", {"cpu": "150m"})))
    assert item.phase == "Failed" and "Kubernetes 1.33" in item.message, item.message
    assert env.rec("lm-old")["status"]["conditions"][-1]["reason"] == "ResizeUnsupported"
    assert all(app(p)["requests"]["cpu"] == "100m" for p in env.pods())


def test_memory_limit_decrease_refused_on_133(kubeapi_factory: Any, tmp_path: Path) -> None:
    env = make_env(kubeapi_factory(version=(1, 33)), tmp_path)
    item = only(env.run(live_rec("lm-m", {"memory": "128Mi"}, {"memory": "384Mi"})))
    # The library refuses it first unless the team allows memory limit decreases.
    assert item.phase == "Rejected" and "MemoryLimitDecrease" in repr(item.decision)
    env.live = {}
    data = env.tmp / "allow.yaml"
    data.write_text(yaml.safe_dump({"config": {"defaults": {"guardrails": {
        "allowMemoryLimitDecrease": True}}}}))
    engine = embedded.EmbeddedEngine(samples.POLICIES, (*samples.DATA_FILES, data))
    try:
        cfg = settings.Settings(now="2026-03-01T10:00:00Z", mode="direct")
        batch = direct.run([live_rec("lm-m2", {"memory": "128Mi"}, {"memory": "384Mi"})],
                           cfg, kube_store.KubeStore(env.adapter()), engine, env.adapter())
    finally:
        engine.close()
    item = only(batch)
    assert item.phase == "Failed" and "limits[memory]" in item.message, item.message
    assert "RestartContainer" in item.message
    assert env.rec("lm-m2")["status"]["conditions"][-1]["reason"] == "ResizeRefused"
    assert all(app(p)["limits"]["memory"] == "512Mi" for p in env.pods())


@pytest.fixture
def restarting(kubeapi: KubeApi, tmp_path: Path) -> Iterator[Env]:
    install_crds(kubeapi)
    c = kubeapi.container("app", cpu="100m", memory="128Mi", cpu_limit="1",
                          memory_limit="512Mi")
    c["resizePolicy"] = [{"resourceName": "cpu", "restartPolicy": "RestartContainer"}]
    kubeapi.seed_workload("web", 3, containers=[c])
    yield Env(kubeapi, tmp_path, kubeapi.api_client(), {})


def test_restarting_resizes_keep_the_budget(restarting: Env) -> None:
    env = restarting
    env.api.seed(env.api.pdb("web", {"app": "web"}, min_available=2))
    env.live = {"maxPodsResizing": 3}  # the budget, not the limit, holds them to one
    item = only(env.run(live_rec("lm-r", {"cpu": "150m"})))
    assert item.phase == "Applied", item.message
    assert all(app(p, "status")["requests"]["cpu"] == "150m" for p in env.pods())
    assert env.api.disruptions.breaches == []
    assert env.api.disruptions.min_healthy[("default", "web")] == 2  # one at a time


def test_budget_that_cannot_spare_a_pod(restarting: Env) -> None:
    env = restarting
    env.api.seed(env.api.pdb("web", {"app": "web"}, min_available=3))
    env.live = {"deferredTimeoutSeconds": 0.3}
    item = only(env.run(live_rec("lm-r", {"cpu": "150m"})))
    assert item.phase == "Failed" and "PodDisruptionBudget web needs 3" in item.message
    assert env.api.requests.count("patch", "pods", "resize") == 0
    assert env.api.disruptions.breaches == []


def test_workload_short_of_its_budget_is_not_resized(kubeapi: KubeApi, tmp_path: Path) -> None:
    install_crds(kubeapi)
    kubeapi.seed_workload("web", 3, ready=2, containers=[kubeapi.container(
        "app", cpu="100m", memory="128Mi", cpu_limit="1", memory_limit="512Mi")])
    kubeapi.seed(kubeapi.pdb("web", {"app": "web"}, min_available=3))
    env = Env(kubeapi, tmp_path, kubeapi.api_client(), {"deferredTimeoutSeconds": 0.3})
    item = only(env.run(live_rec("lm-short", {"cpu": "150m"})))
    assert item.phase == "Failed" and "would be resized and PodDisruptionBudget web needs 3" \
        in item.message, item.message
    assert env.api.requests.count("patch", "pods", "resize") == 0


@pytest.fixture
def crowded(kubeapi: KubeApi, tmp_path: Path) -> Iterator[Env]:
    """Two pods on a one-core node: a 1500m request cannot fit there (Infeasible); a roomy
    second node; the kubelet starts the pods it is given."""
    install_crds(kubeapi)
    kubeapi.seed(kubeapi.node("small", cpu="1"), kubeapi.node("big", cpu="8"))
    kubeapi.ensure_namespace("dakr-operator")
    kubeapi.seed_workload("web", 2, node="small", containers=[kubeapi.container(
        "app", cpu="800m", memory="128Mi", cpu_limit="2", memory_limit="512Mi")])
    kubeapi.kubelet.run_pods = True
    yield Env(kubeapi, tmp_path, kubeapi.api_client(), {"move": "checkpoint"})
    assert kubeapi.disruptions.breaches == []


def moving(capable: bool) -> settings.MoveSettings:
    return settings.MoveSettings(checkpoint_restore=capable,
                                 registry="registry.example/checkpoints",
                                 registry_secret="push", job_namespace="dakr-operator",
                                 checkpoint_timeout=5)


def test_infeasible_pods_moved_with_their_state(crowded: Env) -> None:
    env = crowded
    env.move = moving(True)
    item = only(env.run(live_rec("lm-move", {"cpu": "1500m"})))
    assert item.phase == "Applied" and "2 moved" in item.message, item.message
    lm = env.rec("lm-move")["status"]["liveMigration"]
    assert [m["moved"] for m in lm["moves"]] == [True, True]
    assert all(m["cleanup"]["done"] for m in lm["moves"])
    assert [p["state"] for p in lm["pods"]] == ["Moved", "Moved"]
    pods = env.api.items("v1", "Pod", "default")
    assert len(pods) == 2 and all(p["spec"]["nodeName"] == "big" for p in pods)
    assert all(app(p)["requests"]["cpu"] == "1500m" for p in pods)
    assert len(env.api.kubelet.checkpoints) == 2


def test_move_refused_without_the_capability(crowded: Env) -> None:
    env = crowded
    env.move = moving(False)
    item = only(env.run(live_rec("lm-move", {"cpu": "1500m"})))
    assert item.phase == "Failed", item.message
    assert "Infeasible" in item.message and "liveMigration.checkpointRestore" in item.message
    assert env.api.kubelet.checkpoints == [] and env.api.kubelet.jobs_created == []
