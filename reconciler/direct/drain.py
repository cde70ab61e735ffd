"""Cordon and drain: empty the nodes a NodeGroupRecommendation removes, the way `kubectl drain`
does, and leave deleting the node to the cluster's autoscaler.

We never delete nodes or machines: cluster-autoscaler and Karpenter remove a node once it is
empty, and they know the cloud side. What we own is getting the node empty without breaking
anyone's availability, hence:

- cordon first (``spec.unschedulable``), so that nothing new lands on the node while it drains;
- the Eviction API, one request per pod, so that the API server enforces PodDisruptionBudgets
  (a 429 means "not now": we wait and ask again until the per-node timeout);
- a ``uid`` precondition on every eviction, so a pod recreated under the same name is never
  evicted in place of the one we planned;
- a pure plan (``plan_drain``) that refuses up front, before any pod is touched, when a pod
  would lose data or never come back (emptyDir, bare pods), as kubectl does without
  ``--delete-emptydir-data`` / ``--force``.

A drain refused before anything was evicted leaves the node as it found it (uncordoned if we
cordoned it). A drain that evicted some pods and then ran out of time stays cordoned: the
evicted pods were rescheduled elsewhere on purpose, and the caller decides (``uncordon``).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from reconciler.adapters import kube
from reconciler.direct import move
from reconciler.domain import errors, retry
from reconciler.domain import text as txt

log = logging.getLogger("reconciler.direct.drain")

JSON = dict[str, Any]
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
DO_NOT_DISRUPT = "karpenter.sh/do-not-disrupt"
# A pod (its template) opts in to leaving a drained node with its process state: it is
# moved by checkpoint/restore (``move``) instead of evicted, where the cluster can restore.
MOVE_ANNOTATION = "dakr.devzero.io/move"
MOVE_CHECKPOINT = "checkpoint"
CORDON_ATTEMPTS = 3  # a node's resourceVersion moves with its status: re-read and try again
_RETRY = "retry"     # an eviction that failed for a temporary reason (5xx, timeout)


# --------------------------------------------------------------------------- options / plan


@dataclass(frozen=True)
class DrainOptions:
    """How a drain behaves; the defaults are `kubectl drain --ignore-daemonsets`'s."""

    timeout: float = 300.0              # per node, from the cordon to the last pod gone
    retry_interval: float = 5.0         # between evictions refused with 429 (PDB)
    poll_interval: float = 1.0          # between re-lists while evicted pods terminate
    grace_period_seconds: int | None = None   # None: each pod's own
    ignore_daemonsets: bool = True      # DaemonSet pods stay (the DaemonSet would recreate them)
    delete_emptydir_data: bool = False  # emptyDir data is lost with the pod: refuse by default
    bare_pods: Literal["refuse", "evict"] = "refuse"  # no controller: nothing recreates them
    respect_do_not_disrupt: bool = True  # karpenter.sh/do-not-disrupt: "true" blocks
    # How a pod annotated dakr.devzero.io/move: checkpoint is moved with its state instead
    # of evicted; None (or a cluster that does not declare checkpoint/restore): evicted.
    moving: move.MoveOptions | None = None

    def __post_init__(self) -> None:
        if self.timeout <= 0 or self.retry_interval <= 0 or self.poll_interval <= 0:
            raise errors.ConfigError("drain timeout and intervals must be > 0")
        if self.bare_pods not in ("refuse", "evict"):
            raise errors.ConfigError(f"bare_pods must be 'refuse' or 'evict', not "
                                     f"{self.bare_pods!r}")


@dataclass(frozen=True)
class PodRef:
    namespace: str
    name: str
    uid: str


@dataclass(frozen=True)
class DrainPlan:
    """Which pods of a node go, which stay and why, and which forbid the drain and why."""

    node: str
    evict: tuple[PodRef, ...] = ()
    wait: tuple[PodRef, ...] = ()                      # already terminating: wait, not evict
    skipped: tuple[tuple[str, str, str], ...] = ()    # (namespace, name, why)
    blocking: tuple[tuple[str, str, str], ...] = ()   # (namespace, name, why)

    @property
    def ok(self) -> bool:
        return not self.blocking


def _controller(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for ref in (pod.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref  # type: ignore[no-any-return]
    return None


def _emptydirs(pod: Mapping[str, Any]) -> list[str]:
    return [str(v.get("name")) for v in (pod.get("spec") or {}).get("volumes") or []
            if isinstance(v, Mapping) and "emptyDir" in v]


def _ref(pod: Mapping[str, Any]) -> PodRef:
    meta = pod.get("metadata") or {}
    return PodRef(str(meta.get("namespace") or "default"), str(meta.get("name") or ""),
                  str(meta.get("uid") or ""))


def classify(pod: Mapping[str, Any], options: DrainOptions) -> tuple[str, str]:
    """One pod's fate: ("evict" | "wait" | "skip" | "block", why)."""
    meta = pod.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    phase = (pod.get("status") or {}).get("phase")
    if MIRROR_ANNOTATION in annotations:
        return "skip", "mirror (static) pod: managed by the kubelet, not the API"
    if phase in ("Succeeded", "Failed"):
        return "skip", f"finished ({phase}): nothing to evict"
    if meta.get("deletionTimestamp"):
        return "wait", "already terminating"
    owner = _controller(pod)
    if owner is not None and owner.get("kind") == "DaemonSet":
        if options.ignore_daemonsets:
            return "skip", f"managed by DaemonSet {owner.get('name')}"
        return "block", (f"managed by DaemonSet {owner.get('name')}: it would come back "
                         "(set ignore_daemonsets)")
    reasons: list[str] = []
    if options.respect_do_not_disrupt and str(annotations.get(DO_NOT_DISRUPT, "")) == "true":
        reasons.append(f'annotated {DO_NOT_DISRUPT}: "true"')
    if owner is None and options.bare_pods == "refuse":
        reasons.append("no controller owns it: an evicted bare pod is never recreated "
                       "(set bare_pods='evict' to evict it anyway)")
    volumes = _emptydirs(pod)
    if volumes and not options.delete_emptydir_data:
        reasons.append(f"uses emptyDir volume(s) {', '.join(volumes)}: their data would be "
                       "lost (set delete_emptydir_data)")
    if reasons:
        return "block", "; ".join(reasons)
    return "evict", "evictable"


def plan_drain(node: str, pods: Sequence[Mapping[str, Any]], options: DrainOptions) -> DrainPlan:
    """Sort the pods of ``node`` (pure): evict, wait for, skip, or refuse the drain."""
    evict: list[PodRef] = []
    wait: list[PodRef] = []
    skipped: list[tuple[str, str, str]] = []
    blocking: list[tuple[str, str, str]] = []
    for pod in pods:
        bound = (pod.get("spec") or {}).get("nodeName")
        if bound and bound != node:
            continue  # not ours to drain
        ref = _ref(pod)
        fate, why = classify(pod, options)
        if fate == "evict":
            evict.append(ref)
        elif fate == "wait":
            wait.append(ref)
        elif fate == "skip":
            skipped.append((ref.namespace, ref.name, why))
        else:
            blocking.append((ref.namespace, ref.name, why))
    return DrainPlan(node, tuple(evict), tuple(wait), tuple(skipped), tuple(blocking))


# --------------------------------------------------------------------------- cordon


def _forbidden(e: errors.ReconcilerError, verb: str, resource: str) -> str:
    return (f"forbidden: the reconciler needs RBAC '{verb}' on '{resource}' (core API group): "
            f"{e}")


def _set_unschedulable(api: kube.Kube, node: str, value: bool) -> bool:
    """Set ``spec.unschedulable``, guarded on what was read (a node's resourceVersion moves
    with its status: a conflict reads it again); False when it already was so."""
    def write(_: int) -> bool:
        obj = api.refresh_node(node)
        if obj is None:
            raise kube.NotFound(f"node {node} not found")
        spec = obj.get("spec")
        current = bool((spec or {}).get("unschedulable", False))
        if current == value:
            return False
        ops: list[JSON]
        if isinstance(spec, dict) and "unschedulable" in spec:
            ops = [{"op": "test", "path": "/spec/unschedulable", "value": spec["unschedulable"]}]
        else:  # RFC 6902 cannot test an absent member: guard on the version read instead
            ops = [{"op": "test", "path": "/metadata/resourceVersion",
                    "value": obj["metadata"]["resourceVersion"]}]
        if not isinstance(spec, dict):
            ops.append({"op": "add", "path": "/spec", "value": {"unschedulable": value}})
        elif value:
            ops.append({"op": "add", "path": "/spec/unschedulable", "value": True})
        else:
            ops.append({"op": "remove", "path": "/spec/unschedulable"})
        api.patch_node(node, ops)
        log.info("%s node %s", "cordoned" if value else "uncordoned", txt.one_line(node))
        return True

    return retry.on_conflict(write, f"node {node}", attempts=CORDON_ATTEMPTS)


def cordon(api: kube.Kube, node: str) -> bool:
    """Mark the node unschedulable; False when it already was (nothing written)."""
    return _set_unschedulable(api, node, True)


def uncordon(api: kube.Kube, node: str) -> bool:
    """Make the node schedulable again; False when it already was (nothing written)."""
    return _set_unschedulable(api, node, False)


# --------------------------------------------------------------------------- drain


@dataclass(frozen=True)
class DrainResult:
    node: str
    complete: bool
    message: str
    cordoned_by_us: bool = False
    evicted: tuple[tuple[str, str], ...] = ()
    skipped: tuple[tuple[str, str, str], ...] = ()
    remaining: tuple[tuple[str, str, str], ...] = ()
    eviction_requests: int = 0   # eviction POSTs sent (retries after 429 included)
    node_found: bool = True


class _Abort(Exception):
    """End the drain now with this message (an RBAC refusal, an unfixable answer)."""


def drain(api: kube.Kube, node: str, options: DrainOptions | None = None, *,
          stop: threading.Event | None = None,
          clock: Callable[[], float] = time.monotonic,
          sleep: Callable[[float], None] | None = None) -> DrainResult:
    """Cordon ``node`` and evict its pods through the Eviction API until none that must go
    is left, the timeout passes, ``stop`` is set, or a pod forbids the drain."""
    options = options or DrainOptions()
    doze = sleep or (stop.wait if stop is not None else time.sleep)
    try:
        return _Drain(api, node, options, stop, clock, doze).run()
    except _Abort as e:  # raised before the cordon: nothing to undo
        return DrainResult(node, False, str(e))
    except errors.ReconcilerError as e:  # before the cordon too (reading the node or pods)
        return DrainResult(node, False, f"drain of node {node} failed: {e}")


class _Drain:
    def __init__(self, api: kube.Kube, node: str, options: DrainOptions,
                 stop: threading.Event | None, clock: Callable[[], float],
                 sleep: Callable[[float], Any]) -> None:
        self.api, self.node, self.options = api, node, options
        self.stop, self.clock, self.sleep = stop, clock, sleep
        self.cordoned = False
        self.evicted: list[tuple[str, str]] = []
        self.moved: list[tuple[str, str]] = []
        self.requests = 0

    def result(self, complete: bool, message: str, plan: DrainPlan | None = None,
               remaining: Sequence[tuple[str, str, str]] = (), *,
               node_found: bool = True) -> DrainResult:
        return DrainResult(self.node, complete, message, self.cordoned, tuple(self.evicted),
                           plan.skipped if plan else (), tuple(remaining), self.requests,
                           node_found)

    def pods(self) -> list[JSON]:
        try:
            return self.api.refresh_pods_on_node(self.node)
        except kube.Forbidden as e:
            raise _Abort(_forbidden(e, "list", "pods")) from e

    def undo_cordon(self) -> str:
        """Give the node back as found when the drain ends before evicting anything."""
        if not self.cordoned or self.evicted:
            return ""
        try:
            uncordon(self.api, self.node)
        except errors.ReconcilerError as e:
            return f"; could not uncordon it again: {e}"
        self.cordoned = False
        return "; uncordoned it again"

    def run(self) -> DrainResult:
        node = self.node
        try:
            found = self.api.refresh_node(node)
        except kube.Forbidden as e:
            raise _Abort(_forbidden(e, "get", "nodes")) from e
        if found is None:
            return self.result(False, f"node {node} not found", node_found=False)
        # Refuse before writing anything when a pod already forbids the drain.
        plan = plan_drain(node, self.pods(), self.options)
        if not plan.ok:
            return self.refused(plan)
        try:
            self.cordoned = cordon(self.api, node)
        except kube.Forbidden as e:
            raise _Abort(_forbidden(e, "patch", "nodes")) from e
        except errors.ReconcilerError as e:
            return self.result(False, f"could not cordon node {node}: {e}", plan)
        try:
            # List again once cordoned: a pod bound in between is in this answer.
            plan = plan_drain(node, self.pods(), self.options)
            if not plan.ok:
                return self.refused(plan)
            return self.evict_all(plan)
        except _Abort as e:
            return self.result(False, str(e) + self.undo_cordon(), plan)
        except errors.ReconcilerError as e:
            return self.result(False, f"drain of node {node} failed: {e}" + self.undo_cordon(),
                               plan)

    def refused(self, plan: DrainPlan) -> DrainResult:
        pods = ", ".join(f"{ns}/{name} ({why})" for ns, name, why in plan.blocking)
        message = f"node {self.node} cannot be drained: {pods}" + self.undo_cordon()
        log.warning("%s", txt.one_line(message))
        return self.result(False, message, plan, plan.blocking)

    def move_opted_in(self, plan: DrainPlan) -> DrainPlan:
        """Move the pods that asked for it (``MOVE_ANNOTATION``) with their state; those
        moved leave the plan, those that could not be moved stay to be evicted (a drain
        empties the node either way; the reason is logged)."""
        moving = self.options.moving
        if moving is None or not moving.checkpoint_restore:
            return plan
        left: list[PodRef] = []
        for ref in plan.evict:
            pod = self.api.pod(ref.namespace, ref.name)
            wants = ((pod or {}).get("metadata") or {}).get("annotations") or {}
            if pod is None or wants.get(MOVE_ANNOTATION) != MOVE_CHECKPOINT:
                left.append(ref)
                continue
            got = move.move_pod(self.api, pod, {}, moving, stop=self.stop)
            self.requests += got.requests
            if got.moved:
                self.moved.append((ref.namespace, ref.name))
                self.evicted.append((ref.namespace, ref.name))
                continue
            log.warning("pod %s/%s could not be moved with its state, evicting it: %s",
                        ref.namespace, ref.name, txt.one_line(got.reason))
            left.append(ref)
        return dataclasses.replace(plan, evict=tuple(left))

    def evict_all(self, plan: DrainPlan) -> DrainResult:
        opts = self.options
        plan = self.move_opted_in(plan)
        deadline = self.clock() + opts.timeout
        to_evict: dict[str, PodRef] = {p.uid: p for p in plan.evict}
        due: dict[str, float] = dict.fromkeys(to_evict, 0.0)
        why: dict[str, str] = {}
        waiting: dict[str, PodRef] = {p.uid: p for p in plan.wait}
        while True:
            if self.stop is not None and self.stop.is_set():
                return self.unfinished(plan, to_evict, waiting, why, "stopped")
            now = self.clock()
            for uid, pod in list(to_evict.items()):
                if due[uid] > now:
                    continue
                outcome = self.evict_one(pod)
                if outcome.outcome in (kube.EVICTION_BLOCKED, _RETRY):
                    why[uid] = outcome.message
                    wait = outcome.retry_after if outcome.retry_after else opts.retry_interval
                    due[uid] = self.clock() + wait
                    continue
                del to_evict[uid]
                if outcome.outcome == kube.EVICTION_DONE:
                    self.evicted.append((pod.namespace, pod.name))
                    waiting[uid] = pod
            if waiting:
                try:
                    listed = self.pods()
                except kube.Unavailable as e:  # keep waiting; the next poll may answer
                    log.info("could not list the pods of node %s, will retry: %s",
                             txt.one_line(self.node), txt.one_line(str(e)))
                    listed = None
                if listed is not None:
                    present = {str((p.get("metadata") or {}).get("uid")) for p in listed}
                    for uid in [u for u in waiting if u not in present]:
                        del waiting[uid]
            if not to_evict and not waiting:
                message = (f"node {self.node} drained: {len(self.evicted)} pod(s) evicted, "
                           f"{len(plan.skipped)} skipped"
                           + (f", {len(self.moved)} of them moved with their state"
                              if self.moved else ""))
                log.info("%s", txt.one_line(message))
                return self.result(True, message, plan)
            now = self.clock()
            if now >= deadline:
                return self.unfinished(plan, to_evict, waiting, why,
                                       f"timed out after {opts.timeout:g}s")
            wake = deadline
            if to_evict:
                wake = min(wake, min(due[u] for u in to_evict))
            if waiting:
                wake = min(wake, now + opts.poll_interval)
            self.sleep(max(0.0, wake - now))

    def evict_one(self, pod: PodRef) -> kube.Eviction:
        self.requests += 1
        try:
            got = self.api.evict(pod.namespace, pod.name, pod.uid or None,
                                 grace_period_seconds=self.options.grace_period_seconds)
        except kube.Forbidden as e:
            raise _Abort(_forbidden(e, "create", "pods/eviction")) from e
        except kube.Unavailable as e:  # 5xx, timeout: ask again on the 429 schedule
            log.info("eviction of pod %s/%s failed, will retry: %s", pod.namespace, pod.name,
                     txt.one_line(str(e)))
            return kube.Eviction(_RETRY, str(e), e.retry_after)
        except errors.PermanentError as e:
            raise _Abort(f"cannot evict pod {pod.namespace}/{pod.name}: {e}") from e
        if got.outcome == kube.EVICTION_DONE:
            log.info("evicted pod %s/%s from node %s", pod.namespace, pod.name,
                     txt.one_line(self.node))
        elif got.outcome == kube.EVICTION_BLOCKED:
            log.info("eviction of pod %s/%s refused for now: %s", pod.namespace, pod.name,
                     txt.one_line(got.message))
        else:
            log.info("pod %s/%s is no longer there (%s): nothing to evict", pod.namespace,
                     pod.name, got.outcome)
        return got

    def unfinished(self, plan: DrainPlan, to_evict: Mapping[str, PodRef],
                   waiting: Mapping[str, PodRef], why: Mapping[str, str],
                   cause: str) -> DrainResult:
        remaining = [(p.namespace, p.name, why.get(u) or "not evicted yet")
                     for u, p in to_evict.items()]
        remaining += [(p.namespace, p.name, "evicted, still terminating")
                      for p in waiting.values()]
        last = next((w for w in reversed(list(why.values())) if w), "")
        message = (f"node {self.node} not drained ({cause}): {len(remaining)} pod(s) remain"
                   + (f"; last refusal: {last}" if last else ""))
        message += self.undo_cordon()
        log.warning("%s", txt.one_line(message))
        return self.result(False, message, plan, remaining)


def drain_nodes(api: kube.Kube, nodes: Sequence[str], options: DrainOptions | None = None, *,
                stop: threading.Event | None = None,
                clock: Callable[[], float] = time.monotonic,
                sleep: Callable[[float], None] | None = None) -> list[DrainResult]:
    """Drain nodes one at a time, in order, stopping at the first that does not drain: the
    autoscaler must not see a second half-drained node because the first one was stuck."""
    results: list[DrainResult] = []
    for i, node in enumerate(nodes):
        got = drain(api, node, options, stop=stop, clock=clock, sleep=sleep)
        rest = list(nodes[i + 1:])
        if not got.complete and rest:
            got = dataclasses.replace(
                got, message=f"{got.message}; not draining the remaining node(s): "
                             f"{', '.join(rest)}")
        results.append(got)
        if not got.complete:
            break
    return results
