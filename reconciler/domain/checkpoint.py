"""Moving a pod with its process state (checkpoint/restore), as data.

Pure: the executor (``reconciler/direct/move.py``) sends the requests and waits; every
manifest it creates and every judgement it makes about an answer is built here, so that
each is one table test. What the systems do is in ``REFERENCE.md`` ("Container
checkpoint", "Restore", "Eviction API"):

- the kubelet checkpoints one container per request,
  ``POST /api/v1/nodes/{node}/proxy/checkpoint/{namespace}/{pod}/{container}?timeout=N``,
  and answers ``{"items": [archive path]}``; its failures each mean something else
  (``classify``);
- the archive holds the container's whole memory, secrets included, on the node's disk
  (``/var/lib/kubelet/checkpoints``), and nothing ever removes it: ``cleanup_job``;
- an archive becomes an image the runtime restores from (``restore_job``: the driver
  contract is in ``reconciler/direct/move.py``), and a pod whose containers name those
  images restores them (``replacement_pod``).

The replacement pod and its owners
----------------------------------
A copy of a ReplicaSet's pod cannot simply carry the same labels and no owner: the
ReplicaSet adopts any orphan its selector matches, counts one pod too many and deletes
the one it ranks lowest, which is the replacement while it is still starting (not ready
before ready). Nor can it carry other labels: Services would not route to it, and the
PodDisruptionBudget would not count it, so the eviction of the old pod would have to be
allowed without it. So the replacement keeps every label (Services and budgets see it as
one of the workload's pods) and is created with the *Deployment* as its controller
(``ownerReferences``, ``controller: true``): a ReplicaSet never adopts a pod another
controller owns, the Deployment controller only manages ReplicaSets, the disruption
controller finds the workload's scale through the Deployment's scale subresource, and the
garbage collector removes the pod with the Deployment. Once the old pod is evicted, the
replacement is handed to the old pod's ReplicaSet (``handover_patch``): the ReplicaSet
then owns it as one of its pods, and the pod it created meanwhile for the evicted one,
not ready yet, is the one it removes. Pods without a controller are copied as they are;
pods of StatefulSets (their name and volumes are their identity), DaemonSets (one per
node), Jobs and other controllers, and ReplicaSets without a Deployment, are not moved
(``refusal``).
"""

from __future__ import annotations

import copy
import hashlib
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reconciler.domain import resize as rz

JSON = dict[str, Any]
Values = rz.Values

DEFAULT_IMAGE = "quay.io/buildah/stable"
CHECKPOINT_DIR = "/var/lib/kubelet/checkpoints"
# CRI-O restores a container whose image carries this annotation (the container's name).
CHECKPOINT_ANNOTATION = "io.kubernetes.cri-o.annotations.checkpoint.name"
RESTORED_FROM = "dakr.devzero.io/restored-from"        # annotation on the replacement
MOVE_LABEL = "dakr.devzero.io/move"                    # label on the Jobs of one move
ROLE_LABEL = "dakr.devzero.io/role"                    # restore | cleanup
MANAGED_BY = ("app.kubernetes.io/managed-by", "dakr-reconciler")
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
REGISTRY_AUTH_DIR = "/run/dakr/registry"
SERVICE_ACCOUNT_VOLUME = re.compile(r"kube-api-access-[a-z0-9]+")

# The driver's default: one image per container, built and pushed with buildah (the
# "Forensic container checkpointing" recipe). Everything it needs comes from the
# environment (see restore_job); nothing is interpolated into the script.
BUILD_SCRIPT = """\
set -eu
if [ -f "$REGISTRY_AUTH_FILE" ]; then export REGISTRY_AUTH_FILE; else unset REGISTRY_AUTH_FILE; fi
ctr=$(buildah from scratch)
buildah add "$ctr" "$CHECKPOINT_ARCHIVE" /
buildah config \\
  --annotation "io.kubernetes.cri-o.annotations.checkpoint.name=$CHECKPOINT_CONTAINER" "$ctr"
buildah commit "$ctr" "$CHECKPOINT_IMAGE"
buildah rm "$ctr"
buildah push "$CHECKPOINT_IMAGE"
"""
BUILD_COMMAND = ("/bin/sh", "-c", BUILD_SCRIPT)
# The cleanup removes exactly the archives it is given (arguments, never a pattern).
CLEANUP_COMMAND = ("/bin/sh", "-c", 'rm -f -- "$@"', "dakr-cleanup")

# Why a move ended (the result's and the status condition's reason).
CAPABILITY_OFF = "CheckpointRestoreDisabled"
NOT_MOVABLE = "NotMovable"
CHECKPOINT_UNAVAILABLE = "CheckpointUnavailable"    # 404: gate off, pod or node unknown
CHECKPOINT_UNSUPPORTED = "CheckpointUnsupported"    # 500: the runtime cannot checkpoint
CHECKPOINT_FORBIDDEN = "CheckpointForbidden"        # 401 / 403
CHECKPOINT_TIMEOUT = "CheckpointTimeout"
CHECKPOINT_FAILED = "CheckpointFailed"              # anything else
RESTORE_FAILED = "RestoreFailed"                    # the restore Job failed or timed out
REPLACEMENT_NOT_READY = "ReplacementNotReady"
EVICTION_BLOCKED = "EvictionBlocked"
MOVE_FAILED = "MoveFailed"                          # an API request failed

CHART_VALUE = "liveMigration.checkpointRestore"
ENV_VARIABLE = "DAKR_CHECKPOINT_RESTORE"
APISERVER_USER = "kube-apiserver-kubelet-client"  # kubeadm's name for it

# A container state that will not become ready without a change: the restore failed.
TERMINAL_WAITING = frozenset({"CrashLoopBackOff", "CreateContainerError",
                              "CreateContainerConfigError", "InvalidImageName",
                              "ErrImageNeverPull", "RunContainerError"})


@dataclass(frozen=True)
class Archive:
    """Where one container's checkpoint is: the node's disk, never read by us."""

    container: str
    node: str
    path: str

    def to_dict(self) -> JSON:
        return {"container": self.container, "node": self.node, "path": self.path}


@dataclass(frozen=True)
class Verdict:
    """Why a step ended the move: a reason code and the words for people."""

    code: str
    reason: str


# --------------------------------------------------------------------------- capability


def capability_refusal() -> str:
    return ("checkpoint/restore is not enabled for this cluster: container runtimes ship "
            "restore switched off (containerd 2.3: enable_experimental_restore_via_create; "
            "CRI-O: checkpoint_restore.container_level_enabled), so the cluster must declare "
            f"it: set the chart value {CHART_VALUE}: true (env {ENV_VARIABLE}=true) once "
            "every node's runtime restores checkpoints")


# --------------------------------------------------------------------------- the pod


def controller_of(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if isinstance(ref, Mapping) and ref.get("controller"):
            return ref
    return None


def refusal(pod: Mapping[str, Any], values: Values, *, allow_emptydir: bool = False
            ) -> str | None:
    """Why this pod cannot be moved with its state (before anything is sent), or None.
    Whether a ReplicaSet owner belongs to a Deployment is the executor's to find out."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    name = f"pod {meta.get('namespace', '')}/{meta.get('name', '')}"
    if meta.get("deletionTimestamp"):
        return f"{name} is being deleted"
    if MIRROR_ANNOTATION in (meta.get("annotations") or {}):
        return f"{name} is a static (mirror) pod: the kubelet runs it from a file"
    if (pod.get("status") or {}).get("phase") != "Running" or not spec.get("nodeName"):
        return f"{name} is not running on a node: there is no process state to move"
    names = [str(c.get("name")) for c in rz.containers(pod)]
    for cname, secs in values.items():
        if cname not in names:
            return f"{name} has no container {cname!r}"
        bad = sorted(set(secs) - {"requests", "limits"})
        if bad:
            return f"{name}: unknown resource section(s) {', '.join(bad)}"
        extra = sorted({r for vals in secs.values() for r in vals} - {"cpu", "memory"})
        if extra:
            return f"{name}: only cpu and memory are moved, not {', '.join(extra)}"
    volumes = [str(v.get("name")) for v in spec.get("volumes") or []
               if isinstance(v, Mapping) and "emptyDir" in v]
    if volumes and not allow_emptydir:
        return (f"{name} uses emptyDir volume(s) {', '.join(volumes)}: a checkpoint holds the "
                "containers' memory and files, not volumes, so the restored process would "
                "find them empty")
    owner = controller_of(pod)
    if owner is None or owner.get("kind") == "ReplicaSet":
        return None
    kind = str(owner.get("kind"))
    why = {
        "StatefulSet": "its name and volumes are its identity: a copy under another name is "
                       "not a member of the StatefulSet",
        "DaemonSet": "a DaemonSet runs one pod per node: moving it off its node is the "
                     "DaemonSet's job",
        "Job": "a Job counts its pods' completions: a copy would not be counted",
    }.get(kind, "only pods of Deployments, or pods without a controller, are moved")
    return f"{name} is owned by {kind} {owner.get('name')}: {why}"


def restored_name(old: str, attempt: int = 0) -> str:
    """``<old>-restored-<n>``: one more than the pod it replaces, when that was a
    replacement itself (plus ``attempt`` when the name is taken)."""
    m = re.fullmatch(r"(.+)-restored-(\d+)", old)
    base, n = (m.group(1), int(m.group(2)) + 1) if m else (old, 1)
    suffix = f"-restored-{n + attempt}"
    return base[:253 - len(suffix)].rstrip("-.") + suffix


def move_id(namespace: str, pod: str, uid: str, stamp: str) -> str:
    """A short id naming the Jobs of one move (a DNS label part)."""
    return hashlib.sha256(f"{namespace}/{pod}/{uid}/{stamp}".encode()).hexdigest()[:10]


# --------------------------------------------------------------------------- checkpoints


def classify(code: int, message: str, *, node: str, target: str, timeout: int,
             api_server: bool = False, timed_out: bool = False) -> Verdict:
    """What a failed checkpoint request means, and what to do about it.

    ``code``: the HTTP status (0: no answer); ``message``: the body (the kubelet answers in
    plain text, the API server with a Status: ``api_server``); ``target``:
    namespace/pod/container."""
    said = " ".join(message.split())[:300]
    tail = f": {said}" if said else ""
    if code == 0:
        if timed_out:
            return Verdict(CHECKPOINT_TIMEOUT, (
                f"the checkpoint of {target} on node {node} did not answer in time "
                f"(timeout={timeout}s){tail}; the runtime may still write an archive there, "
                f"which no one removes (look in {CHECKPOINT_DIR})"))
        return Verdict(CHECKPOINT_FAILED, f"could not ask for a checkpoint of {target} on "
                                          f"node {node}{tail}")
    if code == 500:
        if "deadline" in said.lower():
            return Verdict(CHECKPOINT_TIMEOUT, (
                f"the runtime on node {node} did not finish the checkpoint of {target} within "
                f"timeout={timeout}s (raise the checkpoint timeout; a checkpoint writes all "
                f"the container's memory){tail}"))
        return Verdict(CHECKPOINT_UNSUPPORTED, (
            f"the container runtime on node {node} cannot checkpoint {target} (CRIU missing or "
            f"too old, or a runtime without CheckpointContainer){tail}"))
    if code == 404:
        if api_server:
            return Verdict(CHECKPOINT_UNAVAILABLE, f"node {node} is not known to the API "
                                                   f"server{tail}")
        if "page not found" in said:
            return Verdict(CHECKPOINT_UNAVAILABLE, (
                f"the kubelet on node {node} has no checkpoint API: the ContainerCheckpoint "
                f"feature gate is off (beta and on by default since Kubernetes 1.30){tail}"))
        return Verdict(CHECKPOINT_UNAVAILABLE, (
            f"the kubelet on node {node} does not run {target} (the pod is gone or was "
            f"replaced){tail}"))
    if code == 403:
        if api_server:
            return Verdict(CHECKPOINT_FORBIDDEN, (
                "forbidden: the reconciler's identity needs create on nodes/proxy (granted by "
                f"the chart with {CHART_VALUE}: true; nodes/proxy amounts to exec on the "
                f"node){tail}"))
        user = _user(said) or APISERVER_USER
        return Verdict(CHECKPOINT_FORBIDDEN, (
            f"the API server's identity lacks create on nodes/checkpoint (kubernetes#126232): "
            f"grant it to the user the kubelet sees ({user}), e.g. the chart value "
            f"liveMigration.checkpoint.apiServerUser={user}, or kubectl create clusterrole "
            f"kubelet-checkpoint --verb=create --resource=nodes/checkpoint and kubectl "
            f"create clusterrolebinding kubelet-checkpoint --clusterrole=kubelet-checkpoint "
            f"--user={user}{tail}"))
    if code == 401:
        return Verdict(CHECKPOINT_FORBIDDEN, (
            f"the kubelet on node {node} did not accept the API server's credentials "
            f"(401){tail}"))
    return Verdict(CHECKPOINT_FAILED, f"the checkpoint of {target} on node {node} failed "
                                      f"(HTTP {code}){tail}")


def _user(message: str) -> str:
    m = re.search(r"user=([^,)\s]+)", message)
    return m.group(1) if m else ""


_ARCHIVE = re.compile(r"checkpoint-[A-Za-z0-9._:+-]+\.tar")


def archive_problem(path: str, checkpoint_dir: str = CHECKPOINT_DIR) -> str | None:
    """Why an archive path the kubelet gave cannot be used (mounted, restored, removed), or
    None. Only plain file names right inside the checkpoint directory are: the path ends up
    in a Job's arguments on the node, and must never name anything else there."""
    folder = posixpath.normpath(checkpoint_dir)
    if (not path.startswith("/") or posixpath.normpath(path) != path
            or posixpath.dirname(path) != folder
            or not _ARCHIVE.fullmatch(posixpath.basename(path))):
        return (f"the kubelet named an archive outside {folder} or with an unexpected name: "
                f"{path!r}")
    return None


_REGISTRY = re.compile(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*")


def registry_problem(registry: str) -> str | None:
    """Why a registry (``host[:port][/path]``) cannot hold checkpoint images, or None."""
    if not registry:
        return ("no registry for checkpoint images: set liveMigration.checkpoint.registry "
                "(env DAKR_CHECKPOINT_REGISTRY), a private registry the nodes pull from")
    if not _REGISTRY.fullmatch(registry.rstrip("/")):
        return f"the checkpoint registry {registry!r} is not host[:port][/path] in lower case"
    return None


def image_for(registry: str, pod: str, container: str, stamp: str) -> str:
    """``<registry>/<pod>-<container>:<stamp>``: where one container's checkpoint goes."""
    tag = re.sub(r"[^A-Za-z0-9_.-]", "", stamp)[:128] or "latest"
    return f"{registry.rstrip('/')}/{pod}-{container}:{tag}"


# --------------------------------------------------------------------------- Jobs


def _job(name: str, namespace: str, node: str, role: str, move: str, containers: list[JSON],
         volumes: list[JSON], deadline: int) -> JSON:
    labels = {MANAGED_BY[0]: MANAGED_BY[1], MOVE_LABEL: move, ROLE_LABEL: role}
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": max(1, int(deadline)),
            "ttlSecondsAfterFinished": 3600,
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {
                    # Pinned: the archives are on this node's disk, and a node being
                    # consolidated is cordoned, where the scheduler would place nothing.
                    "nodeName": node,
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "tolerations": [{"operator": "Exists"}],
                    "containers": containers,
                    "volumes": volumes,
                },
            },
        },
    }


def _hostpath(checkpoint_dir: str) -> JSON:
    return {"name": "checkpoints", "hostPath": {"path": checkpoint_dir, "type": "Directory"}}


def restore_job(*, name: str, namespace: str, node: str, move: str,
                builds: Sequence[tuple[Archive, str]], image: str,
                command: Sequence[str], registry_secret: str = "",
                checkpoint_dir: str = CHECKPOINT_DIR, deadline: int = 600) -> JSON:
    """The Job that turns each archive into an image and pushes it: one container per
    archive (``builds``: (archive, target image)), all on the archive's node, the
    checkpoint directory mounted read-only, registry credentials from a Secret."""
    volumes: list[JSON] = [_hostpath(checkpoint_dir)]
    mounts: list[JSON] = [{"name": "checkpoints", "mountPath": checkpoint_dir,
                           "readOnly": True}]
    if registry_secret:
        volumes.append({"name": "registry-auth", "secret": {
            "secretName": registry_secret,
            "items": [{"key": ".dockerconfigjson", "path": "auth.json"}]}})
        mounts.append({"name": "registry-auth", "mountPath": REGISTRY_AUTH_DIR,
                       "readOnly": True})
    containers = []
    for i, (archive, target) in enumerate(builds):
        containers.append({
            "name": f"image-{i}",
            "image": image,
            "command": list(command),
            "env": [
                {"name": "CHECKPOINT_ARCHIVE", "value": archive.path},
                {"name": "CHECKPOINT_IMAGE", "value": target},
                {"name": "CHECKPOINT_CONTAINER", "value": archive.container},
                {"name": "REGISTRY_AUTH_FILE", "value": f"{REGISTRY_AUTH_DIR}/auth.json"},
                {"name": "STORAGE_DRIVER", "value": "vfs"},
                {"name": "BUILDAH_ISOLATION", "value": "chroot"},
            ],
            # Root reads the kubelet's archives (mode 0600) and runs buildah.
            "securityContext": {"runAsUser": 0},
            "volumeMounts": copy.deepcopy(mounts),
        })
    return _job(name, namespace, node, "restore", move, containers, volumes, deadline)


def cleanup_job(*, name: str, namespace: str, node: str, move: str, paths: Sequence[str],
                image: str, checkpoint_dir: str = CHECKPOINT_DIR, deadline: int = 300) -> JSON:
    """The Job that removes the archives (exactly these paths) from the node's disk."""
    container = {
        "name": "remove",
        "image": image,
        "command": [*CLEANUP_COMMAND, *paths],
        "securityContext": {"runAsUser": 0},
        "volumeMounts": [{"name": "checkpoints", "mountPath": checkpoint_dir}],
    }
    return _job(name, namespace, node, "cleanup", move, [container],
                [_hostpath(checkpoint_dir)], deadline)


def job_outcome(job: Mapping[str, Any]) -> tuple[str, str]:
    """("Complete" | "Failed" | "Running", the controller's message)."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if not isinstance(cond, Mapping) or cond.get("status") != "True":
            continue
        if cond.get("type") == "Complete":
            return "Complete", str(cond.get("message") or "")
        if cond.get("type") in ("Failed", "FailureTarget"):
            reason, message = str(cond.get("reason") or ""), str(cond.get("message") or "")
            return "Failed", f"{reason}: {message}".strip(": ")
    return "Running", ""


# --------------------------------------------------------------------------- replacement


def owner_ref(obj: Mapping[str, Any]) -> JSON:
    """A controller ownerReference to ``obj`` (blockOwnerDeletion left unset: it would need
    update on the owner's finalizers)."""
    meta = obj.get("metadata") or {}
    return {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"),
            "name": meta.get("name"), "uid": meta.get("uid"), "controller": True}


def replacement_pod(old: Mapping[str, Any], *, name: str, images: Mapping[str, str],
                    values: Values, owner: Mapping[str, Any] | None,
                    avoid_node: str = "", pull_secret: str = "") -> JSON:
    """The pod that restores ``old``: its spec, each container's image its checkpoint image
    and its resources ``values``, no node (the scheduler places it, away from ``avoid_node``
    when given), the same labels, ``owner`` as its controller (see the module docstring)."""
    meta = old.get("metadata") or {}
    spec = rz.resized(old, values)
    spec.pop("nodeName", None)
    spec.pop("ephemeralContainers", None)
    # The service account's token volume is the API server's to add on creation.
    gone = {str(v.get("name")) for v in spec.get("volumes") or []
            if SERVICE_ACCOUNT_VOLUME.fullmatch(str(v.get("name")))}
    if gone:
        spec["volumes"] = [v for v in spec["volumes"] if v.get("name") not in gone]
        if not spec["volumes"]:
            spec.pop("volumes")
        for c in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
            mounts = [m for m in c.get("volumeMounts") or [] if m.get("name") not in gone]
            if mounts:
                c["volumeMounts"] = mounts
            else:
                c.pop("volumeMounts", None)
    for c in spec.get("containers") or []:
        if str(c.get("name")) in images:
            c["image"] = images[str(c.get("name"))]
    if pull_secret and {"name": pull_secret} not in (spec.get("imagePullSecrets") or []):
        spec["imagePullSecrets"] = [*(spec.get("imagePullSecrets") or []),
                                    {"name": pull_secret}]
    if avoid_node:
        _avoid(spec, avoid_node)
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items()
                   if not str(k).startswith("kubernetes.io/config.")}
    annotations[RESTORED_FROM] = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
    new_meta: JSON = {"name": name, "namespace": meta.get("namespace"),
                      "labels": dict(meta.get("labels") or {}), "annotations": annotations}
    if owner is not None:
        new_meta["ownerReferences"] = [dict(owner)]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": new_meta, "spec": spec}


def _avoid(spec: JSON, node: str) -> None:
    """Add ``kubernetes.io/hostname NotIn [node]`` to every required node selector term."""
    term = {"key": "kubernetes.io/hostname", "operator": "NotIn", "values": [node]}
    affinity = spec.setdefault("affinity", {})
    node_affinity = affinity.setdefault("nodeAffinity", {})
    required = node_affinity.setdefault("requiredDuringSchedulingIgnoredDuringExecution", {})
    terms = required.setdefault("nodeSelectorTerms", [])
    if not terms:
        terms.append({"matchExpressions": [term]})
        return
    for t in terms:
        t.setdefault("matchExpressions", []).append(copy.deepcopy(term))


def handover_patch(pod: Mapping[str, Any], to: Mapping[str, Any]) -> list[JSON]:
    """A JSON Patch giving the replacement to the ReplicaSet reference ``to`` (the old
    pod's controller), guarded on the ownerReferences it was created with."""
    refs = (pod.get("metadata") or {}).get("ownerReferences") or []
    keep = {k: to.get(k) for k in ("apiVersion", "kind", "name", "uid")}
    keep["controller"] = True
    return [{"op": "test", "path": "/metadata/ownerReferences", "value": copy.deepcopy(refs)},
            {"op": "replace", "path": "/metadata/ownerReferences", "value": [keep]}]


def readiness(pod: Mapping[str, Any]) -> tuple[str, str]:
    """("Ready" | "Failed" | "Waiting", why): a replacement that failed will not become
    ready by waiting (its restored process crashed, the runtime could not create it)."""
    status = pod.get("status") or {}
    phase = status.get("phase")
    if phase in ("Failed", "Succeeded"):
        said = status.get("message") or status.get("reason") or ""
        return "Failed", f"the pod ended ({phase}): {said}".rstrip(": ")
    if rz.ready(pod):
        return "Ready", ""
    why = ""
    for cs in status.get("containerStatuses") or []:
        if not isinstance(cs, Mapping):
            continue
        waiting = (cs.get("state") or {}).get("waiting") or {}
        reason = str(waiting.get("reason") or "")
        if reason in TERMINAL_WAITING:
            text = f"container {cs.get('name')}: {reason}"
            message = str(waiting.get("message") or "")
            return "Failed", text + (f" ({message})" if message else "")
        if reason and not why:
            why = f"container {cs.get('name')}: {reason}"
    for cond in status.get("conditions") or []:
        if (isinstance(cond, Mapping) and cond.get("type") == "PodScheduled"
                and cond.get("status") == "False" and not why):
            why = f"not scheduled: {cond.get('reason') or ''} {cond.get('message') or ''}".strip()
    return "Waiting", why or f"phase {phase or 'Pending'}"
