"""reconciler.direct.move (a pod moved with its process state: checkpoint, restore Job,
replacement pod, eviction, cleanup) through the official client against the test API
server, whose kubelet answers checkpoints, runs Jobs and starts created pods.

Cases:
- capability off (the default): refused naming the chart value, not one request sent;
  no registry configured: refused before any request too;
- checkpoint 404 (feature gate off), 500 (no CRIU), 403 (the API server's identity lacks
  nodes/checkpoint), 500 deadline exceeded (slow runtime) and no answer at all (client
  timeout): the move ends with that reason, the old pod untouched (same resourceVersion),
  no Job, no pod created, no eviction;
- 403 from the API server itself (our identity lacks nodes/proxy, RBAC enforced): the
  reason names nodes/proxy; nothing else is sent;
- the second container's checkpoint failing: the first container's archive is still
  removed (a cleanup Job with its path), nothing else created;
- success (a Deployment's pod with two containers, a PodDisruptionBudget minAvailable 2 of
  2): one restore Job pinned to the source node with one container per archive (archive,
  image, container in env, checkpoint directory read-only, registry credentials from the
  Secret only), the replacement created only after the Job completed, with the checkpoint
  images, the new resources, the same labels, the Deployment as its controller, placed
  away from the source node, Ready before the old pod's eviction; then handed to the
  ReplicaSet; the budget never broken (`disruptions.breaches == []`, never fewer than 2
  healthy); the cleanup Job removes exactly the archive paths the kubelet gave;
- a pod without a controller moves as it is (same labels, no owner, no handover);
- the replacement's create timing out after the server stored it: the pod is found by
  name and the move goes on (no replacement left behind unknown); a Job create timing out
  the same way is answered AlreadyExists when asked again, and that Job is used;
- the restore Job failing: no replacement created, the old pod kept, archives cleaned up;
- the restore Job not finishing in time: deleted (it must push nothing later), the old pod
  kept; the cleanup Job not finishing either is a warning naming the archives;
- the replacement never Ready (CrashLoopBackOff: at once; never ready: at the deadline):
  it is deleted, the old pod kept and never evicted, archives cleaned up;
- the eviction refused (429) until the deadline: the replacement deleted, the old pod
  kept, the budget never broken, archives cleaned up;
- a watch of the replacement refused once (503): watched again, the move succeeds;
- a stop event set while the restore Job runs: no replacement is created, the move ends
  "stopped", and the archives are still removed;
- the cleanup Job failing: the move itself succeeded, the failure is a warning in the
  result and a Warning Event on the pod;
- pods that cannot be moved (StatefulSet, a ReplicaSet without Deployment, emptyDir, not
  running) are refused before any checkpoint;
- nothing of what the archives hold reaches the log, the result or the Jobs (a secret env
  value of the pod appears nowhere); the log says where each archive is (node and path);
- RBAC: with the chart's checkpointRestore rules as a service account, a move succeeds.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import threading
from typing import Any

import pytest

from reconciler.adapters import kube
from reconciler.direct import move
from reconciler.domain import checkpoint as ckpt
from tests.fakes.kubeapi.handle import KubeApi
from tests.integration.chart.support import ALWAYS, CHECKPOINT_RESTORE

JSON = dict[str, Any]
FAST = kube.Options(qps=1000, burst=1000, retries=2, backoff=0.01, backoff_max=0.02,
                    timeout=5.0)
JOBS_NS = "dakr-operator"
OPTS = move.MoveOptions(
    checkpoint_restore=True, registry="registry.example/checkpoints",
    registry_secret="checkpoint-push", pull_secret="checkpoint-pull", job_namespace=JOBS_NS,
    checkpoint_timeout=1, checkpoint_grace=0.5, restore_timeout=10, ready_timeout=10,
    eviction_timeout=1, retry_interval=0.05, cleanup_timeout=10)
WANT = {"app": {"requests": {"cpu": "300m", "memory": "256Mi"},
                "limits": {"memory": "256Mi"}}}
SECRET_VALUE = "hunter2-do-not-log"


def make_kube(k: KubeApi, client: Any = None) -> kube.Kube:
    return kube.Kube(client or k.api_client(), FAST, limiter=kube.RateLimiter(1000, 1000))


def containers() -> list[JSON]:
    app = KubeApi.container("app", cpu="100m", memory="128Mi", memory_limit="128Mi",
                            image="registry.example/shop/app:1")
    app["env"] = [{"name": "API_KEY", "value": SECRET_VALUE}]
    proxy = KubeApi.container("proxy", cpu="50m", memory="32Mi",
                              image="registry.example/shop/proxy:1")
    return [app, proxy]


def setup(k: KubeApi, *, pdb: bool = True) -> JSON:
    """Two nodes, a Deployment of two pods on node-a (two containers each), a budget that
    allows no pod down, the Jobs' namespace, pods started by the kubelet."""
    k.seed(k.node("node-a"), k.node("node-b"))
    k.ensure_namespace(JOBS_NS)
    w = k.seed_workload("web", 2, node="node-a", containers=containers())
    if pdb:
        k.seed(k.pdb("web", {"app": "web"}, min_available=2))
    k.kubelet.run_pods = True
    pod: JSON = w["pods"][0]
    return pod


def pods(k: KubeApi) -> list[str]:
    return sorted(p["metadata"]["name"] for p in k.items("v1", "Pod", "default"))


def jobs(k: KubeApi, role: str) -> list[JSON]:
    return [j for j in k.kubelet.jobs_created
            if j["metadata"]["labels"].get(ckpt.ROLE_LABEL) == role]


def order(k: KubeApi) -> list[str]:
    """The writes that matter, in the order the server got them."""
    out = []
    for i in k.requests.log:
        if i.verb == "create" and i.resource == "jobs":
            out.append(f"job {i.body['metadata']['labels'][ckpt.ROLE_LABEL]}")
        elif i.verb == "create" and i.resource == "pods" and not i.subresource:
            out.append("create replacement")
        elif i.subresource == "eviction":
            out.append("evict")
        elif i.verb == "patch" and i.resource == "pods":
            out.append("hand over")
        elif i.verb == "delete" and i.resource == "pods":
            out.append("delete replacement")
    return out


def assert_cleaned(k: KubeApi, result: move.MoveResult, paths: list[str]) -> None:
    (job,) = jobs(k, "cleanup")
    spec = job["spec"]["template"]["spec"]
    assert spec["nodeName"] == "node-a"
    (c,) = spec["containers"]
    assert c["command"] == [*ckpt.CLEANUP_COMMAND, *paths]
    assert spec["volumes"] == [{"name": "checkpoints", "hostPath": {
        "path": ckpt.CHECKPOINT_DIR, "type": "Directory"}}]
    assert result.cleanup is not None and result.cleanup.done
    assert list(result.cleanup.paths) == paths


def assert_untouched(k: KubeApi, pod: JSON) -> None:
    now = k.get("v1", "Pod", pod["metadata"]["name"])
    assert now["metadata"]["resourceVersion"] == pod["metadata"]["resourceVersion"]
    assert now["metadata"]["uid"] == pod["metadata"]["uid"]
    assert k.requests.count("create", "pods", "eviction") == 0


# ---------------------------------------------------------------------- before anything


def test_capability_off_is_refused_before_any_request(kubeapi: KubeApi) -> None:
    pod = setup(kubeapi)
    kubeapi.requests.reset()
    got = move.move_pod(make_kube(kubeapi), pod, WANT, move.MoveOptions())
    assert not got.moved and got.code == ckpt.CAPABILITY_OFF
    assert "liveMigration.checkpointRestore" in got.reason
    assert "DAKR_CHECKPOINT_RESTORE" in got.reason
    assert kubeapi.requests.log == []
    assert got.requests == 0 and got.archives == [] and got.cleanup is None


def test_no_registry_is_refused_before_any_request(kubeapi: KubeApi) -> None:
    pod = setup(kubeapi)
    kubeapi.requests.reset()
    got = move.move_pod(make_kube(kubeapi), pod, WANT,
                        move.MoveOptions(checkpoint_restore=True))
    assert got.code == ckpt.NOT_MOVABLE and "liveMigration.checkpoint.registry" in got.reason
    assert kubeapi.requests.log == []


# ---------------------------------------------------------------------- checkpoint fails


@pytest.mark.parametrize(("mode", "code", "words"), [
    ("gate-off", ckpt.CHECKPOINT_UNAVAILABLE, "ContainerCheckpoint feature gate is off"),
    ("unsupported", ckpt.CHECKPOINT_UNSUPPORTED, "checkpoint/restore support not available"),
    ("forbidden", ckpt.CHECKPOINT_FORBIDDEN,
     "the API server's identity lacks create on nodes/checkpoint (kubernetes#126232): grant"),
    ("slow", ckpt.CHECKPOINT_TIMEOUT, "did not finish the checkpoint"),
    ("no answer", ckpt.CHECKPOINT_TIMEOUT, "did not answer in time"),
])
def test_checkpoint_failures_end_the_move_untouched(kubeapi: KubeApi, mode: str, code: str,
                                                    words: str) -> None:
    pod = setup(kubeapi)
    if mode == "no answer":
        kubeapi.faults.timeout_next(seconds=5, verb="create", resource="nodes",
                                    subresource="proxy")
    else:
        kubeapi.kubelet.set_checkpoint_mode("node-a", mode)
        kubeapi.kubelet.checkpoint_delay = 1.5  # "slow": past the 1 s timeout
    before = pods(kubeapi)
    got = move.move_pod(make_kube(kubeapi), pod, WANT, OPTS)
    assert not got.moved and got.code == code, got.reason
    assert words in got.reason
    assert got.archives == [] and got.cleanup is None
    assert_untouched(kubeapi, pod)
    assert kubeapi.kubelet.jobs_created == []
    assert pods(kubeapi) == before
    assert kubeapi.requests.count("create", "nodes", "proxy") == 1  # never retried
    if code == ckpt.CHECKPOINT_TIMEOUT:
        assert any("may still write an archive" in w for w in got.warnings)
    if mode == "forbidden":
        assert "--user=kube-apiserver-kubelet-client" in got.reason


def test_our_identity_without_nodes_proxy_is_told_so(kubeapi: KubeApi) -> None:
    pod = setup(kubeapi)
    kubeapi.enable_rbac(role_yaml({("", "pods"): {"get"}, ("apps", "replicasets"): {"get"}}))
    client = kubeapi.service_account_client(JOBS_NS, "dakr-reconciler")
    got = move.move_pod(make_kube(kubeapi, client), pod, WANT, OPTS)
    assert got.code == ckpt.CHECKPOINT_FORBIDDEN
    assert "reconciler's identity needs create on nodes/proxy" in got.reason
    assert kubeapi.kubelet.checkpoints == [] and kubeapi.kubelet.jobs_created == []
    assert_untouched(kubeapi, pod)


def test_second_checkpoint_failing_still_removes_the_first_archive(kubeapi: KubeApi) -> None:
    pod = setup(kubeapi)
    kubeapi.faults.delay(0.0, n=1, verb="create", resource="nodes", subresource="proxy")
    kubeapi.faults.fail_next(1, 500, verb="create", resource="nodes", subresource="proxy",
                             message="checkpointing failed: disk full")
    got = move.move_pod(make_kube(kubeapi), pod, WANT, OPTS)
    assert got.code == ckpt.CHECKPOINT_UNSUPPORTED and "disk full" in got.reason
    (first,) = kubeapi.kubelet.checkpoints
    assert [a.to_dict() for a in got.archives] == [
        {"container": "app", "node": "node-a", "path": first}]
    assert jobs(kubeapi, "restore") == []
    assert_cleaned(kubeapi, got, [first])
    assert_untouched(kubeapi, pod)
    assert order(kubeapi) == ["job cleanup"]


# ---------------------------------------------------------------------- success


def test_move_restores_then_evicts_within_the_budget(kubeapi: KubeApi) -> None:
    pod = setup(kubeapi)
    got = move.move_pod(make_kube(kubeapi), pod, WANT, OPTS)
    assert got.moved, got.reason
    assert got.code == "" and got.warnings == []
    paths = list(kubeapi.kubelet.checkpoints)
    assert [(a.container, a.node, a.path) for a in got.archives] == [
        ("app", "node-a", paths[0]), ("proxy", "node-a", paths[1])]
    assert order(kubeapi) == ["job restore", "create replacement", "evict", "hand over",
                              "job cleanup"]

    # The restore Job: on the archives' node, one container per archive.
    (job,) = jobs(kubeapi, "restore")
    assert got.restore_job == f"{JOBS_NS}/{job['metadata']['name']}"
    spec = job["spec"]["template"]["spec"]
    assert spec["nodeName"] == "node-a" and spec["restartPolicy"] == "Never"
    assert job["spec"]["backoffLimit"] == 0
    envs = [{e["name"]: e.get("value") for e in c["env"]} for c in spec["containers"]]
    assert [(e["CHECKPOINT_CONTAINER"], e["CHECKPOINT_ARCHIVE"], e["CHECKPOINT_IMAGE"])
            for e in envs] == [(c, p, got.images[c]) for c, p in zip(
                ("app", "proxy"), paths, strict=True)]
    assert got.images["app"].startswith("registry.example/checkpoints/" +
                                        pod["metadata"]["name"] + "-app:")
    for c in spec["containers"]:
        assert c["image"] == ckpt.DEFAULT_IMAGE and c["command"] == list(ckpt.BUILD_COMMAND)
        assert {"name": "checkpoints", "mountPath": ckpt.CHECKPOINT_DIR,
                "readOnly": True} in c["volumeMounts"]
        assert all("valueFrom" not in e for e in c["env"])
    assert {"name": "registry-auth", "secret": {
        "secretName": "checkpoint-push",
        "items": [{"key": ".dockerconfigjson", "path": "auth.json"}]}} in spec["volumes"]

    # The replacement: images, resources, labels, owner, elsewhere, Ready.
    name = got.replacement.split("/")[1]
    assert name == pod["metadata"]["name"] + "-restored-1"
    new = kubeapi.get("v1", "Pod", name)
    assert new["spec"]["nodeName"] == "node-b" == got.replacement_node
    assert new["metadata"]["labels"] == pod["metadata"]["labels"]
    assert new["metadata"]["annotations"][ckpt.RESTORED_FROM] == (
        f"default/{pod['metadata']['name']}")
    by_name = {c["name"]: c for c in new["spec"]["containers"]}
    assert by_name["app"]["image"] == got.images["app"]
    assert by_name["proxy"]["image"] == got.images["proxy"]
    assert by_name["app"]["resources"] == WANT["app"]
    assert by_name["proxy"]["resources"] == containers()[1]["resources"]
    assert by_name["app"]["env"] == containers()[0]["env"]
    assert new["spec"]["imagePullSecrets"] == [{"name": "checkpoint-pull"}]
    rs = kubeapi.get("apps/v1", "ReplicaSet", "web-5d8f7c9b4")
    assert new["metadata"]["ownerReferences"] == [{
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d8f7c9b4",
        "uid": rs["metadata"]["uid"], "controller": True}]
    created = next(i.body for i in kubeapi.requests.log
                   if i.verb == "create" and i.resource == "pods" and not i.subresource)
    deployment = kubeapi.get("apps/v1", "Deployment", "web")
    assert created["metadata"]["ownerReferences"] == [{
        "apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
        "uid": deployment["metadata"]["uid"], "controller": True}]
    assert got.owner == "ReplicaSet/web-5d8f7c9b4"

    # The old pod evicted, the budget kept at every instant.
    assert got.evicted
    assert not kubeapi.exists("v1", "Pod", pod["metadata"]["name"])
    assert pods(kubeapi) == sorted([name, "web-5d8f7c9b4-00001"])
    assert kubeapi.disruptions.breaches == []
    assert kubeapi.disruptions.min_healthy[("default", "web")] >= 2
    assert_cleaned(kubeapi, got, paths)


def test_bare_pod_moves_as_it_is(kubeapi: KubeApi) -> None:
    kubeapi.seed(kubeapi.node("node-a"), kubeapi.node("node-b"))
    kubeapi.ensure_namespace(JOBS_NS)
    (pod,) = kubeapi.seed(kubeapi.pod("solo", labels={"app": "solo"}, node="node-a",
                                      containers=containers()[:1]))
    kubeapi.kubelet.run_pods = True
    got = move.move_pod(make_kube(kubeapi), pod, WANT, OPTS)
    assert got.moved, got.reason
    new = kubeapi.get("v1", "Pod", "solo-restored-1")
    assert new["metadata"]["labels"] == {"app": "solo"}
    assert "ownerReferences" not in new["metadata"] and got.owner == ""
    assert order(kubeapi) == ["job restore", "create replacement", "evict", "job cleanup"]
    assert not kubeapi.exists("v1", "Pod", "solo")


def test_creates_without_an_answer_are_found_not_left_behind(kubeapi: KubeApi) -> None:
    pod = setup(kubeapi)
    impatient = kube.Kube(kubeapi.api_client(), kube.Options(
        qps=1000, burst=1000, retries=0, backoff=0.01, timeout=1.0),
        limiter=kube.RateLimiter(1000, 1000))
    kubeapi.faults.timeout_next(1, seconds=3, verb="create", resource="pods", subresource="",
                                after_apply=True)
    kubeapi.faults.timeout_next(1, seconds=3, verb="create", resource="jobs",
                                after_apply=True)
    got = move.move_pod(impatient, pod, WANT, OPTS)
    assert got.moved, got.reason
    assert got.replacement == f"default/{pod['metadata']['name']}-restored-1"
    assert pods(kubeapi) == sorted([got.replacement.split("/")[1], "web-5d8f7c9b4-00001"])
    assert kubeapi.requests.count("create", "pods", "") == 1
    assert kubeapi.requests.count("create", "jobs") == 3  # restore twice, cleanup once
    assert len(jobs(kubeapi, "restore")) == 1 and got.cleanup is not None
    assert got.cleanup.done


# ---------------------------------------------------------------------- later failures


def test_restore_job_failure_keeps_the_old_pod(kubeapi: KubeApi) -> None:
    pod = setup(kubeapi)
    kubeapi.kubelet.fail_jobs(r"^dakr-restore-", "BackoffLimitExceeded: push denied")
    got = move.move_pod(make_kube(kubeapi), pod, WANT, OPTS)
    assert got.code == ckpt.RESTORE_FAILED and "push denied" in got.reason
    assert "kubectl -n dakr-operator logs job/dakr-restore-" in got.reason
    assert got.replacement == ""
    assert order(kubeapi) == ["job restore", "job cleanup"]
    assert_untouched(kubeapi, pod)
    assert_cleaned(kubeapi, got, list(kubeapi.kubelet.checkpoints))


def test_restore_job_too_slow_is_deleted(kubeapi: KubeApi) -> None:
    pod = setup(kubeapi)
    kubeapi.kubelet.job_delay = 60.0
    options = dataclasses.replace(OPTS, restore_timeout=1, cleanup_timeout=1, job_grace=0.2)
    got = move.move_pod(make_kube(kubeapi), pod, WANT, options)
    assert got.code == ckpt.RESTORE_FAILED
    assert "did not finish within 1s (deleted, so that it pushes nothing later)" in got.reason
    (restore,) = jobs(kubeapi, "restore")
    assert not kubeapi.exists("batch/v1", "Job", restore["metadata"]["name"], JOBS_NS)
    assert got.replacement == "" and kubeapi.requests.count("create", "pods", "") == 0
    assert_untouched(kubeapi, pod)
    (cleanup,) = jobs(kubeapi, "cleanup")
    paths = list(kubeapi.kubelet.checkpoints)
    assert cleanup["spec"]["template"]["spec"]["containers"][0]["command"][4:] == paths
    assert got.cleanup is not None and not got.cleanup.done
    (warning,) = got.warnings
    assert "did not finish in time" in warning and all(p in warning for p in paths)


@pytest.mark.parametrize(("reason", "words"), [
    ("CrashLoopBackOff", "failed: container app: CrashLoopBackOff"),
    ("ContainerCreating", "was not Ready within 1s (container app: ContainerCreating)"),
])
def test_replacement_never_ready_is_removed(kubeapi: KubeApi, reason: str,
                                            words: str) -> None:
    pod = setup(kubeapi)
    kubeapi.kubelet.fail_pods(r"-restored-", reason)
    options = dataclasses.replace(OPTS, ready_timeout=1.0)
    got = move.move_pod(make_kube(kubeapi), pod, WANT, options)
    assert got.code == ckpt.REPLACEMENT_NOT_READY and words in got.reason, got.reason
    assert got.replacement_removed
    assert not kubeapi.exists("v1", "Pod", got.replacement.split("/")[1])
    assert order(kubeapi) == ["job restore", "create replacement", "delete replacement",
                              "job cleanup"]
    assert_untouched(kubeapi, pod)
    assert kubeapi.disruptions.breaches == []
    assert_cleaned(kubeapi, got, list(kubeapi.kubelet.checkpoints))


def test_eviction_refused_until_the_deadline_removes_the_replacement(
        kubeapi: KubeApi) -> None:
    pod = setup(kubeapi)
    kubeapi.faults.fail_next(1000, 429, verb="create", resource="pods",
                             subresource="eviction",
                             message="Cannot evict pod as it would violate the pod's "
                                     "disruption budget.")
    got = move.move_pod(make_kube(kubeapi), pod, WANT, OPTS)
    assert got.code == ckpt.EVICTION_BLOCKED, got.reason
    assert "could not be evicted within 1s" in got.reason
    assert "disruption budget" in got.reason
    assert got.replacement_removed and not got.evicted
    assert kubeapi.requests.count("create", "pods", "eviction") > 1  # asked again
    assert kubeapi.exists("v1", "Pod", pod["metadata"]["name"])
    assert not kubeapi.exists("v1", "Pod", got.replacement.split("/")[1])
    assert kubeapi.disruptions.breaches == []
    assert_cleaned(kubeapi, got, list(kubeapi.kubelet.checkpoints))


def test_a_refused_watch_is_opened_again(kubeapi: KubeApi) -> None:
    pod = setup(kubeapi)
    kubeapi.faults.fail_next(1, 503, verb="watch", resource="pods")
    got = move.move_pod(make_kube(kubeapi), pod, WANT, OPTS)
    assert got.moved, got.reason
    assert kubeapi.requests.count("watch", "pods") >= 2


def test_stop_ends_the_move_and_still_cleans_up(kubeapi: KubeApi) -> None:
    pod = setup(kubeapi)
    kubeapi.kubelet.job_delay = 0.5
    stop = threading.Event()

    def stop_once_the_job_exists() -> None:
        while not kubeapi.kubelet.jobs_created and not stop.wait(0.01):
            pass
        stop.set()

    helper = threading.Thread(target=stop_once_the_job_exists)
    helper.start()
    try:
        got = move.move_pod(make_kube(kubeapi), pod, WANT, OPTS, stop=stop)
    finally:
        stop.set()
        helper.join()
    assert got.code == ckpt.MOVE_FAILED and "stopped" in got.reason
    assert got.replacement == "" and kubeapi.requests.count("create", "pods", "") == 0
    assert_untouched(kubeapi, pod)
    assert_cleaned(kubeapi, got, list(kubeapi.kubelet.checkpoints))


def test_cleanup_failure_is_a_warning_never_dropped(kubeapi: KubeApi) -> None:
    pod = setup(kubeapi)
    kubeapi.kubelet.fail_jobs(r"^dakr-cleanup-", "DeadlineExceeded: node unreachable")
    got = move.move_pod(make_kube(kubeapi), pod, WANT, OPTS)
    assert got.moved
    assert got.cleanup is not None and not got.cleanup.done
    (warning,) = got.warnings
    assert "cleanup Job" in warning and "failed" in warning
    assert "node unreachable" in warning and kubeapi.kubelet.checkpoints[0] in warning
    assert got.cleanup.message == warning
    events = [e for e in kubeapi.items("v1", "Event", "default")
              if e["reason"] == "DakrCheckpointCleanupFailed"]
    assert [(e["type"], e["involvedObject"]["name"]) for e in events] == [
        ("Warning", pod["metadata"]["name"])]


@pytest.mark.parametrize("case", ["statefulset", "replicaset-alone", "emptydir", "pending"])
def test_pods_that_cannot_move_are_refused_before_a_checkpoint(kubeapi: KubeApi,
                                                                case: str) -> None:
    kubeapi.seed(kubeapi.node("node-a"), kubeapi.node("node-b"))
    if case == "statefulset":
        pod = kubeapi.seed_workload("db", 1, node="node-a", kind="StatefulSet")["pods"][0]
        words = "owned by StatefulSet db"
    elif case == "replicaset-alone":
        (rs,) = kubeapi.seed({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                              "metadata": {"name": "loose", "namespace": "default"},
                              "spec": {"replicas": 1,
                                       "selector": {"matchLabels": {"app": "loose"}}}})
        ref = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "loose",
               "uid": rs["metadata"]["uid"], "controller": True}
        (pod,) = kubeapi.seed(kubeapi.pod("loose-1", labels={"app": "loose"}, node="node-a",
                                          owner=ref))
        words = "which no Deployment owns"
    elif case == "emptydir":
        body = kubeapi.pod("scratch", node="node-a")
        body["spec"]["volumes"] = [{"name": "tmp", "emptyDir": {}}]
        (pod,) = kubeapi.seed(body)
        words = "emptyDir volume(s) tmp"
    else:
        (pod,) = kubeapi.seed(kubeapi.pod("waiting", node="node-a", phase="Pending"))
        words = "not running on a node"
    got = move.move_pod(make_kube(kubeapi), pod, {}, OPTS)
    assert got.code == ckpt.NOT_MOVABLE and words in got.reason, got.reason
    assert kubeapi.requests.count("create", "nodes", "proxy") == 0
    assert kubeapi.kubelet.jobs_created == [] and got.archives == []


# ---------------------------------------------------------------------- secrets, RBAC


def test_nothing_the_archives_hold_is_logged(kubeapi: KubeApi,
                                             caplog: pytest.LogCaptureFixture) -> None:
    pod = setup(kubeapi)
    caplog.set_level(logging.DEBUG)
    got = move.move_pod(make_kube(kubeapi), pod, WANT, OPTS)
    assert got.moved
    assert SECRET_VALUE not in caplog.text
    assert SECRET_VALUE not in json.dumps(got.to_dict())
    assert SECRET_VALUE not in json.dumps(kubeapi.kubelet.jobs_created)
    for path in kubeapi.kubelet.checkpoints:  # where each archive is: node and path
        assert f"archive on node node-a at {path}" in caplog.text


def role_yaml(rules: dict[tuple[str, str], Any]) -> str:
    """A ClusterRole with these (group, resource) -> verbs, bound to the operator's
    service account."""
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "mover"},
            "rules": [{"apiGroups": [g], "resources": [r], "verbs": sorted(v)}
                      for (g, r), v in sorted(rules.items())]}
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": "mover"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                           "name": "mover"},
               "subjects": [{"kind": "ServiceAccount", "name": "dakr-reconciler",
                             "namespace": JOBS_NS}]}
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": [role, binding]})


def test_the_charts_rules_are_enough(kubeapi: KubeApi) -> None:
    pod = setup(kubeapi)
    rules = {**copy.deepcopy(ALWAYS)}
    for key, verbs in CHECKPOINT_RESTORE.items():
        rules[key] = rules.get(key, frozenset()) | verbs
    kubeapi.enable_rbac(role_yaml(rules))
    client = kubeapi.service_account_client(JOBS_NS, "dakr-reconciler")
    got = move.move_pod(make_kube(kubeapi, client), pod, WANT, OPTS)
    assert got.moved, got.reason
    assert got.cleanup is not None and got.cleanup.done and got.warnings == []


def test_client_sends_the_checkpoint_as_the_kubelet_expects(kubeapi: KubeApi) -> None:
    """The request itself: POST, each path segment on its own (the timeout in the query
    is proved by the "slow" case above: without it the kubelet would wait 2 minutes)."""
    setup(kubeapi)
    answer = make_kube(kubeapi).checkpoint("node-a", "default", "web-5d8f7c9b4-00000", "app",
                                           timeout=7)
    assert answer.ok and answer.paths == tuple(kubeapi.kubelet.checkpoints)
    (info,) = [i for i in kubeapi.requests.log if i.subresource == "proxy"]
    assert (info.method, info.verb) == ("POST", "create")
    assert info.path == ("/api/v1/nodes/node-a/proxy/checkpoint/default/"
                         "web-5d8f7c9b4-00000/app")
