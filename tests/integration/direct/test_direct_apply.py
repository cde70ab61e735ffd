"""Direct-apply mode against the test API server, through the real `kubernetes` client and
the real embedded OPA engine (a small test policy), with the CR store in the same server.

Cases:
- apply: only the named container's values change (the sidecar and untouched keys stay),
  the server dry-run precedes the real patch, status Applied with previous values, the
  values set, appliedAt and a condition; the rollback finalizer; an Event on the workload
  and on the recommendation; one JSON audit line per changed value (who, what, before,
  after, decision id);
- re-apply: a second run of the same file makes no write at all, and its reads are a few
  LISTs, not one GET per recommendation;
- a process that dies after the patch and before the Applied status: the next run finds
  the values it set in place and settles the recommendation Applied, sending nothing;
- conflict: another writer changes a value between our read and our patch -> the test op
  fails (422), the workload is read again and the recommendation decided again; the patch
  that follows starts from the new value (never the stale one), and when the other writer
  already set our value nothing more is written;
- HPA-owned scaling: the HPA's min/max are patched and spec.replicas is not touched; a
  replicas-only recommendation for an HPA-owned workload fails with the reason; without an
  HPA the scale subresource sets spec.replicas; StatefulSets and DaemonSets are patched;
- a write the server applied without answering (timeout after apply) is not re-sent
  blindly: the retry's test op fails, the re-read finds our value, previous values kept;
- a node group recommendation is not applied in direct mode (Failed, with the reason);
  a recommendation whose namespace does not exist fails alone, the batch goes on;
- dry-run: server-side dry-run requests only, nothing stored, no status, no CR;
- policy: a denied recommendation is Rejected without touching the workload, an audit one
  is Approved only, a gitops-routed one without a repository ends Failed with a
  WriterNotConfigured condition naming the setting (not applied directly);
- without the server-side dry-run (--no-server-dry-run): exactly one status write, the
  guarded patch and one status write; a refused change still ends Failed with the field;
- errors: 404 (the workload went away after it was read), 422 (the server's validation
  refuses the result: Failed with the field), 429 and 500 retried then applied, a 5xx that
  does not stop -> Pending with a Retrying condition (temporary), applied on the next run
  once the API answers; a conflict that never stops -> Retrying too; 403 under RBAC with
  the chart's ClusterRole (the same role bound cluster-wide lets the whole flow succeed as
  the service account);
- the rate limiter (token bucket) spaces requests beyond the burst.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from reconciler.adapters import kube
from reconciler.adapters.opa import embedded
from reconciler.adapters.store import kube as kube_store
from reconciler.config import settings
from reconciler.direct import apply as direct
from reconciler.direct import cache, rollback
from reconciler.domain import errors
from reconciler.flow import batch as flow
from tests import chart_rbac
from tests.crds import install_crds
from tests.fakes.kubeapi.handle import KubeApi

FAST = kube.Options(qps=1000, burst=1000, retries=3, backoff=0.01, backoff_max=0.05,
                    timeout=5.0)
W = "WorkloadRecommendation"
GROUP, VERSION = "dakr.devzero.io", "v1alpha1"

POLICY = """
package dakr

import rego.v1

deny contains {"rule": "test.denied", "msg": "denied by the test policy"} if {
\tinput.recommendation.spec.recommendationId == "rec-denied"
}

mode := "audit" if {
\tinput.recommendation.spec.source == "audit"
} else := "gitops" if {
\tinput.recommendation.spec.source == "gitops"
} else := "direct"

decision := {"allow": count(deny) == 0, "mode": mode, "deny": deny, "warnings": []}
"""


def rightsizing(rec_id: str, name: str = "web", kind: str = "Deployment",
                container: str = "app", requests: dict[str, str] | None = None,
                limits: dict[str, str] | None = None, namespace: str = "default",
                source: str = "") -> dict[str, Any]:
    res: dict[str, Any] = {}
    if requests:
        res["requests"] = requests
    if limits:
        res["limits"] = limits
    spec: dict[str, Any] = {"recommendationId": rec_id, "action": "Rightsizing",
                            "targetRef": {"kind": kind, "name": name},
                            "containers": [{"name": container, "resources": res}],
                            "confidence": 0.9,
                            "projectedSavings": {"monthly": 10.0, "currency": "USD"}}
    if source:
        spec["source"] = source
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": W,
            "metadata": {"namespace": namespace}, "spec": spec}


def scaling(rec_id: str, name: str = "web", replicas: int | None = None,
            hpa: dict[str, int] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"recommendationId": rec_id, "action": "ReplicaScaling",
                            "targetRef": {"kind": "Deployment", "name": name}}
    if replicas is not None:
        spec["replicas"] = replicas
    if hpa is not None:
        spec["hpa"] = hpa
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": W,
            "metadata": {"namespace": "default"}, "spec": spec}


def hpa_obj(name: str, target: str, lo: int, hi: int) -> dict[str, Any]:
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                        "name": target},
                     "minReplicas": lo, "maxReplicas": hi}}


@dataclass
class Env:
    api: KubeApi
    cfg: settings.Settings
    engine: embedded.EmbeddedEngine
    client: Any

    def adapter(self, options: kube.Options = FAST, client: Any = None) -> kube.Kube:
        """A fresh adapter (cold cache), as each CLI run has."""
        return kube.Kube(client or self.client, options, limiter=kube.RateLimiter(1000, 1000))

    def store(self, client: Any = None) -> kube_store.KubeStore:
        return kube_store.KubeStore(self.adapter(client=client))

    def run(self, *docs: dict[str, Any], dry_run: bool = False,
            api: kube.Kube | None = None, client: Any = None) -> flow.Batch:
        return direct.run(list(docs), self.cfg, self.store(client), self.engine,
                          api or self.adapter(client=client), dry_run=dry_run)

    def workload(self, name: str = "web", kind: str = "Deployment") -> dict[str, Any]:
        return self.api.get("apps/v1", kind, name)

    def rec(self, rec_id: str) -> dict[str, Any]:
        return self.api.get(f"{GROUP}/{VERSION}", W, rec_id)

    def resources(self, name: str = "web", container: str = "app",
                  kind: str = "Deployment") -> dict[str, Any]:
        for c in self.workload(name, kind)["spec"]["template"]["spec"]["containers"]:
            if c["name"] == container:
                return dict(c.get("resources") or {})
        raise AssertionError(f"no container {container}")


@pytest.fixture
def env(kubeapi: KubeApi, tmp_path: Path) -> Iterator[Env]:
    install_crds(kubeapi)
    pol = tmp_path / "policies"
    pol.mkdir()
    (pol / "p.rego").write_text(POLICY)
    engine = embedded.EmbeddedEngine(pol)
    cfg = settings.Settings(now="2026-03-01T10:00:00Z")
    kubeapi.seed(kubeapi.deployment("web", replicas=2, containers=[
        kubeapi.container("app", cpu="100m", memory="128Mi", cpu_limit="1",
                          memory_limit="512Mi"),
        kubeapi.container("sidecar", cpu="50m", memory="64Mi")]))
    try:
        yield Env(kubeapi, cfg, engine, kubeapi.api_client())
    finally:
        engine.close()


def only(batch: flow.Batch) -> Any:
    assert len(batch.items) == 1, batch.to_json()
    return batch.items[0]


# --------------------------------------------------------------------------- apply


def test_apply_rightsizing(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="reconciler.audit")
    sidecar_before = env.resources(container="sidecar")
    env.api.requests.reset()
    item = only(env.run(rightsizing("rec-1", requests={"cpu": "250m", "memory": "256Mi"})))
    assert item.phase == "Applied", item.message
    assert env.resources() == {"requests": {"cpu": "250m", "memory": "256Mi"},
                               "limits": {"cpu": "1", "memory": "512Mi"}}
    assert env.resources(container="sidecar") == sidecar_before

    # The whole conversation: the CR created with its finalizer, the way back recorded
    # in status, dry-run, the real patch, status Applied, then the two Events. No GET
    # (the cache was primed by LISTs) and no separate finalizer write.
    writes = [(r.verb, r.resource, r.subresource, "dryRun=All" in r.path or
               "dryRun" in str(r.body)) for r in env.api.requests.log if r.verb != "list"]
    assert [w[:3] for w in writes] == [
        ("create", "workloadrecommendations", ""),
        ("patch", "deployments", ""),
        ("update", "workloadrecommendations", "status"),
        ("patch", "deployments", ""),
        ("update", "workloadrecommendations", "status"),
        ("create", "events", ""), ("create", "events", "")], writes
    obj = env.rec("rec-1")
    st = obj["status"]
    assert st["phase"] == "Applied" and st["appliedAt"] == "2026-03-01T10:00:00Z"
    assert st["previous"]["containers"] == {"app": {"requests": {"cpu": "100m",
                                                                 "memory": "128Mi"}}}
    assert st["previous"]["set"]["containers"] == {"app": {"requests": {
        "cpu": "250m", "memory": "256Mi"}}}
    assert [(c["type"], c["status"], c["reason"]) for c in st["conditions"]] == [
        ("Applied", "True", "Patched")]
    assert st["decision"]["mode"] == "direct" and st["decision"]["decisionId"]
    assert cache.FINALIZER in obj["metadata"]["finalizers"]

    events = env.api.items("v1", "Event", "default")
    involved = sorted((e["involvedObject"]["kind"], e["reason"]) for e in events)
    assert involved == [("Deployment", "DakrRecommendationApplied"),
                        ("WorkloadRecommendation", "Applied")]

    lines = [json.loads(r.getMessage()) for r in caplog.records
             if r.name == "reconciler.audit"]
    assert sorted((ln["field"], ln["before"], ln["after"]) for ln in lines) == [
        ("spec.template.spec.containers[app].resources.requests.cpu", "100m", "250m"),
        ("spec.template.spec.containers[app].resources.requests.memory", "128Mi", "256Mi")]
    for ln in lines:
        assert ln["who"].startswith(kube.FIELD_MANAGER)
        assert ln["decisionId"] == st["decision"]["decisionId"]
        assert ln["object"] == {"kind": "Deployment", "namespace": "default", "name": "web"}
        assert ln["recommendationId"] == "rec-1"


def test_reapply_makes_no_write(env: Env) -> None:
    docs = [rightsizing("rec-1", requests={"cpu": "250m"}),
            scaling("rec-2", name="api", replicas=4)]
    env.api.seed(env.api.deployment("api", replicas=2))
    first = env.run(*docs)
    assert [i.phase for i in first.items] == ["Applied", "Applied"]
    before = env.workload()["metadata"]["resourceVersion"]
    env.api.requests.reset()
    second = env.run(*docs)
    assert [i.phase for i in second.items] == ["Applied", "Applied"]
    assert env.api.requests.writes() == []
    assert env.api.requests.count("get") == 0  # reads are LISTs, not one GET per item
    assert env.api.requests.count("list") <= 2
    assert env.workload()["metadata"]["resourceVersion"] == before


def test_statefulset_and_daemonset(env: Env) -> None:
    for kind in ("StatefulSet", "DaemonSet"):
        env.api.seed(env.api.deployment(kind.lower(), kind=kind))
    batch = env.run(rightsizing("rec-sts", name="statefulset", kind="StatefulSet",
                                requests={"memory": "200Mi"}),
                    rightsizing("rec-ds", name="daemonset", kind="DaemonSet",
                                limits={"cpu": "300m"}))
    assert [i.phase for i in batch.items] == ["Applied", "Applied"]
    assert env.resources("statefulset", kind="StatefulSet")["requests"]["memory"] == "200Mi"
    ds = env.resources("daemonset", kind="DaemonSet")
    assert ds == {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "300m"}}


# --------------------------------------------------------------------------- conflict


class RacingKube(kube.Kube):
    """The real adapter, with another writer's change landing just before our first
    workload write: the race a guarded patch exists for."""

    def __init__(self, *a: Any, race: Callable[[], None], **kw: Any) -> None:
        super().__init__(*a, **kw)
        self._race: Callable[[], None] | None = race

    def json_patch(self, kind: str, namespace: str, name: str, ops: Any, *,
                   dry_run: bool = False) -> dict[str, Any]:
        if self._race is not None and kind != kube.HPA:
            race, self._race = self._race, None
            race()
        return super().json_patch(kind, namespace, name, ops, dry_run=dry_run)


def _set_cpu(env: Env, value: str) -> Callable[[], None]:
    def change() -> None:
        def edit(obj: dict[str, Any]) -> None:
            obj["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"][
                "cpu"] = value
        env.api.modify("apps/v1", "Deployment", "web", edit)
    return change


def test_conflict_rereads_and_redecides(env: Env) -> None:
    api = RacingKube(env.client, FAST, race=_set_cpu(env, "150m"))
    env.api.requests.reset()
    item = only(env.run(rightsizing("rec-1", requests={"cpu": "250m"}), api=api))
    assert item.phase == "Applied", item.message
    assert env.resources()["requests"] == {"cpu": "250m", "memory": "128Mi"}
    # The stale dry-run was refused by its test op; after one re-read: dry-run + patch.
    assert env.api.requests.count("patch", "deployments") == 3
    assert env.api.requests.count("get", "deployments") == 1  # read again, once
    prev = env.rec("rec-1")["status"]["previous"]
    assert prev["containers"]["app"]["requests"]["cpu"] == "150m"  # the value re-read


def test_conflict_other_writer_already_set_our_value(env: Env) -> None:
    api = RacingKube(env.client, FAST, race=_set_cpu(env, "250m"))
    env.api.requests.reset()
    item = only(env.run(rightsizing("rec-1", requests={"cpu": "250m"}), api=api))
    assert item.phase == "Applied"
    assert item.message == "the workload already has these values"
    # Only the refused (stale) dry-run: after the re-read there was nothing left to send.
    assert env.api.requests.count("patch", "deployments") == 1
    assert env.resources()["requests"]["cpu"] == "250m"


class Crash(BaseException):
    """The process dies here (not an error anything handles)."""


def test_crash_after_the_patch_is_settled_without_deciding_again(env: Env) -> None:
    class DiesAfterPatching(kube.Kube):
        def json_patch(self, kind: str, namespace: str, name: str, ops: Any, *,
                       dry_run: bool = False) -> dict[str, Any]:
            out = super().json_patch(kind, namespace, name, ops, dry_run=dry_run)
            if not dry_run and kind == "Deployment":
                raise Crash  # patched, and gone before the status says so
            return out

    with pytest.raises(Crash):
        env.run(rightsizing("rec-1", requests={"cpu": "250m"}),
                api=DiesAfterPatching(env.client, FAST))
    assert env.rec("rec-1")["status"]["phase"] == "Applying"
    generation = env.workload()["metadata"]["generation"]
    env.api.requests.reset()
    item = only(env.run(rightsizing("rec-1", requests={"cpu": "250m"})))
    assert item.phase == "Applied" and "found in place after a restart" in item.message
    assert env.api.requests.count("patch", "deployments") == 0  # nothing sent again
    assert env.workload()["metadata"]["generation"] == generation
    status = env.rec("rec-1")["status"]
    assert status["previous"]["containers"]["app"]["requests"]["cpu"] == "100m"
    assert status["appliedAt"] == "2026-03-01T10:00:00Z"


def test_conflict_that_never_stops_is_retried_later(env: Env) -> None:
    class Always(kube.Kube):
        n = 0

        def json_patch(self, kind: str, namespace: str, name: str, ops: Any, *,
                       dry_run: bool = False) -> dict[str, Any]:
            Always.n += 1
            _set_cpu(env, f"{100 + Always.n}m")()
            return super().json_patch(kind, namespace, name, ops, dry_run=dry_run)

    item = only(env.run(rightsizing("rec-1", requests={"cpu": "250m"}),
                        api=Always(env.client, FAST)))
    # Temporary: still Pending, a Retrying condition says why, nothing of ours written.
    assert item.phase == "Pending" and "keeps changing" in item.message
    assert item.retry == "Conflict"
    cond = env.rec("rec-1")["status"]["conditions"][0]
    assert (cond["type"], cond["status"], cond["reason"]) == ("Retrying", "True", "Conflict")
    assert env.resources()["requests"]["cpu"] == f"{100 + Always.n}m"  # theirs, not ours
    assert Always.n == direct.MAX_ATTEMPTS


# --------------------------------------------------------------------------- scaling


def test_hpa_owned_scaling_patches_the_hpa(env: Env) -> None:
    env.api.seed(hpa_obj("web-hpa", "web", 2, 10))
    env.api.requests.reset()
    item = only(env.run(scaling("rec-h", hpa={"minReplicas": 3, "maxReplicas": 8})))
    assert item.phase == "Applied", item.message
    hpa = env.api.get("autoscaling/v2", "HorizontalPodAutoscaler", "web-hpa")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 8)
    assert env.workload()["spec"]["replicas"] == 2
    assert env.api.requests.count("patch", "deployments") == 0
    prev = env.rec("rec-h")["status"]["previous"]
    assert prev["hpa"] == {"minReplicas": 2, "maxReplicas": 10}
    assert prev["hpaName"] == "web-hpa"


def test_replicas_for_hpa_owned_workload_fail(env: Env) -> None:
    env.api.seed(hpa_obj("web-hpa", "web", 2, 10))
    env.api.requests.reset()
    item = only(env.run(scaling("rec-r", replicas=5)))
    assert item.phase == "Failed"
    assert "web-hpa owns the scaling" in item.message
    assert env.api.requests.count("patch", "deployments") == 0
    assert env.workload()["spec"]["replicas"] == 2


def test_scale_subresource_without_hpa(env: Env) -> None:
    env.api.requests.reset()
    item = only(env.run(scaling("rec-s", replicas=5)))
    assert item.phase == "Applied", item.message
    assert env.workload()["spec"]["replicas"] == 5
    assert env.api.requests.count("patch", "deployments", "scale") == 2  # dry-run + real
    assert env.api.requests.count("patch", "deployments", "") == 0


# --------------------------------------------------------------------------- dry run, policy


def test_dry_run_changes_nothing(env: Env) -> None:
    before = env.workload()
    env.api.requests.reset()
    item = only(env.run(rightsizing("rec-1", requests={"cpu": "250m"}), dry_run=True))
    assert item.phase == "Approved"
    assert "would change app requests.cpu 100m -> 250m" in item.message
    assert env.workload() == before
    assert not env.api.exists(f"{GROUP}/{VERSION}", W, "rec-1")
    writes = env.api.requests.writes()
    assert [(w.verb, w.resource) for w in writes] == [("patch", "deployments")]
    assert env.api.items("v1", "Event", "default") == []


def test_policy_outcomes(env: Env) -> None:
    env.api.seed(env.api.deployment("a"), env.api.deployment("b"), env.api.deployment("c"))
    before = {n: env.workload(n) for n in ("a", "b", "c")}
    batch = env.run(rightsizing("rec-denied", name="a", requests={"cpu": "1m"}),
                    rightsizing("rec-audit", name="b", requests={"cpu": "1m"}, source="audit"),
                    rightsizing("rec-gitops", name="c", requests={"cpu": "1m"},
                                source="gitops"))
    assert [i.phase for i in batch.items] == ["Rejected", "Approved", "Failed"]
    # No repository in this configuration: it says what the change needs, and how to get it.
    assert batch.items[2].message == (
        "needs a pull request (policy mode gitops); no repository is configured: set --repo "
        "(DAKR_GITOPS_REPO_URL)")
    assert {n: env.workload(n) for n in ("a", "b", "c")} == before
    assert env.rec("rec-denied")["status"]["phase"] == "Rejected"
    cond = env.rec("rec-gitops")["status"]["conditions"][0]
    assert (cond["type"], cond["reason"]) == ("Applied", "WriterNotConfigured")


# --------------------------------------------------------------------------- errors


def test_404_workload_gone_after_read(env: Env) -> None:
    api = env.adapter()
    assert api.workload("Deployment", "default", "web") is not None  # cached
    kubernetes.client.AppsV1Api(env.client).delete_namespaced_deployment("web", "default")
    item = only(env.run(rightsizing("rec-1", requests={"cpu": "250m"}), api=api))
    assert item.phase == "Failed"
    assert "not found" in item.message
    st = env.rec("rec-1")["status"]
    assert st["phase"] == "Failed" and st["conditions"][0]["reason"] == "NotFound"


def test_422_server_validation(env: Env) -> None:
    # A legacy object the server would refuse today (sidecar request above its limit): any
    # write to it is invalid, and the reason names the field.
    env.api.seed(env.api.deployment("legacy", containers=[
        env.api.container("app"),
        env.api.container("sidecar", cpu="2", cpu_limit="1")]))
    item = only(env.run(rightsizing("rec-1", name="legacy", requests={"cpu": "200m"})))
    assert item.phase == "Failed"
    assert "containers[1].resources.requests" in item.message
    assert env.resources("legacy")["requests"]["cpu"] == "100m"
    assert env.rec("rec-1")["status"]["conditions"][0]["reason"] == "Invalid"


def test_without_server_dry_run(env: Env) -> None:
    """--no-server-dry-run: the guarded patch alone (3 reads/PATCHes/status writes per
    change); a change the server refuses still ends Failed with the field named, and the
    way back had been recorded first."""
    cfg = dataclasses.replace(env.cfg, direct=settings.DirectSettings(server_dry_run=False))
    env.api.requests.reset()
    item = only(direct.run([rightsizing("rec-1", requests={"cpu": "250m"})], cfg, env.store(),
                           env.engine, env.adapter()))
    assert item.phase == "Applied" and env.resources()["requests"]["cpu"] == "250m"
    counted = [(r.verb, r.resource, r.subresource) for r in env.api.requests.log
               if r.verb in ("get", "patch", "update")]
    assert counted == [("update", "workloadrecommendations", "status"),
                       ("patch", "deployments", ""),
                       ("update", "workloadrecommendations", "status")]
    env.api.seed(env.api.deployment("legacy", containers=[
        env.api.container("app"), env.api.container("sidecar", cpu="2", cpu_limit="1")]))
    refused = only(direct.run([rightsizing("rec-2", name="legacy", requests={"cpu": "200m"})],
                              cfg, env.store(), env.engine, env.adapter()))
    assert refused.phase == "Failed" and "containers[1].resources.requests" in refused.message
    assert env.resources("legacy")["requests"]["cpu"] == "100m"


@pytest.mark.parametrize("code", [429, 500, 503])
def test_temporary_errors_are_retried(env: Env, code: int) -> None:
    env.api.faults.fail_next(2, code, verb="patch", resource="deployments")
    env.api.requests.reset()
    item = only(env.run(rightsizing("rec-1", requests={"cpu": "250m"})))
    assert item.phase == "Applied", item.message
    assert env.resources()["requests"]["cpu"] == "250m"
    # Two refused by the fault, then the dry-run and the real patch.
    assert env.api.requests.count("patch", "deployments") == 4


def test_timeout_is_retried(env: Env) -> None:
    env.api.faults.fail_next(1, "timeout", verb="patch", resource="deployments", seconds=2)
    opts = kube.Options(qps=1000, burst=1000, retries=2, backoff=0.01, timeout=0.5)
    item = only(env.run(rightsizing("rec-1", requests={"cpu": "250m"}), api=env.adapter(opts)))
    assert item.phase == "Applied", item.message
    assert env.resources()["requests"]["cpu"] == "250m"


def test_timeout_after_the_write_is_not_reapplied(env: Env) -> None:
    """The server applies our patch but the answer never comes: the retry's test op fails
    (the value is already ours), the workload is read again, nothing is left to do, and the
    previous values recorded before the write survive."""

    class LateAnswer(kube.Kube):
        def json_patch(self, kind: str, namespace: str, name: str, ops: Any, *,
                       dry_run: bool = False) -> dict[str, Any]:
            if not dry_run:
                env.api.faults.fail_next(1, "timeout", verb="patch", resource="deployments",
                                         seconds=2, after_apply=True)
            return super().json_patch(kind, namespace, name, ops, dry_run=dry_run)

    opts = kube.Options(qps=1000, burst=1000, retries=2, backoff=0.01, timeout=0.5)
    item = only(env.run(rightsizing("rec-1", requests={"cpu": "250m"}),
                        api=LateAnswer(env.client, opts)))
    assert item.phase == "Applied", item.message
    assert env.resources()["requests"]["cpu"] == "250m"
    st = env.rec("rec-1")["status"]
    assert st["previous"]["containers"]["app"]["requests"]["cpu"] == "100m"
    assert st["previous"]["set"]["containers"]["app"]["requests"]["cpu"] == "250m"
    assert rollback.rollback("rec-1", env.store(), env.adapter()).phase == "RolledBack"
    assert env.resources()["requests"]["cpu"] == "100m"


def test_missing_namespace_fails_only_that_recommendation(env: Env) -> None:
    batch = env.run(rightsizing("rec-lost", namespace="nowhere", requests={"cpu": "1"}),
                    rightsizing("rec-1", requests={"cpu": "250m"}))
    assert [i.phase for i in batch.items] == ["Failed", "Applied"]
    assert "namespaces" in batch.items[0].message and "nowhere" in batch.items[0].message


def test_node_group_recommendation_is_not_applied(env: Env) -> None:
    doc = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "NodeGroupRecommendation",
           "spec": {"recommendationId": "ng-1", "nodeGroup": "pool", "action": "scale",
                    "targetNodeCount": 2}}
    item = only(env.run(doc))
    assert item.phase == "Failed" and "direct mode" in item.message


def test_unavailable_after_retries_is_temporary(env: Env) -> None:
    env.api.faults.fail_next(50, 500, verb="patch", resource="deployments")
    item = only(env.run(rightsizing("rec-1", requests={"cpu": "250m"})))
    assert item.phase == "Pending" and "unavailable" in item.message
    assert item.retry == "ApiUnavailable"
    assert env.resources()["requests"]["cpu"] == "100m"
    status = env.rec("rec-1")["status"]
    assert status["phase"] == "Pending"
    assert [(c["type"], c["reason"]) for c in status["conditions"]] == [
        ("Retrying", "ApiUnavailable")]
    # Once the API answers again, the same recommendation applies, and the retry closes.
    env.api.faults.clear()
    again = only(env.run(rightsizing("rec-1", requests={"cpu": "250m"})))
    assert again.phase == "Applied" and env.resources()["requests"]["cpu"] == "250m"
    assert not [c for c in env.rec("rec-1")["status"]["conditions"]
                if c["type"] == "Retrying" and c["status"] == "True"]


def chart_cluster_role() -> str:
    return chart_rbac.roles()


def test_rbac_with_the_charts_cluster_role(env: Env) -> None:
    """Bound cluster-wide, the chart's ClusterRole is enough for the whole flow; bound only
    in `default` (RoleBinding), a workload in `team-b` is Forbidden -> Failed."""
    env.api.ensure_namespace("team-b")
    env.api.seed(env.api.deployment("other", namespace="team-b"))
    role = chart_cluster_role()
    assert "kind: ClusterRole" in role and "horizontalpodautoscalers" in role
    env.api.enable_rbac(role, """
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: dakr, namespace: default}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: dakr-reconciler}
subjects: [{kind: ServiceAccount, name: dakr-reconciler, namespace: dakr-operator}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: dakr-recs}
rules:
- apiGroups: [dakr.devzero.io]
  resources: [workloadrecommendations, nodegrouprecommendations]
  verbs: [get, list, watch, create, patch, update]
- apiGroups: [dakr.devzero.io]
  resources: [workloadrecommendations/status, nodegrouprecommendations/status]
  verbs: [get, patch, update]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: dakr-recs}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: dakr-recs}
subjects: [{kind: ServiceAccount, name: dakr-reconciler, namespace: dakr-operator}]
""")
    sa = env.api.service_account_client("dakr-operator", "dakr-reconciler")
    batch = env.run(rightsizing("rec-ok", requests={"cpu": "250m"}),
                    rightsizing("rec-forbidden", name="other", namespace="team-b",
                                requests={"cpu": "250m"}), client=sa)
    assert [i.phase for i in batch.items] == ["Applied", "Failed"], batch.to_json()
    assert "forbidden" in batch.items[1].message.lower()
    assert env.resources()["requests"]["cpu"] == "250m"
    other = env.api.get("apps/v1", "Deployment", "other", "team-b")
    assert other["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"][
        "cpu"] == "100m"


def test_rate_limiter_spaces_requests() -> None:
    clock = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        clock[0] += s

    lim = kube.RateLimiter(qps=10, burst=3, clock=lambda: clock[0], sleep=sleep)
    for _ in range(5):
        lim.acquire()
    assert slept == pytest.approx([0.1, 0.1])  # 3 at once, then one per 1/qps
    clock[0] += 10  # idle: the bucket refills to the burst, not beyond
    slept.clear()
    for _ in range(4):
        lim.acquire()
    assert slept == pytest.approx([0.1])
    with pytest.raises(errors.ConfigError):
        kube.RateLimiter(qps=0, burst=1)


def test_shared_limiter_is_per_process(env: Env) -> None:
    a = kube.Kube(env.client, kube.Options(qps=7.0, burst=3))
    b = kube.Kube(env.api.api_client(), kube.Options(qps=7.0, burst=3))
    assert a.limiter is b.limiter is kube.shared_limiter(7.0, 3)
    assert kube.shared_limiter(8.0, 3) is not a.limiter
