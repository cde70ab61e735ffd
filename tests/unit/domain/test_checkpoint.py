"""The pure parts of moving a pod with its state (reconciler/domain/checkpoint.py).

Cases:
- classify (table): each failed checkpoint answer -> its reason code and the words that say
  what to do: no answer (timed out or not), 500 deadline exceeded, 500 runtime without
  support, 404 from the API server (node unknown), 404 page not found (feature gate off),
  404 pod or container unknown, 403 from the API server (our nodes/proxy), 403 from the
  kubelet (the API server's nodes/checkpoint, naming the user it saw, or kubeadm's), 401,
  anything else;
- archive_problem (table): only plain `checkpoint-*.tar` names right inside the checkpoint
  directory pass (relative, `..`, other directories, nested, spaces, shell characters,
  newlines refused; another configured directory honoured);
- registry_problem and image_for (tables); restored_name and move_id;
- refusal (table): a running pod of a ReplicaSet or without a controller passes; being
  deleted, a mirror pod, not running, an unknown container, section or resource, emptyDir
  (unless allowed), StatefulSet, DaemonSet, Job and other controllers are refused;
- restore_job: pinned to the node, every taint tolerated, one container per archive with
  the env the driver contract names, the checkpoint directory read-only, registry
  credentials from the Secret only (no volume without one), no retries, the deadline; the
  default script parses (`sh -n`) and uses only variables the Job sets;
- cleanup_job: exactly the paths as arguments, the directory mounted read-write;
- job_outcome (table);
- replacement_pod: no node, no service-account token volume (other volumes kept), the
  checkpoint images only for checkpointed containers, the new resources (None removes),
  same labels, restored-from annotation (kubelet config annotations dropped), the owner,
  the source node avoided in every required term (or a new one), the pull secret once;
  the old pod unchanged;
- handover_patch guards on the owners it replaces;
- readiness (table): Ready, Failed (phase, terminal waiting reasons), Waiting with why.
"""

from __future__ import annotations

import copy
import re
import subprocess
from typing import Any

import pytest

from reconciler.domain import checkpoint as ckpt

JSON = dict[str, Any]
DIR = ckpt.CHECKPOINT_DIR
PATH = f"{DIR}/checkpoint-web-0_default-app-2026-05-01T10:00:00Z.tar"


def pod(**over: Any) -> JSON:
    base: JSON = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-0", "namespace": "shop", "uid": "u-1",
                     "labels": {"app": "web", "pod-template-hash": "abc"},
                     "annotations": {"kubernetes.io/config.seen": "x", "team": "a"},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                          "name": "web-abc", "uid": "rs-1",
                                          "controller": True}]},
        "spec": {"nodeName": "node-a",
                 "containers": [
                     {"name": "app", "image": "shop/app:1",
                      "resources": {"requests": {"cpu": "100m", "memory": "64Mi"},
                                    "limits": {"memory": "64Mi"}},
                      "volumeMounts": [{"name": "kube-api-access-x7k2p",
                                        "mountPath": "/var/run/secrets/kubernetes.io/"
                                                     "serviceaccount"},
                                       {"name": "config", "mountPath": "/etc/app"}]},
                     {"name": "proxy", "image": "shop/proxy:1",
                      "volumeMounts": [{"name": "kube-api-access-x7k2p",
                                        "mountPath": "/var/run/secrets/kubernetes.io/"
                                                     "serviceaccount"}]}],
                 "volumes": [{"name": "kube-api-access-x7k2p", "projected": {}},
                             {"name": "config", "configMap": {"name": "app"}}],
                 "ephemeralContainers": [{"name": "debug", "image": "busybox"}]},
        "status": {"phase": "Running"},
    }
    for path, value in over.items():
        target = base
        *keys, last = path.split("__")
        for k in keys:
            target = target[k]
        if value is None:
            target.pop(last, None)
        else:
            target[last] = value
    return base


# ---------------------------------------------------------------------- classify

CASES = [
    # (code, message, api_server, timed_out) -> (reason code, words)
    ((0, "read timed out", False, True), (ckpt.CHECKPOINT_TIMEOUT, "did not answer in time")),
    ((0, "connection refused", False, False), (ckpt.CHECKPOINT_FAILED, "could not ask")),
    ((500, "checkpointing of shop/web-0/app failed (rpc error: code = DeadlineExceeded desc "
           "= context deadline exceeded)", False, False),
     (ckpt.CHECKPOINT_TIMEOUT, "did not finish the checkpoint of shop/web-0/app within "
                               "timeout=60s")),
    ((500, "checkpointing failed (rpc error: code = Unknown desc = checkpoint/restore support "
           "not available)", False, False),
     (ckpt.CHECKPOINT_UNSUPPORTED, "cannot checkpoint shop/web-0/app (CRIU missing")),
    ((500, "unknown method CheckpointContainer", False, False),
     (ckpt.CHECKPOINT_UNSUPPORTED, "unknown method CheckpointContainer")),
    ((404, 'nodes "node-a" not found', True, False),
     (ckpt.CHECKPOINT_UNAVAILABLE, "node node-a is not known to the API server")),
    ((404, "404 page not found\n", False, False),
     (ckpt.CHECKPOINT_UNAVAILABLE, "ContainerCheckpoint feature gate is off")),
    ((404, "pod does not exist", False, False),
     (ckpt.CHECKPOINT_UNAVAILABLE, "does not run shop/web-0/app (the pod is gone")),
    ((403, 'nodes "node-a" is forbidden: User "system:serviceaccount:ops:dakr" cannot create '
           'resource "nodes/proxy"', True, False),
     (ckpt.CHECKPOINT_FORBIDDEN, "the reconciler's identity needs create on nodes/proxy")),
    ((403, "Forbidden (user=apiserver-kubelet, verb=create, resource=nodes, "
           "subresource=checkpoint)", False, False),
     (ckpt.CHECKPOINT_FORBIDDEN, "lacks create on nodes/checkpoint (kubernetes#126232): "
                                 "grant it to the user the kubelet sees (apiserver-kubelet)")),
    ((403, "Forbidden", False, False),
     (ckpt.CHECKPOINT_FORBIDDEN, "--user=kube-apiserver-kubelet-client")),
    ((401, "Unauthorized", False, False),
     (ckpt.CHECKPOINT_FORBIDDEN, "did not accept the API server's credentials (401)")),
    ((502, "bad gateway", True, False), (ckpt.CHECKPOINT_FAILED, "failed (HTTP 502)")),
]


@pytest.mark.parametrize(("answer", "want"), CASES)
def test_classify(answer: tuple[int, str, bool, bool], want: tuple[str, str]) -> None:
    code, message, api_server, timed_out = answer
    got = ckpt.classify(code, message, node="node-a", target="shop/web-0/app", timeout=60,
                        api_server=api_server, timed_out=timed_out)
    assert got.code == want[0]
    assert want[1] in got.reason, got.reason
    assert "\n" not in got.reason


def test_classify_keeps_the_answer_short() -> None:
    got = ckpt.classify(500, "x" * 5000, node="n", target="a/b/c", timeout=1)
    assert len(got.reason) < 600


# ---------------------------------------------------------------------- archives, images


@pytest.mark.parametrize(("path", "ok"), [
    (PATH, True),
    (f"{DIR}/checkpoint-a.b_c-d-2026.tar", True),
    ("checkpoint-web-0_default-app.tar", False),              # relative
    (f"{DIR}/../checkpoint-x.tar", False),
    (f"{DIR}/sub/checkpoint-x.tar", False),
    ("/etc/checkpoint-x.tar", False),
    (f"{DIR}/checkpoint-x.tar/", False),
    (f"{DIR}//checkpoint-x.tar", False),
    (f"{DIR}/checkpoint-x y.tar", False),
    (f"{DIR}/checkpoint-x;rm -rf.tar", False),
    (f"{DIR}/checkpoint-x$(id).tar", False),
    (f"{DIR}/checkpoint-x\n.tar", False),
    (f"{DIR}/other.tar", False),
    (f"{DIR}/checkpoint-x.tar.gz", False),
    (DIR, False),
])
def test_archive_problem(path: str, ok: bool) -> None:
    assert (ckpt.archive_problem(path) is None) == ok


def test_archive_problem_honours_another_directory() -> None:
    assert ckpt.archive_problem("/data/kubelet/checkpoints/checkpoint-x.tar",
                                "/data/kubelet/checkpoints/") is None
    assert ckpt.archive_problem(PATH, "/data/kubelet/checkpoints") is not None


@pytest.mark.parametrize(("registry", "ok"), [
    ("registry.example/checkpoints", True),
    ("registry.example:5000/team/checkpoints/", True),
    ("localhost:5000", True),
    ("", False),
    ("https://registry.example/x", False),
    ("Registry.example/x", False),
    ("registry.example/x y", False),
])
def test_registry_problem(registry: str, ok: bool) -> None:
    assert (ckpt.registry_problem(registry) is None) == ok


def test_image_for() -> None:
    assert ckpt.image_for("registry.example/ckpt/", "web-0", "app", "20260501100000") == (
        "registry.example/ckpt/web-0-app:20260501100000")
    assert ckpt.image_for("r.example", "p", "c", "2026-05-01T10:00:00Z") == (
        "r.example/p-c:2026-05-01T100000Z")


def test_restored_name_and_move_id() -> None:
    assert ckpt.restored_name("web-abc-x1") == "web-abc-x1-restored-1"
    assert ckpt.restored_name("web-abc-x1-restored-1") == "web-abc-x1-restored-2"
    assert ckpt.restored_name("web-abc-x1", 2) == "web-abc-x1-restored-3"
    long = ckpt.restored_name("a" * 253)
    assert len(long) == 253 and long.endswith("-restored-1")
    one = ckpt.move_id("shop", "web-0", "u-1", "1")
    assert re.fullmatch(r"[0-9a-f]{10}", one)
    assert one == ckpt.move_id("shop", "web-0", "u-1", "1") != ckpt.move_id(
        "shop", "web-0", "u-2", "1")


def test_capability_refusal_names_the_switch() -> None:
    text = ckpt.capability_refusal()
    assert "liveMigration.checkpointRestore: true" in text
    assert "DAKR_CHECKPOINT_RESTORE=true" in text


# ---------------------------------------------------------------------- refusal


def owned(kind: str) -> list[JSON]:
    return [{"apiVersion": "apps/v1", "kind": kind, "name": "x", "uid": "1",
             "controller": True}]


@pytest.mark.parametrize(("over", "values", "words"), [
    ({}, {"app": {"requests": {"cpu": "1"}}}, None),
    ({"metadata__ownerReferences": None}, {}, None),
    ({"metadata__ownerReferences": [{"kind": "Thing", "name": "t"}]}, {}, None),  # not ctrl
    ({"metadata__deletionTimestamp": "2026-01-01T00:00:00Z"}, {}, "is being deleted"),
    ({"metadata__annotations": {ckpt.MIRROR_ANNOTATION: "x"}}, {}, "static (mirror) pod"),
    ({"status__phase": "Pending"}, {}, "not running on a node"),
    ({"spec__nodeName": None}, {}, "not running on a node"),
    ({}, {"db": {"requests": {"cpu": "1"}}}, "has no container 'db'"),
    ({}, {"app": {"claims": {"cpu": "1"}}}, "unknown resource section(s) claims"),
    ({}, {"app": {"limits": {"nvidia.com/gpu": "1"}}}, "not nvidia.com/gpu"),
    ({"spec__volumes": [{"name": "tmp", "emptyDir": {}}]}, {}, "emptyDir volume(s) tmp"),
    ({"metadata__ownerReferences": owned("StatefulSet")}, {}, "owned by StatefulSet x: its "
                                                              "name and volumes"),
    ({"metadata__ownerReferences": owned("DaemonSet")}, {}, "one pod per node"),
    ({"metadata__ownerReferences": owned("Job")}, {}, "counts its pods' completions"),
    ({"metadata__ownerReferences": owned("Rollout")}, {}, "only pods of Deployments"),
])
def test_refusal(over: JSON, values: JSON, words: str | None) -> None:
    why = ckpt.refusal(pod(**over), values)
    if words is None:
        assert why is None
    else:
        assert why is not None and words in why and why.startswith("pod shop/web-0")


def test_refusal_allows_emptydir_when_told() -> None:
    p = pod(spec__volumes=[{"name": "tmp", "emptyDir": {}}])
    assert ckpt.refusal(p, {}, allow_emptydir=True) is None


# ---------------------------------------------------------------------- Jobs

ARCHIVES = [ckpt.Archive("app", "node-a", PATH),
            ckpt.Archive("proxy", "node-a", PATH.replace("-app-", "-proxy-"))]


def restore(secret: str = "push") -> JSON:
    return ckpt.restore_job(
        name="dakr-restore-1", namespace="ops", node="node-a", move="1",
        builds=[(a, f"r.example/web-0-{a.container}:1") for a in ARCHIVES],
        image="quay.io/buildah/stable:v1", command=ckpt.BUILD_COMMAND,
        registry_secret=secret, deadline=120)


def test_restore_job_follows_the_driver_contract() -> None:
    job = restore()
    assert job["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "dakr-reconciler",
                                         ckpt.MOVE_LABEL: "1", ckpt.ROLE_LABEL: "restore"}
    assert job["spec"]["backoffLimit"] == 0 and job["spec"]["activeDeadlineSeconds"] == 120
    spec = job["spec"]["template"]["spec"]
    assert spec["nodeName"] == "node-a" and spec["tolerations"] == [{"operator": "Exists"}]
    assert spec["restartPolicy"] == "Never" and spec["automountServiceAccountToken"] is False
    assert spec["volumes"] == [
        {"name": "checkpoints", "hostPath": {"path": DIR, "type": "Directory"}},
        {"name": "registry-auth", "secret": {"secretName": "push", "items": [
            {"key": ".dockerconfigjson", "path": "auth.json"}]}}]
    assert [c["name"] for c in spec["containers"]] == ["image-0", "image-1"]
    for c, a in zip(spec["containers"], ARCHIVES, strict=True):
        env = {e["name"]: e["value"] for e in c["env"]}
        assert env == {"CHECKPOINT_ARCHIVE": a.path,
                       "CHECKPOINT_IMAGE": f"r.example/web-0-{a.container}:1",
                       "CHECKPOINT_CONTAINER": a.container,
                       "REGISTRY_AUTH_FILE": "/run/dakr/registry/auth.json",
                       "STORAGE_DRIVER": "vfs", "BUILDAH_ISOLATION": "chroot"}
        assert c["image"] == "quay.io/buildah/stable:v1"
        assert c["command"] == list(ckpt.BUILD_COMMAND)
        assert c["volumeMounts"] == [
            {"name": "checkpoints", "mountPath": DIR, "readOnly": True},
            {"name": "registry-auth", "mountPath": "/run/dakr/registry", "readOnly": True}]


def test_restore_job_without_credentials_mounts_none() -> None:
    spec = restore(secret="")["spec"]["template"]["spec"]
    assert [v["name"] for v in spec["volumes"]] == ["checkpoints"]
    assert [m["name"] for m in spec["containers"][0]["volumeMounts"]] == ["checkpoints"]


def test_the_default_script_parses_and_reads_only_what_the_job_sets() -> None:
    subprocess.run(["sh", "-n", "-c", ckpt.BUILD_SCRIPT], check=True)
    used = set(re.findall(r"\$\{?([A-Z_]+)", ckpt.BUILD_SCRIPT))
    env = {e["name"] for e in restore()["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert used <= env
    assert ckpt.CHECKPOINT_ANNOTATION + "=$CHECKPOINT_CONTAINER" in ckpt.BUILD_SCRIPT
    for step in ("buildah from scratch", 'buildah add "$ctr" "$CHECKPOINT_ARCHIVE"',
                 'buildah commit "$ctr" "$CHECKPOINT_IMAGE"', 'buildah push "$CHECKPOINT_IMAGE"'):
        assert step in ckpt.BUILD_SCRIPT


def test_cleanup_job_removes_exactly_the_paths() -> None:
    paths = [a.path for a in ARCHIVES]
    job = ckpt.cleanup_job(name="dakr-cleanup-1", namespace="ops", node="node-a", move="1",
                           paths=paths, image="img", deadline=30)
    spec = job["spec"]["template"]["spec"]
    assert spec["nodeName"] == "node-a"
    (c,) = spec["containers"]
    assert c["command"] == ["/bin/sh", "-c", 'rm -f -- "$@"', "dakr-cleanup", *paths]
    assert c["volumeMounts"] == [{"name": "checkpoints", "mountPath": DIR}]
    assert job["metadata"]["labels"][ckpt.ROLE_LABEL] == "cleanup"
    assert job["spec"]["activeDeadlineSeconds"] == 30


def cond(kind: str, status: str = "True", reason: str = "", message: str = "") -> JSON:
    return {"type": kind, "status": status, "reason": reason, "message": message}


@pytest.mark.parametrize(("conditions", "want"), [
    ([], ("Running", "")),
    ([cond("SuccessCriteriaMet")], ("Running", "")),
    ([cond("SuccessCriteriaMet"), cond("Complete", message="done")], ("Complete", "done")),
    ([cond("FailureTarget", reason="BackoffLimitExceeded", message="limit")],
     ("Failed", "BackoffLimitExceeded: limit")),
    ([cond("Failed", reason="DeadlineExceeded")], ("Failed", "DeadlineExceeded")),
    ([cond("Failed", status="False")], ("Running", "")),
])
def test_job_outcome(conditions: list[JSON], want: tuple[str, str]) -> None:
    assert ckpt.job_outcome({"status": {"conditions": conditions}}) == want


# ---------------------------------------------------------------------- replacement

DEPLOYMENT = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "d-1",
              "controller": True}


def test_replacement_pod() -> None:
    old = pod()
    kept = copy.deepcopy(old)
    new = ckpt.replacement_pod(
        old, name="web-0-restored-1", images={"app": "r.example/web-0-app:1"},
        values={"app": {"requests": {"cpu": "250m"}, "limits": {"memory": None}}},
        owner=DEPLOYMENT, avoid_node="node-a", pull_secret="pull")
    assert old == kept
    meta, spec = new["metadata"], new["spec"]
    assert meta == {"name": "web-0-restored-1", "namespace": "shop",
                    "labels": {"app": "web", "pod-template-hash": "abc"},
                    "annotations": {"team": "a", ckpt.RESTORED_FROM: "shop/web-0"},
                    "ownerReferences": [DEPLOYMENT]}
    assert "nodeName" not in spec and "ephemeralContainers" not in spec
    assert spec["volumes"] == [{"name": "config", "configMap": {"name": "app"}}]
    app, proxy = spec["containers"]
    assert app["image"] == "r.example/web-0-app:1" and proxy["image"] == "shop/proxy:1"
    assert app["resources"] == {"requests": {"cpu": "250m", "memory": "64Mi"}}
    assert app["volumeMounts"] == [{"name": "config", "mountPath": "/etc/app"}]
    assert "volumeMounts" not in proxy
    assert spec["imagePullSecrets"] == [{"name": "pull"}]
    assert spec["affinity"] == {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "NotIn",
                                   "values": ["node-a"]}]}]}}}
    assert "status" not in new and "uid" not in meta and "resourceVersion" not in meta


def test_replacement_pod_keeps_existing_terms_and_secrets() -> None:
    term = {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["big"]}]}
    old = pod(spec__affinity={"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            copy.deepcopy(term), {"matchFields": [{"key": "metadata.name", "operator": "In",
                                                   "values": ["n1"]}]}]}}},
              spec__imagePullSecrets=[{"name": "pull"}], metadata__ownerReferences=None)
    new = ckpt.replacement_pod(old, name="x", images={}, values={}, owner=None,
                               avoid_node="node-a", pull_secret="pull")
    terms = new["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    avoid = {"key": "kubernetes.io/hostname", "operator": "NotIn", "values": ["node-a"]}
    assert terms[0]["matchExpressions"] == [*term["matchExpressions"], avoid]
    assert terms[1]["matchExpressions"] == [avoid]
    assert new["spec"]["imagePullSecrets"] == [{"name": "pull"}]
    assert "ownerReferences" not in new["metadata"]
    plain = ckpt.replacement_pod(pod(), name="x", images={}, values={}, owner=None)
    assert "affinity" not in plain["spec"] and "imagePullSecrets" not in plain["spec"]


def test_handover_patch() -> None:
    created = {"metadata": {"ownerReferences": [DEPLOYMENT]}}
    rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-abc", "uid": "rs-1",
          "controller": True, "blockOwnerDeletion": True}
    assert ckpt.handover_patch(created, rs) == [
        {"op": "test", "path": "/metadata/ownerReferences", "value": [DEPLOYMENT]},
        {"op": "replace", "path": "/metadata/ownerReferences", "value": [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-abc",
             "uid": "rs-1", "controller": True}]}]


def status(phase: str = "Running", ready: bool = False, waiting: str = "",
           **more: Any) -> JSON:
    st: JSON = {"phase": phase, "conditions": [cond("Ready", "True" if ready else "False")],
                **more}
    if waiting:
        st["containerStatuses"] = [{"name": "app", "state": {"waiting": {
            "reason": waiting, "message": "boom"}}}]
    return {"metadata": {}, "status": st}


@pytest.mark.parametrize(("obj", "want"), [
    (status(ready=True), ("Ready", "")),
    (status("Failed", message="Evicted"), ("Failed", "the pod ended (Failed): Evicted")),
    (status("Succeeded"), ("Failed", "the pod ended (Succeeded)")),
    (status(waiting="CrashLoopBackOff"), ("Failed", "container app: CrashLoopBackOff (boom)")),
    (status(waiting="CreateContainerError"), ("Failed",
                                              "container app: CreateContainerError (boom)")),
    (status("Pending", waiting="ImagePullBackOff"), ("Waiting",
                                                     "container app: ImagePullBackOff")),
    (status("Pending", conditions=[cond("PodScheduled", "False", "Unschedulable", "0/3")]),
     ("Waiting", "not scheduled: Unschedulable 0/3")),
    (status("Pending", conditions=[]), ("Waiting", "phase Pending")),
    ({"metadata": {"deletionTimestamp": "t"}, "status": {
        "phase": "Running", "conditions": [cond("Ready")]}}, ("Waiting", "phase Running")),
])
def test_readiness(obj: JSON, want: tuple[str, str]) -> None:
    assert ckpt.readiness(obj) == want
