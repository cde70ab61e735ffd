"""Moving one pod with its process state: checkpoint its containers, restore them in a
replacement pod with new resources, and only then evict the old pod.

For a pod that must leave its node (the node is consolidated, or its in-place resize is
Infeasible there and the policy allows a move). The judgements and manifests are pure
(``domain/checkpoint.py``); this module sends the requests, in this order, and stops at the
first step that fails, with the step's reason:

1. **Capability.** Container runtimes ship restore switched off (containerd 2.3, CRI-O), so
   nothing is sent unless the cluster declares it (``MoveOptions.checkpoint_restore``: the
   setting ``DAKR_CHECKPOINT_RESTORE``, chart value ``liveMigration.checkpointRestore``).
   The pod is read again and refused when it cannot be moved (not running, a StatefulSet's,
   DaemonSet's or Job's pod, a ReplicaSet without a Deployment, emptyDir volumes).
2. **Checkpoint** each container through the API server's node proxy
   (``Kube.checkpoint``). 404 (feature gate off, pod gone), 500 (no checkpoint support in
   the runtime), 401/403 (our identity lacks ``nodes/proxy``, or the API server's own
   lacks ``nodes/checkpoint``: kubernetes#126232) and timeouts (the kubelet's
   ``timeout``, or no answer) end the move with that reason; the old pod keeps
   running, untouched. Where each archive is (node and path) is recorded; what is in it
   (all the process memory, secrets included) is never read nor logged.
3. **Restore driver** (the contract below) turns the archives into images.
4. **Replacement pod**: a copy of the old pod's spec with each container's image its
   checkpoint image and the new resources, named ``<old>-restored-<n>``, owned as
   ``domain/checkpoint.py`` explains (the Deployment until the old pod is gone, then the
   old pod's ReplicaSet), followed with a watch until Ready or the deadline.
5. **Eviction** of the old pod through the Eviction API, PodDisruptionBudgets honoured
   (a 429 is asked again every ``retry_interval`` until ``eviction_timeout``, as a drain
   does), with a ``uid`` precondition. Only then is the replacement handed to the
   ReplicaSet. Any failure before this point deletes the replacement and keeps the old pod.
6. **Cleanup, always**: once a checkpoint succeeded, whatever happened next, a cleanup Job
   on the node removes the archives by path (the kubelet never does), and the result
   records that it did; a cleanup that fails is a warning in the result, in the log and in
   a Warning Event on the pod, never dropped.

Restore driver contract
-----------------------
The driver is a Kubernetes Job the operator creates for each move, in
``MoveOptions.job_namespace`` (default: the moved pod's namespace; the chart sets the
operator's), named ``dakr-restore-<id>``:

- it runs on the node that holds the archives (``spec.nodeName`` pinned, all taints
  tolerated: a node being consolidated is cordoned, where the scheduler places nothing);
- one container per checkpointed container, each with the image ``MoveOptions.image``
  (default ``quay.io/buildah/stable``; pin a tag or digest you have tested) and the command
  ``MoveOptions.command`` (default a ``/bin/sh -c`` buildah script: ``buildah from
  scratch``, ``buildah add`` the archive, ``buildah config --annotation
  io.kubernetes.cri-o.annotations.checkpoint.name=<container>``, ``buildah commit``,
  ``buildah push``), running as root (the kubelet's archives are mode 0600);
- it gets, as environment variables: ``CHECKPOINT_ARCHIVE`` (the archive's path on the
  node), ``CHECKPOINT_IMAGE`` (where to push: ``<registry>/<pod>-<container>:<stamp>``),
  ``CHECKPOINT_CONTAINER`` (the container's name), ``REGISTRY_AUTH_FILE``
  (``/run/dakr/registry/auth.json``), ``STORAGE_DRIVER=vfs``,
  ``BUILDAH_ISOLATION=chroot``;
- the node's checkpoint directory (hostPath ``/var/lib/kubelet/checkpoints``,
  ``MoveOptions.checkpoint_dir``) is mounted read-only at the same path;
- registry credentials only from a Secret reference: the ``kubernetes.io/dockerconfigjson``
  Secret ``MoveOptions.registry_secret`` in the Job's namespace, its ``.dockerconfigjson``
  key mounted read-only as ``auth.json`` (never inline, never in an env value);
- it must exit 0 only once every image is pushed; ``backoffLimit`` 0,
  ``activeDeadlineSeconds`` = ``restore_timeout``, ``ttlSecondsAfterFinished`` 3600 (a failed
  driver's pod stays an hour for ``kubectl logs``);
- the operator waits for the Job's ``Complete`` or ``Failed`` condition with a watch, until
  ``restore_timeout`` plus ``job_grace`` (then deletes the Job so that it pushes nothing
  later).

The replacement pod pulls those images with ``MoveOptions.pull_secret`` (an
``imagePullSecrets`` entry in the pod's namespace). The default script builds images the
way CRI-O restores them (a manifest annotation); containerd's experimental restore reads
the annotations from the image index instead (``checkpointctl build`` writes those): give
a command that does so for containerd nodes. The pushed images hold the process memory as
the archives do: use a private registry and prune it; the operator does not delete them
(the replacement's containers restart from them).

The cleanup Job, ``dakr-cleanup-<id>``, runs on the same node with
``MoveOptions.cleanup_image`` (default: the driver image, already on the node) and the
command ``rm -f -- <archive path>...`` with the checkpoint directory mounted read-write;
only file names the kubelet gave, right inside that directory, are ever passed.

RBAC (chart value ``liveMigration.checkpointRestore``): ``nodes/proxy`` create (which
amounts to exec on every node), Jobs create/get/watch/delete, pods create/delete/patch,
ReplicaSets get, ``pods/eviction`` create; and, for the API server's own identity,
``nodes/checkpoint`` create.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.adapters import kube
from reconciler.config import settings as settings_mod
from reconciler.domain import checkpoint as ckpt
from reconciler.domain import errors
from reconciler.domain import text as txt

log = logging.getLogger("reconciler.direct.move")

JSON = dict[str, Any]
WATCH_SLICE = 30.0   # seconds a watch stays open before the deadline and stop are looked at
NAME_ATTEMPTS = 5    # replacement names tried when one is taken (a leftover of a crash)

NEEDS = ("moving a pod with its state needs nodes/proxy create, jobs create/get/watch/"
         "delete, pods create/delete/patch, replicasets get and pods/eviction create "
         f"(chart value {ckpt.CHART_VALUE})")


@dataclass(frozen=True)
class MoveOptions:
    """How a move is done; ``checkpoint_restore`` must be declared (see the module)."""

    checkpoint_restore: bool = False
    registry: str = ""                  # host[:port]/path the checkpoint images go to
    registry_secret: str = ""           # dockerconfigjson Secret in job_namespace (push)
    pull_secret: str = ""               # imagePullSecret in the pod's namespace (pull)
    image: str = ckpt.DEFAULT_IMAGE     # the restore driver's image
    command: tuple[str, ...] = ckpt.BUILD_COMMAND
    cleanup_image: str = ""             # empty: the driver's image
    job_namespace: str = ""             # empty: the moved pod's namespace
    checkpoint_dir: str = ckpt.CHECKPOINT_DIR
    checkpoint_timeout: int = 120       # seconds per container, sent to the kubelet
    checkpoint_grace: float = 30.0      # beyond it, for the answer to come back
    restore_timeout: float = 600.0      # the restore Job, from its creation
    ready_timeout: float = 300.0        # the replacement, from its creation to Ready
    eviction_timeout: float = 300.0     # the old pod's eviction, 429s retried until then
    retry_interval: float = 5.0         # between evictions refused with 429
    cleanup_timeout: float = 300.0      # the cleanup Job
    job_grace: float = 30.0             # beyond a Job's activeDeadlineSeconds, for its
                                        # controller to say Failed before we give up
    avoid_source_node: bool = True      # the replacement is never placed on the old node
    allow_emptydir: bool = False        # move pods whose emptyDir volumes would start empty

    def __post_init__(self) -> None:
        numbers = (self.checkpoint_grace, self.restore_timeout, self.ready_timeout,
                   self.eviction_timeout, self.retry_interval, self.cleanup_timeout,
                   self.job_grace)
        if not 1 <= self.checkpoint_timeout <= 3600 or any(n <= 0 for n in numbers):
            raise errors.ConfigError("move timeouts and intervals must be > 0 (the "
                                     "checkpoint timeout 1-3600 seconds)")
        if not self.image or not self.command:
            raise errors.ConfigError("the restore driver needs an image and a command")

    @classmethod
    def from_settings(cls, s: settings_mod.MoveSettings, **more: Any) -> MoveOptions:
        """The options the operator's settings give (``more`` overrides the rest)."""
        return cls(checkpoint_restore=s.checkpoint_restore, registry=s.registry,
                   registry_secret=s.registry_secret, pull_secret=s.pull_secret,
                   image=s.image, job_namespace=s.job_namespace,
                   checkpoint_timeout=s.checkpoint_timeout, **more)


@dataclass
class Cleanup:
    """The cleanup of one move's archives: which Job, which paths, whether it ran."""

    job: str = ""
    namespace: str = ""
    node: str = ""
    paths: tuple[str, ...] = ()
    done: bool = False
    message: str = ""

    def to_dict(self) -> JSON:
        return {"job": self.job, "namespace": self.namespace, "node": self.node,
                "paths": list(self.paths), "done": self.done, "message": self.message}


@dataclass
class MoveResult:
    """What a move did, step by step. ``moved``: the replacement is Ready and the old pod
    was evicted; otherwise ``code`` and ``reason`` say which step ended it, and the old pod
    is where it was (its replacement removed: ``replacement_removed``)."""

    pod: str                  # namespace/name of the pod to move
    node: str                 # where it ran (where the archives are)
    moved: bool = False
    code: str = ""
    reason: str = ""
    archives: list[ckpt.Archive] = field(default_factory=list)
    images: dict[str, str] = field(default_factory=dict)   # container -> checkpoint image
    restore_job: str = ""     # namespace/name
    replacement: str = ""     # namespace/name
    replacement_node: str = ""
    replacement_removed: bool = False
    evicted: bool = False
    owner: str = ""           # the controller that owns the replacement in the end
    cleanup: Cleanup | None = None
    warnings: list[str] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)
    requests: int = 0

    def to_dict(self) -> JSON:
        out: JSON = {"pod": self.pod, "node": self.node, "moved": self.moved,
                     "archives": [a.to_dict() for a in self.archives],
                     "images": dict(self.images), "steps": list(self.steps)}
        for key in ("code", "reason", "restore_job", "replacement", "replacement_node",
                    "owner"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        if self.replacement_removed:
            out["replacementRemoved"] = True
        if self.evicted:
            out["evicted"] = True
        if self.cleanup is not None:
            out["cleanup"] = self.cleanup.to_dict()
        if self.warnings:
            out["warnings"] = list(self.warnings)
        return out


class _End(Exception):
    """End the move with this verdict."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


def move_pod(api: kube.Kube, pod: Mapping[str, Any], new_values: ckpt.Values,
             options: MoveOptions, *, stop: threading.Event | None = None,
             clock: Callable[[], float] = time.monotonic,
             sleep: Callable[[float], Any] | None = None,
             wall: Callable[[], datetime.datetime] | None = None) -> MoveResult:
    """Move ``pod`` to another node with its process state and ``new_values``
    (``{container: {requests|limits: {cpu|memory: quantity}}}``); see the module."""
    meta = pod.get("metadata") or {}
    result = MoveResult(f"{meta.get('namespace', '')}/{meta.get('name', '')}",
                        str((pod.get("spec") or {}).get("nodeName") or ""))
    if not options.checkpoint_restore:
        result.code, result.reason = ckpt.CAPABILITY_OFF, ckpt.capability_refusal()
        log.info("not moving pod %s: %s", txt.one_line(result.pod), result.reason)
        return result
    doze = sleep or (stop.wait if stop is not None else time.sleep)
    now = wall or (lambda: datetime.datetime.now(datetime.UTC))
    return _Move(api, pod, new_values, options, result, stop, clock, doze, now).run()


class _Move:
    def __init__(self, api: kube.Kube, pod: Mapping[str, Any], values: ckpt.Values,
                 options: MoveOptions, result: MoveResult, stop: threading.Event | None,
                 clock: Callable[[], float], sleep: Callable[[float], Any],
                 wall: Callable[[], datetime.datetime]) -> None:
        self.api, self.values, self.o, self.r = api, values, options, result
        self.stop, self.clock, self.sleep, self.wall = stop, clock, sleep, wall
        meta = pod.get("metadata") or {}
        self.ns, self.name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
        self.uid = str(meta.get("uid") or "")
        self.pod: JSON = dict(pod)
        self.node = result.node
        self.job_ns = options.job_namespace or self.ns
        self.move_id = ""
        self.replacement: JSON | None = None
        self.rs_ref: Mapping[str, Any] | None = None  # the old pod's ReplicaSet
        self.deployment_ref: JSON = {}                  # and its Deployment
        self.waiting = ""                               # why the replacement is not Ready

    # ------------------------------------------------------------------ the whole move

    def run(self) -> MoveResult:
        r = self.r
        before = self.api.requests
        try:
            self._steps()
            r.moved = True
        except _End as e:
            r.code, r.reason = e.code, e.reason
        except kube.Forbidden as e:
            r.code, r.reason = ckpt.MOVE_FAILED, f"forbidden: {e}; {NEEDS}"
        except errors.ReconcilerError as e:
            r.code, r.reason = ckpt.MOVE_FAILED, f"moving pod {r.pod} failed: {e}"
        finally:
            if not r.moved:
                self._remove_replacement()
            self._cleanup()
            r.requests = self.api.requests - before
        if r.moved:
            log.info("moved pod %s from node %s to %s on node %s", txt.one_line(r.pod),
                     txt.one_line(r.node), txt.one_line(r.replacement),
                     txt.one_line(r.replacement_node))
        else:
            log.warning("pod %s not moved (%s): %s", txt.one_line(r.pod), r.code,
                        txt.one_line(r.reason))
        return r

    def _steps(self) -> None:
        why = ckpt.registry_problem(self.o.registry)
        if why is not None:
            raise _End(ckpt.NOT_MOVABLE, why)
        self._read_pod()
        self._checkpoint()
        images = self._restore()
        self._replace(images)
        self._evict()
        self._hand_over()

    def _step(self, text: str) -> None:
        self.r.steps.append(text)
        log.info("move of pod %s: %s", txt.one_line(self.r.pod), txt.one_line(text))

    def _check_stop(self) -> None:
        if self.stop is not None and self.stop.is_set():
            raise _End(ckpt.MOVE_FAILED, "stopped before the move finished")

    # ------------------------------------------------------------------ 1. the pod

    def _read_pod(self) -> None:
        fresh = self.api.pod(self.ns, self.name)
        if fresh is None or (self.uid and str(fresh["metadata"].get("uid")) != self.uid):
            raise _End(ckpt.NOT_MOVABLE, f"pod {self.r.pod} is gone (or was replaced)")
        self.pod = fresh
        self.uid = str(fresh["metadata"].get("uid") or "")
        self.node = self.r.node = str((fresh.get("spec") or {}).get("nodeName") or "")
        why = ckpt.refusal(fresh, self.values, allow_emptydir=self.o.allow_emptydir)
        if why is not None:
            raise _End(ckpt.NOT_MOVABLE, why)
        owner = ckpt.controller_of(fresh)
        if owner is None:
            return
        rs = self.api.replica_set(self.ns, str(owner.get("name")))
        if rs is None or str(rs["metadata"].get("uid")) != str(owner.get("uid")):
            raise _End(ckpt.NOT_MOVABLE, f"the ReplicaSet {owner.get('name')} of pod "
                                         f"{self.r.pod} is gone")
        parent = ckpt.controller_of(rs)
        if parent is None or parent.get("kind") != "Deployment":
            raise _End(ckpt.NOT_MOVABLE, (
                f"pod {self.r.pod} belongs to ReplicaSet {owner.get('name')}, which no "
                "Deployment owns: a replacement could not be handed to it without the "
                "ReplicaSet deleting one of its pods"))
        self.rs_ref = owner
        self.deployment_ref = {k: parent.get(k) for k in ("apiVersion", "kind", "name", "uid")}

    # ------------------------------------------------------------------ 2. checkpoints

    def _checkpoint(self) -> None:
        for c in (self.pod.get("spec") or {}).get("containers") or []:
            self._check_stop()
            cname = str(c.get("name"))
            target = f"{self.ns}/{self.name}/{cname}"
            answer = self.api.checkpoint(self.node, self.ns, self.name, cname,
                                         timeout=self.o.checkpoint_timeout,
                                         grace=self.o.checkpoint_grace)
            if not answer.ok:
                if answer.code == 200:
                    raise _End(ckpt.CHECKPOINT_FAILED, answer.message)
                v = ckpt.classify(answer.code, answer.message, node=self.node, target=target,
                                  timeout=self.o.checkpoint_timeout,
                                  api_server=answer.api_server, timed_out=answer.timed_out)
                if v.code == ckpt.CHECKPOINT_TIMEOUT:
                    self.r.warnings.append(
                        f"the checkpoint of {target} timed out: the runtime may still write "
                        f"an archive in {self.o.checkpoint_dir} on node {self.node}, which "
                        "this move cannot name and does not remove")
                raise _End(v.code, v.reason)
            for path in answer.paths:
                self.r.archives.append(ckpt.Archive(cname, self.node, path))
                self._step(f"checkpointed container {cname}: archive on node {self.node} "
                           f"at {path}")
            for path in answer.paths:
                problem = ckpt.archive_problem(path, self.o.checkpoint_dir)
                if problem is not None:
                    raise _End(ckpt.CHECKPOINT_FAILED, problem)

    # ------------------------------------------------------------------ 3. restore driver

    def _restore(self) -> dict[str, str]:
        stamp = self.wall().strftime("%Y%m%d%H%M%S")
        self.move_id = ckpt.move_id(self.ns, self.name, self.uid, stamp)
        builds: list[tuple[ckpt.Archive, str]] = []
        images: dict[str, str] = {}
        for a in self.r.archives:
            images[a.container] = ckpt.image_for(self.o.registry, self.name, a.container, stamp)
            builds.append((a, images[a.container]))
        self.r.images = dict(images)
        name = f"dakr-restore-{self.move_id}"
        job = ckpt.restore_job(name=name, namespace=self.job_ns, node=self.node,
                               move=self.move_id, builds=builds, image=self.o.image,
                               command=self.o.command, registry_secret=self.o.registry_secret,
                               checkpoint_dir=self.o.checkpoint_dir,
                               deadline=int(self.o.restore_timeout))
        self._check_stop()
        created = self._create_job(job)
        self.r.restore_job = f"{self.job_ns}/{name}"
        self._step(f"restore Job {self.r.restore_job} builds "
                   + ", ".join(f"{c} -> {i}" for c, i in images.items()))
        verdict, last = self._wait(
            self.api.watch_job, self.api.job, self.job_ns, name, created,
            self.clock() + self.o.restore_timeout + self.o.job_grace, _job_judge)
        if verdict == "Complete":
            self._step(f"restore Job {self.r.restore_job} pushed the images")
            return images
        if verdict == "Failed":
            _, message = ckpt.job_outcome(last or {})
            raise _End(ckpt.RESTORE_FAILED, (
                f"the restore Job {self.r.restore_job} failed"
                + (f" ({txt.one_line(message)})" if message else "")
                + f": no image was restored; its pod's log says why (kubectl -n {self.job_ns} "
                  f"logs job/{name})"))
        if verdict == "gone":
            raise _End(ckpt.RESTORE_FAILED, f"the restore Job {self.r.restore_job} was "
                                            "deleted before it finished")
        deleted = "deleted, so that it pushes nothing later"
        try:
            self.api.delete_job(self.job_ns, name)
        except errors.ReconcilerError as e:
            deleted = "could not delete it"
            self.r.warnings.append(f"could not delete the unfinished restore Job "
                                   f"{self.r.restore_job}: {e}")
        raise _End(ckpt.RESTORE_FAILED, (
            f"the restore Job {self.r.restore_job} did not finish within "
            f"{self.o.restore_timeout:g}s ({deleted})"))

    # ------------------------------------------------------------------ 4. replacement

    def _replace(self, images: Mapping[str, str]) -> None:
        owner = None
        if self.rs_ref is not None:
            owner = {**self.deployment_ref, "controller": True}
        created: JSON | None = None
        for attempt in range(NAME_ATTEMPTS):
            self._check_stop()
            name = ckpt.restored_name(self.name, attempt)
            body = ckpt.replacement_pod(
                self.pod, name=name, images=images, values=self.values, owner=owner,
                avoid_node=self.node if self.o.avoid_source_node else "",
                pull_secret=self.o.pull_secret)
            try:
                created = self.api.create_pod(self.ns, body)
                break
            except kube.Conflict:  # AlreadyExists: a leftover of an earlier move
                continue
            except kube.Unavailable:
                # No answer: the server may have stored it all the same. Never leave a
                # replacement behind that nobody knows of: look for it by name.
                # Ours when it runs this move's images (their tags are this move's stamp).
                found = self.api.pod(self.ns, name)
                if found is None or {str(c.get("name")): c.get("image") for c in (
                        found.get("spec") or {}).get("containers") or []
                        if str(c.get("name")) in images} != dict(images):
                    raise
                created = found
                break
        if created is None:
            raise _End(ckpt.MOVE_FAILED, f"the names {ckpt.restored_name(self.name)} ... "
                                         f"{ckpt.restored_name(self.name, NAME_ATTEMPTS - 1)}"
                                         " are all taken")
        self.replacement = created
        rname = str(created["metadata"]["name"])
        ruid = str(created["metadata"].get("uid") or "")
        self.r.replacement = f"{self.ns}/{rname}"
        self.r.owner = f"{owner['kind']}/{owner['name']}" if owner else ""
        self._step(f"created the replacement pod {self.r.replacement}")

        def judge(obj: Mapping[str, Any]) -> str:
            if str((obj.get("metadata") or {}).get("uid") or "") != ruid:
                return "gone"
            state, why = ckpt.readiness(obj)
            self.waiting = why
            return state if state != "Waiting" else ""

        verdict, last = self._wait(
            self.api.watch_pod, self.api.pod, self.ns, rname, created,
            self.clock() + self.o.ready_timeout, judge)
        if verdict == "Ready":
            self.r.replacement_node = str(((last or {}).get("spec") or {}).get("nodeName")
                                          or "")
            self._step(f"the replacement {self.r.replacement} is Ready on node "
                       f"{self.r.replacement_node}")
            return
        if verdict == "Failed":
            raise _End(ckpt.REPLACEMENT_NOT_READY, (
                f"the replacement {self.r.replacement} failed: {txt.one_line(self.waiting)}"))
        if verdict == "gone":
            raise _End(ckpt.REPLACEMENT_NOT_READY, f"the replacement {self.r.replacement} was "
                                                   "deleted before it was Ready")
        raise _End(ckpt.REPLACEMENT_NOT_READY, (
            f"the replacement {self.r.replacement} was not Ready within "
            f"{self.o.ready_timeout:g}s" + (f" ({txt.one_line(self.waiting)})"
                                            if self.waiting else "")))

    def _create_job(self, job: JSON) -> JSON:
        """Create a Job of this move; a create that got no answer is asked again, and an
        AlreadyExists for it (the unanswered one was stored) is that Job."""
        name = str(job["metadata"]["name"])
        for attempt in range(3):
            try:
                return self.api.create_job(self.job_ns, job)
            except kube.Conflict:
                found = self.api.job(self.job_ns, name)
                labels = ((found or {}).get("metadata") or {}).get("labels") or {}
                if found is None or labels.get(ckpt.MOVE_LABEL) != self.move_id:
                    raise
                return found
            except kube.Unavailable:
                if attempt == 2:
                    raise
                self.sleep(self.o.retry_interval)
        raise AssertionError("unreachable")

    def _remove_replacement(self) -> None:
        if self.replacement is None or self.r.evicted:
            return
        meta = self.replacement["metadata"]
        try:
            self.api.delete_pod(self.ns, str(meta["name"]), str(meta.get("uid") or "") or None)
        except errors.ReconcilerError as e:
            message = (f"could not remove the replacement pod {self.r.replacement}: {e}; "
                       f"delete it by hand (kubectl -n {self.ns} delete pod {meta['name']})")
            self.r.warnings.append(message)
            log.warning("%s", txt.one_line(message))
            return
        self.r.replacement_removed = True
        self._step(f"removed the replacement {self.r.replacement}; pod {self.r.pod} stays")

    # ------------------------------------------------------------------ 5. eviction

    def _evict(self) -> None:
        deadline = self.clock() + self.o.eviction_timeout
        last = ""
        while True:
            self._check_stop()
            try:
                got = self.api.evict(self.ns, self.name, self.uid or None)
            except kube.Forbidden as e:
                raise _End(ckpt.MOVE_FAILED, f"forbidden: the reconciler needs create on "
                                             f"pods/eviction: {e}") from e
            except kube.Unavailable as e:  # 5xx, timeout: ask again on the 429 schedule
                got = kube.Eviction("retry", str(e), e.retry_after)
            except errors.PermanentError as e:
                raise _End(ckpt.MOVE_FAILED, f"cannot evict pod {self.r.pod}: {e}") from e
            if got.outcome in (kube.EVICTION_DONE, kube.EVICTION_GONE, kube.EVICTION_REPLACED):
                self.r.evicted = True
                self._step(f"evicted pod {self.r.pod}" if got.outcome == kube.EVICTION_DONE
                           else f"pod {self.r.pod} was already gone ({got.outcome})")
                return
            last = got.message
            now = self.clock()
            if now >= deadline:
                raise _End(ckpt.EVICTION_BLOCKED, (
                    f"the replacement {self.r.replacement} is Ready, but pod {self.r.pod} could "
                    f"not be evicted within {self.o.eviction_timeout:g}s"
                    + (f" (last refusal: {txt.one_line(last)})" if last else "")))
            wait = got.retry_after if got.retry_after else self.o.retry_interval
            self.sleep(max(0.0, min(wait, deadline - now)))

    def _hand_over(self) -> None:
        if self.rs_ref is None or self.replacement is None:
            return
        meta = self.replacement["metadata"]
        rname = str(meta["name"])
        ops = ckpt.handover_patch(self.replacement, self.rs_ref)
        try:
            self.replacement = self.api.patch_pod(self.ns, rname, ops)
        except errors.ReconcilerError as e:
            message = (f"could not hand the replacement {self.r.replacement} to ReplicaSet "
                       f"{self.rs_ref.get('name')}: {e}; it stays owned by Deployment "
                       f"{self.deployment_ref.get('name')} (removed with it), beside the pod "
                       "the ReplicaSet created for the evicted one")
            self.r.warnings.append(message)
            log.warning("%s", txt.one_line(message))
            return
        self.r.owner = f"ReplicaSet/{self.rs_ref.get('name')}"
        self._step(f"handed the replacement to ReplicaSet {self.rs_ref.get('name')}")

    # ------------------------------------------------------------------ 6. cleanup

    def _cleanup(self) -> None:
        if not self.r.archives:
            return
        paths = tuple(a.path for a in self.r.archives
                      if ckpt.archive_problem(a.path, self.o.checkpoint_dir) is None)
        left = [a.path for a in self.r.archives if a.path not in paths]
        if left:
            self._cleanup_failed(f"archive(s) not removed, their paths are not plain files in "
                                 f"{self.o.checkpoint_dir}: {', '.join(left)}")
        if not paths:
            return
        if not self.move_id:
            self.move_id = ckpt.move_id(self.ns, self.name, self.uid,
                                        self.wall().strftime("%Y%m%d%H%M%S"))
        name = f"dakr-cleanup-{self.move_id}"
        cleanup = self.r.cleanup = Cleanup(name, self.job_ns, self.node, paths)
        job = ckpt.cleanup_job(name=name, namespace=self.job_ns, node=self.node,
                               move=self.move_id, paths=paths,
                               image=self.o.cleanup_image or self.o.image,
                               checkpoint_dir=self.o.checkpoint_dir,
                               deadline=int(self.o.cleanup_timeout))
        try:
            created = self._create_job(job)
            verdict, last = self._wait(
                self.api.watch_job, self.api.job, self.job_ns, name, created,
                self.clock() + self.o.cleanup_timeout + self.o.job_grace, _job_judge,
                stoppable=False)
        except errors.ReconcilerError as e:
            self._cleanup_failed(f"the cleanup Job {self.job_ns}/{name} could not run: {e}")
            return
        if verdict == "Complete":
            cleanup.done = True
            cleanup.message = f"removed {len(paths)} archive(s) from node {self.node}"
            self._step(f"cleanup Job {self.job_ns}/{name} removed the archives from node "
                       f"{self.node}: {', '.join(paths)}")
            return
        _, message = ckpt.job_outcome(last or {})
        self._cleanup_failed(
            f"the cleanup Job {self.job_ns}/{name} "
            + {"Failed": "failed", "gone": "was deleted"}.get(verdict, "did not finish in time")
            + (f" ({txt.one_line(message)})" if message else ""))

    def _cleanup_failed(self, why: str) -> None:
        paths = ", ".join(a.path for a in self.r.archives)
        message = (f"{why}: the checkpoint archives of pod {self.r.pod} (process memory, "
                   f"secrets included) may still be on node {self.node}: {paths}")
        if self.r.cleanup is not None:
            self.r.cleanup.message = message
        self.r.warnings.append(message)
        log.warning("%s", txt.one_line(message, txt.EVENT_LIMIT))
        self.api.event(self.pod, "DakrCheckpointCleanupFailed",
                       txt.one_line(message, txt.EVENT_LIMIT), type_="Warning")

    # ------------------------------------------------------------------ waiting

    def _wait(self, watch: Callable[..., Iterator[JSON]],
              read: Callable[[str, str], JSON | None], namespace: str, name: str,
              first: JSON, deadline: float, judge: Callable[[Mapping[str, Any]], str], *,
              stoppable: bool = True) -> tuple[str, JSON | None]:
        """Follow one object with watches from ``first`` (as created or found) until
        ``judge`` names an end, it is deleted ("gone"), or ``deadline`` passes ("").
        Returns (verdict, last seen)."""
        last: JSON | None = first
        since = str((first.get("metadata") or {}).get("resourceVersion") or "")
        verdict = judge(first)
        if verdict:
            return verdict, first
        while True:
            remaining = deadline - self.clock()
            if remaining <= 0:
                return "", last
            if stoppable:
                self._check_stop()
            opened: list[Any] = []
            reread = pause = False
            try:
                events = watch(namespace, name, since, min(WATCH_SLICE, remaining),
                               opened.append)
                for event in events:
                    obj = event.get("object") or {}
                    if event.get("type") == "ERROR":
                        reread = int(obj.get("code") or 0) == 410
                        pause = not reread
                        break
                    rv = str((obj.get("metadata") or {}).get("resourceVersion") or "")
                    if rv:
                        since = rv
                    if event.get("type") == "BOOKMARK":
                        continue
                    if event.get("type") == "DELETED":
                        return "gone", obj
                    last = obj
                    verdict = judge(obj)
                    if verdict:
                        return verdict, obj
                    if self.clock() >= deadline:
                        return "", last
            except errors.ExpiredError:
                reread = True
            except kube.Unavailable as e:  # the watch could not open or broke: again soon
                log.info("%s/%s: watch interrupted, watching again: %s", namespace, name,
                         txt.one_line(str(e)))
                pause = True
            finally:
                for resp in opened:
                    kube.close_stream(resp)
            if pause:
                self.sleep(max(0.0, min(self.o.retry_interval, deadline - self.clock())))
            if reread:  # the history is gone: read it, watch from there
                fresh = read(namespace, name)
                if fresh is None:
                    return "gone", last
                last = fresh
                since = str(fresh["metadata"].get("resourceVersion") or "")
                verdict = judge(fresh)
                if verdict:
                    return verdict, fresh


def _job_judge(job: Mapping[str, Any]) -> str:
    state, _ = ckpt.job_outcome(job)
    return "" if state == "Running" else state

