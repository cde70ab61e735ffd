"""A simulated kubelet: what the nodes of the test cluster do after the API server answers.

The API server only records a resize; a kubelet carries it out, later, and reports progress
in pod conditions (KEP-1287, Kubernetes 1.33+): `PodResizePending` (reason `Deferred` or
`Infeasible`) when it cannot start, `PodResizeInProgress` while applying (reason `Error` when
applying failed), none when `status.containerStatuses[].resources` match the spec. A product
that resizes pods must wait on those conditions and fall back when they say no, so the
test server has to produce every one of them, on demand, as real status writes that watches
see step by step. The same goes for the kubelet checkpoint API (KEP-2008), whose failures
(feature gate off, no CRIU, the API server not allowed, a slow runtime) each look different,
for Jobs, which a real cluster runs to completion or failure, and, when `run_pods` is set,
for pods created through the API, which a scheduler places and a kubelet starts (Running and
Ready, or stuck not Ready: `fail_pods`).

Steps run on one background thread, in due order, each a store write under the store lock;
`settled()` waits until no step is due. Nothing sleeps longer than the configured delays.
"""

from __future__ import annotations

import copy
import datetime
import functools
import heapq
import itertools
import json
import math
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from tests.fakes.kubeapi import disruption, store, validation

JSON = dict[str, Any]
PodKey = tuple[str, str]  # (namespace, name)

MODES = ("actuate", "defer", "infeasible", "error", "stall")
CHECKPOINT_MODES = ("ok", "gate-off", "unsupported", "forbidden", "slow")

# The pod's memory usage as the simulated runtime sees it (a quantity, e.g. "300Mi").
USAGE_ANNOTATION = "kubeapi.test/memory-usage"

PENDING = "PodResizePending"
IN_PROGRESS = "PodResizeInProgress"
ERROR_MESSAGE = "rpc error: code = Unknown desc = failed to update container resources"
JOB_FAILED_MESSAGE = "Job has reached the specified backoff limit"
JOB_DONE_MESSAGE = "Reached expected number of succeeded pods"

# What the API server's kubelet client identity is called (kubeadm's default), and what the
# kubelet answers when that identity may not create nodes/checkpoint (kubernetes#126232).
APISERVER_IDENTITY = "kube-apiserver-kubelet-client"
GATE_OFF = "404 page not found\n"
NO_CRIU = "rpc error: code = Unknown desc = checkpoint/restore support not available"
DEADLINE = "rpc error: code = DeadlineExceeded desc = context deadline exceeded"
CRI_DEFAULT_TIMEOUT = 120.0  # seconds: the checkpoint timeout when the caller gives none

_PODS = ("", "pods")
_NODES = ("", "nodes")
_JOBS = ("batch", "jobs")


class _Scheduler:
    """One worker thread running callables at their due time, in order.

    Started on first use, so a server that never resizes or runs a Job has no extra
    thread. A step that raises is kept in `errors` (and surfaced by `Kubelet.settled`).
    """

    def __init__(self, errors: list[BaseException]) -> None:
        self._cond = threading.Condition()
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._busy = 0
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._errors = errors

    def at(self, delay: float, step: Callable[[], None]) -> None:
        with self._cond:
            if self._stopped:
                return
            heapq.heappush(self._queue, (time.monotonic() + max(0.0, delay),
                                         next(self._order), step))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="kubeapi-kubelet",
                                                daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (
                        not self._queue or self._queue[0][0] > time.monotonic()):
                    wait = self._queue[0][0] - time.monotonic() if self._queue else None
                    self._cond.wait(wait)
                if self._stopped:
                    return
                _, _, step = heapq.heappop(self._queue)
                self._busy += 1
            try:
                step()
            except Exception as e:  # kept for settled(); the thread goes on
                self._errors.append(e)
            finally:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify_all()

    def idle(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._busy, timeout)

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._queue.clear()
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join()


class Kubelet:
    """Every node's kubelet at once (and the scheduler): resizes, checkpoints, Jobs, pods.

    Resize modes (`default_mode`, or per pod with `set_mode`):
      - "actuate": `PodResizeInProgress`, then after `delay` seconds the new resources in
        `status.containerStatuses[].resources` and no condition. Before that it checks
        the pod's node (when `spec.nodeName` names a stored Node): requests above the
        node's allocatable are `Infeasible`; requests that fit the node but not beside the
        other pods on it are `Deferred`, re-checked whenever a pod on that node changes or
        goes. From 1.34, a memory limit decrease below the pod's usage (annotation
        `kubeapi.test/memory-usage`) ends in `PodResizeInProgress` reason `Error`;
      - "defer": `PodResizePending` reason `Deferred` until `release()` or another resize;
      - "infeasible": `PodResizePending` reason `Infeasible`, never re-checked;
      - "error": `PodResizeInProgress`, then reason `Error` with the message;
      - "stall": `PodResizeInProgress` with no reason, forever.
    A change to a resource whose `resizePolicy` is `RestartContainer` restarts the
    container: not ready (and the pod not Ready), `restartCount` + 1, then ready again.

    Pods (opt-in, `run_pods = True`; off, created pods stay Pending as before): `pod_delay`
    seconds after a pod is created through the API, it is bound to its `spec.nodeName`, or
    else to the first node (by name) that is Ready, not cordoned and allowed by the pod's
    `nodeSelector` and required node affinity (`kubernetes.io/hostname` is the node's name
    when the label is absent; no taints, no resources counted), as one write, then started
    as another: Running, Ready, container statuses with their resources. A pod no node
    takes stays Pending with `PodScheduled` False (Unschedulable). Pods whose name matches
    `fail_pods(pattern, reason)` start but never become Ready: their containers wait with
    `reason` (CrashLoopBackOff by default, restartCount 3); image-pull reasons keep the
    pod Pending.
    """

    def __init__(self, store_: store.Store, version: tuple[int, int],
                 closing: threading.Event) -> None:
        self.store = store_
        self.version = version
        self.closing = closing
        self.delay = 0.02  # seconds between a resize starting and finishing
        self.job_delay = 0.02  # seconds from a Job's creation to its end
        self.default_mode = "actuate"
        self.checkpoint_mode = "ok"
        self.checkpoint_delay = 1.0  # how long a "slow" checkpoint takes
        self.checkpoints: list[str] = []  # archive paths of successful checkpoints
        self.jobs_created: list[JSON] = []  # every Job created through the API, as created
        self.errors: list[BaseException] = []  # steps that raised (a bug in this module)
        self._modes: dict[PodKey, tuple[str, str]] = {}
        self._checkpoint_modes: dict[str, str] = {}
        self._failing_jobs: list[tuple[re.Pattern[str], str]] = []
        self._lock = threading.Lock()
        self._latest: dict[PodKey, tuple[str, int]] = {}  # (uid, number) of the last resize
        self._held: dict[PodKey, tuple[str, int]] = {}  # "defer" mode, waiting for release()
        self._waiting: dict[PodKey, tuple[str, int, str]] = {}  # Deferred for room, + node
        self._numbers = itertools.count(1)
        self._scheduler = _Scheduler(self.errors)
        self.run_pods = False   # start pods created through the API (see the docstring)
        self.pod_delay = 0.02   # seconds from a pod's creation to its start
        self._failing_pods: list[tuple[re.Pattern[str], str, str]] = []

    # ---------------------------------------------------------------- test controls

    def set_mode(self, namespace: str, name: str, mode: str, message: str = "") -> None:
        """How this pod's next resizes go (see the class docstring); message: the
        condition's message for "defer", "infeasible" and "error" (a kubelet-like default
        otherwise)."""
        if mode not in MODES:
            raise ValueError(f"unknown resize mode {mode!r}: one of {MODES}")
        with self._lock:
            self._modes[(namespace, name)] = (mode, message)

    def mode_for(self, namespace: str, name: str) -> tuple[str, str]:
        with self._lock:
            return self._modes.get((namespace, name), (self.default_mode, ""))

    def release(self, namespace: str, name: str) -> bool:
        """Let a resize held by "defer" go ahead (it actuates); False if none was held."""
        key = (namespace, name)
        with self._lock:
            held = self._held.pop(key, None)
        if held is None:
            return False
        uid, number = held
        self._scheduler.at(0.0, lambda: self._released(key, uid, number))
        return True

    def set_checkpoint_mode(self, node: str, mode: str) -> None:
        """How checkpoints on `node` answer (see `checkpoint`); others use checkpoint_mode."""
        if mode not in CHECKPOINT_MODES:
            raise ValueError(f"unknown checkpoint mode {mode!r}: one of {CHECKPOINT_MODES}")
        with self._lock:
            self._checkpoint_modes[node] = mode

    def checkpoint_mode_for(self, node: str) -> str:
        with self._lock:
            return self._checkpoint_modes.get(node, self.checkpoint_mode)

    def fail_pods(self, pattern: str, reason: str = "CrashLoopBackOff",
                  message: str = "") -> None:
        """Pods whose name matches the regular expression `pattern` (re.search) start, when
        `run_pods` is set, but never become Ready: each container waits with `reason`."""
        with self._lock:
            self._failing_pods.append((re.compile(pattern), reason, message or (
                "back-off 40s restarting failed container" if reason == "CrashLoopBackOff"
                else "")))

    def fail_jobs(self, pattern: str, message: str = JOB_FAILED_MESSAGE) -> None:
        """Jobs whose name matches the regular expression `pattern` (re.search) fail."""
        with self._lock:
            self._failing_jobs.append((re.compile(pattern), message))

    def settled(self, timeout: float = 5.0) -> bool:
        """Wait until no step is due or running (held, stalled and deferred resizes wait
        for nothing). False on timeout; raises if a step failed."""
        done = self._scheduler.idle(timeout)
        if self.errors:
            raise RuntimeError(f"a simulated kubelet step failed: {self.errors[0]!r}") from (
                self.errors[0])
        return done

    def stop(self) -> None:
        """Drop pending steps and join the worker thread."""
        self._scheduler.stop()

    # ---------------------------------------------------------------- from the server

    def resized(self, pod: JSON) -> None:
        """An accepted resize was stored: act on it (the server calls this)."""
        key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
        uid = pod["metadata"]["uid"]
        number = next(self._numbers)
        with self._lock:
            self._latest[key] = (uid, number)
            self._held.pop(key, None)
            self._waiting.pop(key, None)
        self._scheduler.at(0.0, lambda: self._admit(key, uid, number))

    def observe(self, ev: store.Event, cause: str | None) -> None:
        """Every store write (called under the store lock): start Jobs, re-check resizes
        waiting for room on a node whose pods or allocatable changed."""
        if ev.key == _JOBS:
            if ev.type == "ADDED" and cause is not None:
                self._job_created(ev.obj)
            return
        if ev.key == _PODS and ev.type == "ADDED" and cause is not None and self.run_pods:
            key = (ev.namespace, ev.obj["metadata"]["name"])
            uid = ev.obj["metadata"]["uid"]
            self._scheduler.at(self.pod_delay, lambda: self._start_pod(key, uid))
        if ev.key == _PODS:
            node = (ev.obj.get("spec") or {}).get("nodeName")
            me: PodKey | None = (ev.namespace, ev.obj["metadata"]["name"])
        elif ev.key == _NODES:
            node, me = ev.obj["metadata"]["name"], None
        else:
            return
        with self._lock:
            due = [(k, uid, n) for k, (uid, n, where) in self._waiting.items()
                   if where == node and k != me]
        for key, uid, number in due:
            self._scheduler.at(0.0, functools.partial(self._recheck, key, uid, number))

    # ---------------------------------------------------------------- resize steps

    def _pod(self, key: PodKey, uid: str, number: int) -> JSON | None:
        """The pod, if it is still the one and this is still its latest resize."""
        with self._lock:
            if self._latest.get(key) != (uid, number):
                return None
        pod = self.store.objects[_PODS].get(key)
        if pod is None or pod["metadata"]["uid"] != uid:
            return None
        return copy.deepcopy(pod)

    def _save(self, pod: JSON, step: str) -> None:
        """Write the pod's status as the kubelet does (one store write, one watch event)."""
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        if self.version >= (1, 34):
            pod["status"]["observedGeneration"] = pod["metadata"].get("generation", 1)
        rt = self.store.type_for("", "v1", "pods")
        with disruption.acting(f"kubelet: {ns}/{name} {step}"):
            self.store.update(rt, ns, name, pod, "status")

    def _admit(self, key: PodKey, uid: str, number: int) -> None:
        with self.store.lock:
            pod = self._pod(key, uid, number)
            if pod is None:
                return
            mode, message = self.mode_for(*key)
            if mode == "defer":
                with self._lock:
                    self._held[key] = (uid, number)
                self._pending(pod, "Deferred", message or self._room(pod, "Deferred"))
            elif mode == "infeasible":
                self._pending(pod, "Infeasible", message or self._room(pod, "Infeasible"))
            else:
                verdict = self._fit(pod) if mode == "actuate" else None
                if verdict is None:
                    self._start(key, pod, uid, number, mode, message)
                    return
                if verdict[0] == "Deferred":
                    with self._lock:
                        self._waiting[key] = (uid, number, pod["spec"]["nodeName"])
                self._pending(pod, *verdict)

    def _released(self, key: PodKey, uid: str, number: int) -> None:
        with self.store.lock:
            pod = self._pod(key, uid, number)
            if pod is not None:
                self._start(key, pod, uid, number, "actuate", "")

    def _recheck(self, key: PodKey, uid: str, number: int) -> None:
        """A resize Deferred for room: has room appeared on the node?"""
        with self.store.lock:
            with self._lock:
                if self._waiting.get(key, ("", 0, ""))[:2] != (uid, number):
                    return
            pod = self._pod(key, uid, number)
            if pod is None:  # gone, or resized again: nothing waits any more
                with self._lock:
                    if self._waiting.get(key, ("", 0, ""))[:2] == (uid, number):
                        del self._waiting[key]
                return
            verdict = self._fit(pod)
            if verdict is not None and verdict[0] == "Deferred":
                self._pending(pod, *verdict)
                return
            with self._lock:
                self._waiting.pop(key, None)
            if verdict is None:
                self._start(key, pod, uid, number, "actuate", "")
            else:
                self._pending(pod, *verdict)

    def _pending(self, pod: JSON, reason: str, message: str) -> None:
        status = pod.setdefault("status", {})
        _drop_condition(status, IN_PROGRESS)
        self._set_condition(pod, PENDING, "True", reason, message)
        self._save(pod, f"resize {reason}")

    def _start(self, key: PodKey, pod: JSON, uid: str, number: int, mode: str,
               message: str) -> None:
        if mode == "actuate" and self.version >= (1, 34):
            why = _memory_usage_error(pod)
            if why:
                mode, message = "error", why
        restart = [] if mode == "error" else _restarts(pod)
        status = pod.setdefault("status", {})
        _drop_condition(status, PENDING)
        self._set_condition(pod, IN_PROGRESS, "True", "", "")
        spec_containers = {c.get("name"): c for c in pod["spec"].get("containers") or []}
        was_ready = []
        for cs in status.get("containerStatuses") or []:
            c = spec_containers.get(cs.get("name"))
            if c is None:
                continue
            cs["allocatedResources"] = copy.deepcopy(
                (c.get("resources") or {}).get("requests") or {})
            if cs["name"] in restart:
                if cs.get("ready"):
                    was_ready.append(cs["name"])
                cs["ready"] = False
                cs["restartCount"] = int(cs.get("restartCount") or 0) + 1
        if restart:
            unready = sorted(cs["name"] for cs in status.get("containerStatuses") or []
                             if not cs.get("ready"))
            why = f"containers with unready status: [{' '.join(unready)}]"
            for kind in ("Ready", "ContainersReady"):
                if _condition(status, kind) is not None or kind == "Ready":
                    self._set_condition(pod, kind, "False", "ContainersNotReady", why)
        step = "resize in progress"
        if restart:
            step += f" (restarting {', '.join(restart)})"
        self._save(pod, step)
        if mode == "stall":
            return
        self._scheduler.at(self.delay, lambda: self._finish(
            key, uid, number, mode, message, was_ready))

    def _finish(self, key: PodKey, uid: str, number: int, mode: str, message: str,
                restarted: list[str]) -> None:
        with self.store.lock:
            pod = self._pod(key, uid, number)
            if pod is None:
                return
            status = pod.setdefault("status", {})
            if mode == "error":
                self._set_condition(pod, IN_PROGRESS, "True", "Error", message or ERROR_MESSAGE)
                self._save(pod, "resize Error")
                return
            spec_containers = {c.get("name"): c for c in pod["spec"].get("containers") or []}
            for cs in status.get("containerStatuses") or []:
                c = spec_containers.get(cs.get("name"))
                if c is not None:
                    cs["resources"] = copy.deepcopy(c.get("resources") or {})
                if cs.get("name") in restarted:
                    cs["ready"] = True
            _drop_condition(status, IN_PROGRESS)
            statuses = status.get("containerStatuses") or []
            if restarted and all(cs.get("ready") for cs in statuses):
                for kind in ("Ready", "ContainersReady"):
                    if _condition(status, kind) is not None:
                        self._set_condition(pod, kind, "True", "", "")
            self._save(pod, "resize done")

    def _set_condition(self, pod: JSON, kind: str, value: str, reason: str,
                       message: str) -> None:
        """Set a condition as the kubelet does: lastTransitionTime moves only when the
        status does, observedGeneration (1.34+) names the spec it was computed from."""
        status = pod.setdefault("status", {})
        conditions = status.setdefault("conditions", [])
        old = _condition(status, kind)
        new: JSON = {"type": kind, "status": value}
        if self.version >= (1, 34):
            new["observedGeneration"] = pod["metadata"].get("generation", 1)
        new["lastProbeTime"] = None
        new["lastTransitionTime"] = (
            old.get("lastTransitionTime") if old is not None and old.get("status") == value
            and old.get("lastTransitionTime") else store.now())
        if reason:
            new["reason"] = reason
        if message:
            new["message"] = message
        if old is None:
            conditions.append(new)
        else:
            conditions[conditions.index(old)] = new

    # ---------------------------------------------------------------- node room

    def _node_of(self, pod: JSON) -> JSON | None:
        name = (pod.get("spec") or {}).get("nodeName")
        return self.store.objects[_NODES].get(("", name)) if name else None

    def _fit(self, pod: JSON) -> tuple[str, str] | None:
        """The kubelet's admission of a resize: None (go), Infeasible or Deferred + why.

        Infeasible: the pod alone asks more than the node's allocatable (memory checked
        first, as the kubelet does); Deferred: it fits alone, not beside the pods already
        allocated on the node (cpu first, as the scheduler's fit check does).
        """
        node = self._node_of(pod)
        if node is None:
            return None
        capacity = _amounts((node.get("status") or {}).get("allocatable") or {})
        want = _pod_requests(pod)
        for res in ("memory", "cpu"):
            if res in capacity and want[res] > capacity[res]:
                return ("Infeasible", f"Node didn't have enough capacity: {res}, requested: "
                        f"{want[res]}, capacity: {capacity[res]}")
        used = self._used_beside(pod)
        for res in ("cpu", "memory"):
            if res in capacity and want[res] + used[res] > capacity[res]:
                return ("Deferred", f"Node didn't have enough resource: {res}, requested: "
                        f"{want[res]}, used: {used[res]}, capacity: {capacity[res]}")
        return None

    def _room(self, pod: JSON, reason: str) -> str:
        """A kubelet-like message for a forced Deferred/Infeasible (modes "defer",
        "infeasible"), with the pod's cpu numbers and its node's, when known."""
        node = self._node_of(pod)
        capacity = _amounts(((node or {}).get("status") or {}).get("allocatable") or {})
        want = _pod_requests(pod)["cpu"]
        cap = capacity.get("cpu", 0)
        if reason == "Infeasible":
            return f"Node didn't have enough capacity: cpu, requested: {want}, capacity: {cap}"
        used = self._used_beside(pod)["cpu"] if node is not None else 0
        return (f"Node didn't have enough resource: cpu, requested: {want}, used: {used}, "
                f"capacity: {cap}")

    def _used_beside(self, pod: JSON) -> dict[str, int]:
        """What the other active pods on the pod's node have been allocated."""
        node = pod["spec"].get("nodeName")
        used = {"cpu": 0, "memory": 0}
        for key, other in self.store.objects[_PODS].items():
            if key == (pod["metadata"]["namespace"], pod["metadata"]["name"]) or (
                    other.get("spec") or {}).get("nodeName") != node or (
                    other.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            for res, amount in _pod_requests(other, allocated=True).items():
                used[res] += amount
        return used

    # ---------------------------------------------------------------- pods

    def _start_pod(self, key: PodKey, uid: str) -> None:
        """Bind a created pod to a node (unless it names one), then start it."""
        ns, name = key
        rt = self.store.type_for("", "v1", "pods")
        with self.store.lock:
            pod = self.store.objects[_PODS].get(key)
            if pod is None or pod["metadata"]["uid"] != uid or pod["metadata"].get(
                    "deletionTimestamp"):
                return
            pod = copy.deepcopy(pod)
            node = pod["spec"].get("nodeName") or self._place(pod)
            if node is None:
                self._set_condition(pod, "PodScheduled", "False", "Unschedulable",
                                    f"0/{len(self.store.objects[_NODES])} nodes are "
                                    "available: no node matches the pod")
                self._save(pod, "unschedulable")
                return
            if not pod["spec"].get("nodeName"):
                pod["spec"]["nodeName"] = node
                with disruption.acting(f"scheduler: bind {ns}/{name} to {node}"):
                    pod = copy.deepcopy(self.store.update(rt, ns, name, pod))
            with self._lock:
                failing = next(((r, m) for p, r, m in self._failing_pods
                                if p.search(name)), None)
            self._run(pod, failing)
            self._save(pod, "started" if failing is None else f"failing ({failing[0]})")

    def _run(self, pod: JSON, failing: tuple[str, str] | None) -> None:
        """The status of a started pod: Running and Ready, or waiting with `failing`."""
        now = store.now()
        ok = failing is None
        names = [c["name"] for c in pod["spec"].get("containers") or []]
        statuses = []
        for c in pod["spec"].get("containers") or []:
            resources = copy.deepcopy(c.get("resources") or {})
            cs: JSON = {"name": c["name"], "image": c.get("image", ""), "imageID": "",
                        "containerID": f"cri-o://{pod['metadata']['uid']}-{c['name']}",
                        "ready": ok, "started": ok, "restartCount": 0 if ok else 3,
                        "resources": resources}
            if resources.get("requests"):
                cs["allocatedResources"] = copy.deepcopy(resources["requests"])
            if ok:
                cs["state"] = {"running": {"startedAt": now}}
            else:
                assert failing is not None
                cs["state"] = {"waiting": {"reason": failing[0], "message": failing[1]}}
                if failing[0] == "CrashLoopBackOff":
                    cs["lastState"] = {"terminated": {"exitCode": 1, "reason": "Error",
                                                      "startedAt": now, "finishedAt": now}}
            statuses.append(cs)
        pulling = failing is not None and failing[0] in ("ErrImagePull", "ImagePullBackOff")
        status = pod.setdefault("status", {})
        status.update({"phase": "Pending" if pulling else "Running", "hostIP": "10.0.0.1",
                       "podIP": "10.244.0.10", "startTime": now, "containerStatuses": statuses})
        for kind in ("PodReadyToStartContainers", "Initialized", "PodScheduled"):
            self._set_condition(pod, kind, "True", "", "")
        for kind in ("ContainersReady", "Ready"):
            if ok:
                self._set_condition(pod, kind, "True", "", "")
            else:
                self._set_condition(pod, kind, "False", "ContainersNotReady",
                                    f"containers with unready status: [{' '.join(names)}]")

    def _place(self, pod: JSON) -> str | None:
        """The scheduler's choice, simplified: the first node (by name) that is Ready, not
        cordoned, and allowed by the pod's nodeSelector and required node affinity."""
        spec = pod.get("spec") or {}
        for (_, name), node in sorted(self.store.objects[_NODES].items()):
            ready = _condition(node.get("status") or {}, "Ready") or {}
            if (node.get("spec") or {}).get("unschedulable") or ready.get("status") != "True":
                continue
            labels = {"kubernetes.io/hostname": name, **(node["metadata"].get("labels") or {})}
            if any(labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
                continue
            if _affinity_allows(spec, labels):
                return str(name)
        return None

    # ---------------------------------------------------------------- jobs

    def _job_created(self, job: JSON) -> None:
        self.jobs_created.append(copy.deepcopy(job))
        if (job.get("spec") or {}).get("suspend"):
            return
        key = (job["metadata"]["namespace"], job["metadata"]["name"])
        uid = job["metadata"]["uid"]
        self._scheduler.at(0.0, lambda: self._job_step(key, uid, done=False))
        self._scheduler.at(self.job_delay, lambda: self._job_step(key, uid, done=True))

    def _job_step(self, key: PodKey, uid: str, done: bool) -> None:
        """Start (active: 1), then end the Job as its controller reports it (1.31+: the
        SuccessCriteriaMet / FailureTarget condition, then Complete / Failed)."""
        with self.store.lock:
            job = self.store.objects[_JOBS].get(key)
            if job is None or job["metadata"]["uid"] != uid:
                return
            job = copy.deepcopy(job)
            now = store.now()
            status = job.setdefault("status", {})
            status.setdefault("startTime", now)
            status.update({"active": 1, "ready": 0, "terminating": 0,
                           "uncountedTerminatedPods": {}})
            if done:
                with self._lock:
                    failing = next((m for p, m in self._failing_jobs
                                    if p.search(key[1])), None)
                status["active"] = 0
                if failing is None:
                    status["succeeded"] = 1
                    status["completionTime"] = now
                    kinds, reason, message = (("SuccessCriteriaMet", "Complete"),
                                              "CompletionsReached", JOB_DONE_MESSAGE)
                else:
                    status["failed"] = 1
                    kinds, reason, message = (("FailureTarget", "Failed"),
                                              "BackoffLimitExceeded", failing)
                status["conditions"] = [
                    {"type": kind, "status": "True", "reason": reason, "message": message,
                     "lastProbeTime": now, "lastTransitionTime": now} for kind in kinds]
            rt = self.store.type_for("batch", "v1", "jobs")
            with disruption.acting(f"kubelet: job {key[0]}/{key[1]} "
                                   f"{'finished' if done else 'started'}"):
                self.store.update(rt, key[0], key[1], job, "status")

    # ---------------------------------------------------------------- checkpoint API

    def checkpoint(self, method: str, node: JSON, rest: list[str],
                   query: dict[str, str]) -> tuple[int, str, str]:
        """The kubelet's answer to `/checkpoint/{ns}/{pod}/{container}` through the API
        server's node proxy: (HTTP code, content type, body), passed through as the API
        server does. Modes: "ok" (200 `{"items": [path]}`), "gate-off" (404, the route
        is not registered), "unsupported" (500, the runtime lacks CRIU), "forbidden" (403,
        the API server's identity may not create nodes/checkpoint), "slow" (takes
        `checkpoint_delay` seconds; past the `timeout` query parameter, or the CRI's
        2 minutes when it is 0 or absent, 500 deadline exceeded)."""
        text = "text/plain; charset=utf-8"
        mode = self.checkpoint_mode_for(node["metadata"]["name"])
        if not rest or rest[0] != "checkpoint" or mode == "gate-off":
            return 404, text, GATE_OFF
        if mode == "forbidden":
            verb = {"POST": "create", "GET": "get", "PUT": "update", "PATCH": "patch",
                    "DELETE": "delete"}.get(method, method.lower())
            return 403, text, (f"Forbidden (user={APISERVER_IDENTITY}, verb={verb}, "
                               "resource=nodes, subresource=checkpoint)")
        if len(rest) != 4:
            return 404, text, GATE_OFF
        if method != "POST":
            return 405, text, "405: Method Not Allowed"
        _, ns, pod_name, container = rest
        with self.store.lock:
            pod = self.store.objects[_PODS].get((ns, pod_name))
            on_node = pod is not None and (
                pod.get("spec") or {}).get("nodeName") == node["metadata"]["name"]
            names = [c.get("name") for c in (pod or {}).get("spec", {}).get("containers") or []]
        if not on_node:
            return 404, text, "pod does not exist"
        if container not in names:
            return 404, text, f"container {container} does not exist"
        timeout = 0.0
        if "timeout" in query:
            try:
                timeout = float(int(query["timeout"]))
            except ValueError:
                return 404, text, "cannot parse value of timeout parameter"
        failed = f"checkpointing of {ns}/{pod_name}/{container} failed"
        if mode == "unsupported":
            return 500, text, f"{failed} ({NO_CRIU})"
        if mode == "slow":
            deadline = timeout if timeout > 0 else CRI_DEFAULT_TIMEOUT
            if self.checkpoint_delay > deadline:
                self.closing.wait(deadline)
                return 500, text, f"{failed} ({DEADLINE})"
            self.closing.wait(self.checkpoint_delay)
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        path = f"/var/lib/kubelet/checkpoints/checkpoint-{pod_name}_{ns}-{container}-{stamp}.tar"
        with self._lock:
            self.checkpoints.append(path)
        return 200, "application/json", json.dumps({"items": [path]})


# ---------------------------------------------------------------------- helpers


def _affinity_allows(spec: JSON, labels: dict[str, str]) -> bool:
    """Required node affinity: any term whose expressions (In, NotIn, Exists,
    DoesNotExist) all hold."""
    required = (((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution") or {})
    terms = required.get("nodeSelectorTerms") or []
    if not terms:
        return True

    def holds(e: JSON) -> bool:
        key, op, values = e.get("key"), e.get("operator"), e.get("values") or []
        if op == "In":
            return labels.get(key) in values
        if op == "NotIn":
            return labels.get(key) not in values
        if op == "Exists":
            return key in labels
        if op == "DoesNotExist":
            return key not in labels
        return True

    return any(all(holds(e) for e in t.get("matchExpressions") or []) for t in terms)


def _condition(status: JSON, kind: str) -> JSON | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == kind), None)


def _drop_condition(status: JSON, kind: str) -> None:
    """Resize conditions are present only while true."""
    if status.get("conditions"):
        status["conditions"] = [c for c in status["conditions"] if c.get("type") != kind]


def _amount(resource: str, value: Any) -> int:
    """cpu in millicores, memory in bytes, rounded up: the kubelet's units in messages."""
    q = validation.parse_quantity(value)
    return math.ceil(q * 1000) if resource == "cpu" else math.ceil(q)


def _amounts(resources: JSON) -> dict[str, int]:
    return {r: _amount(r, resources[r]) for r in ("cpu", "memory") if r in resources}


def _pod_requests(pod: JSON, allocated: bool = False) -> dict[str, int]:
    """Sum of the containers' cpu/memory requests; with `allocated`, what the kubelet
    accepted (`allocatedResources`) where it says so."""
    statuses = {cs.get("name"): cs for cs in (pod.get("status") or {}).get(
        "containerStatuses") or []}
    total = {"cpu": 0, "memory": 0}
    for c in (pod.get("spec") or {}).get("containers") or []:
        requests = (c.get("resources") or {}).get("requests") or {}
        if allocated and (statuses.get(c.get("name")) or {}).get("allocatedResources"):
            requests = statuses[c.get("name")]["allocatedResources"]
        for res, amount in _amounts(requests).items():
            total[res] += amount
    return total


def _policy(container: JSON, resource: str) -> str:
    for p in container.get("resizePolicy") or []:
        if p.get("resourceName") == resource:
            return str(p.get("restartPolicy") or "NotRequired")
    return "NotRequired"


def _changed(container: JSON, actual: JSON, resource: str) -> bool:
    want = container.get("resources") or {}
    for section in ("requests", "limits"):
        a = (want.get(section) or {}).get(resource)
        b = (actual.get(section) or {}).get(resource)
        if (a is None) != (b is None) or (
                a is not None and b is not None and _amount(resource, a) != _amount(resource, b)):
            return True
    return False


def _restarts(pod: JSON) -> list[str]:
    """Containers a resize restarts: a changed resource whose resizePolicy says so."""
    actual = {cs.get("name"): cs.get("resources") or {}
              for cs in (pod.get("status") or {}).get("containerStatuses") or []}
    return [c["name"] for c in pod["spec"].get("containers") or []
            if any(_policy(c, r) == "RestartContainer" and _changed(c, actual.get(
                c.get("name"), {}), r) for r in ("cpu", "memory"))]


def _memory_usage_error(pod: JSON) -> str:
    """The kubelet's refusal (1.34+) to set a memory limit below current usage.

    Usage is the pod's (annotation `kubeapi.test/memory-usage`); it is checked against the
    pod's limit (the sum, when every container has one) and, in a one-container pod,
    against the container's. Only containers resized without a restart are checked.
    """
    usage_text = (pod["metadata"].get("annotations") or {}).get(USAGE_ANNOTATION)
    if not usage_text:
        return ""
    usage = _amount("memory", usage_text)
    containers = pod["spec"].get("containers") or []
    actual = {cs.get("name"): cs.get("resources") or {}
              for cs in (pod.get("status") or {}).get("containerStatuses") or []}

    def limit(resources: JSON) -> int | None:
        value = (resources.get("limits") or {}).get("memory")
        return None if value is None else _amount("memory", value)

    errors: list[str] = []
    new = [limit(c.get("resources") or {}) for c in containers]
    old = [limit(actual.get(c.get("name"), {})) for c in containers]
    shrinking = [c for c, n, o in zip(containers, new, old, strict=True)
                 if n is not None and o is not None and n < o
                 and _policy(c, "memory") == "NotRequired"]
    if not shrinking:
        return ""
    if all(n is not None for n in new):
        pod_limit = sum(n for n in new if n is not None)
        if pod_limit < usage:
            errors.append(f"attempting to set pod memory limit ({pod_limit}) below current "
                          f"usage ({usage})")
    if len(containers) == 1:
        n = new[0]
        if n is not None and n < usage:
            errors.append(f'attempting to set container "{containers[0]["name"]}" memory '
                          f"limit ({n}) below current usage ({usage})")
    if not errors:
        return ""
    joined = errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]"
    return f"cannot decrease memory limits: {joined}"
