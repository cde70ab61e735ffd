"""Resizing a workload's running pods in place, through ``pods/{name}/resize``.

The judgements are pure (``domain/resize.py``); this module reads the pods, sends the
resizes and follows them with one watch of the workload's pods (never a polling loop), a
bounded number of pods at a time (``maxPodsResizing``). A pod whose resize restarts a
container (``resizePolicy: RestartContainer``) is only resized while every
PodDisruptionBudget selecting it can spare it. Deadlines are the Vertical Pod Autoscaler's:
``Deferred`` is waited for ``deferredTimeoutSeconds``, in progress
``inProgressTimeoutSeconds``; ``Infeasible`` and ``Error`` stop at once. A 404 from the
subresource while the pod exists means a cluster older than 1.33; a 422 is the API server
refusing the resize (a QoS class change, a memory limit decrease on 1.33): both stop with
the server's reason and are never retried as they are.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.adapters import kube
from reconciler.domain import decision, errors
from reconciler.domain import resize as rz
from reconciler.domain import text as txt

log = logging.getLogger(__name__)

JSON = dict[str, Any]
WATCH_SLICE = 30.0  # seconds a watch stays open before deadlines are looked at again

# Why a resize stopped (status condition reasons).
INFEASIBLE, ERROR = rz.INFEASIBLE, rz.ERROR
DEFERRED_TOO_LONG = "DeferredTooLong"
IN_PROGRESS_TOO_LONG = "InProgressTooLong"
UNSUPPORTED = "ResizeUnsupported"   # 404 from pods/resize: a cluster older than 1.33
REFUSED = "ResizeRefused"           # 422 or a rule the API server would refuse on
BUDGET = "DisruptionBudget"         # a restarting resize the budget cannot spare
CHANGED = "PodChanged"              # the pod kept changing under us

PLANNED, RESIZING, RESIZED, GONE, STOPPED, UNCHANGED = (
    "Planned", "Resizing", "Resized", "Gone", "Stopped", "Unchanged")


@dataclass
class PodChange:
    """One pod's resize: the values it starts from and goes to, recorded before it moves."""

    name: str
    uid: str
    start: dict[str, Any]
    goal: dict[str, Any]
    state: str = PLANNED
    message: str = ""
    restarts: bool = False  # its resize restarts a container (counted against budgets)

    def to_dict(self) -> JSON:
        out: JSON = {"name": self.name, "uid": self.uid, "previous": self.start,
                     "state": self.state}
        if self.message:
            out["message"] = self.message
        return out

    @classmethod
    def back(cls, recorded: Mapping[str, Any], goal_was: Mapping[str, Any]) -> PodChange:
        """The way back of a recorded pod change: from what we set to what was there."""
        return cls(name=str(recorded.get("name", "")), uid=str(recorded.get("uid", "")),
                   start=dict(goal_was), goal=dict(recorded.get("previous") or {}))


@dataclass
class Outcome:
    changes: list[PodChange]
    code: str = ""        # empty: every pod done (or gone)
    reason: str = ""
    pod: str = ""         # the pod whose answer stopped the resize, when one did
    requests: int = 0     # API requests this resize cost (the watch counted once)

    @property
    def done(self) -> bool:
        return not self.code


@dataclass
class _Follow:
    started: dict[str, float] = field(default_factory=dict)
    deferred: dict[str, float] = field(default_factory=dict)


class Resizer:
    """Resize the pods of one workload to ``want`` under ``policy``."""

    def __init__(self, api: kube.Kube, target: Mapping[str, Any], want: rz.Values,
                 policy: decision.LivePolicy, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.api = api
        self.target = target
        self.want = want
        self.policy = policy
        self.clock = clock
        meta = target.get("metadata") or {}
        self.namespace = str(meta.get("namespace") or "")
        self.selector = kube.label_selector((target.get("spec") or {}).get("selector"))
        self.view: dict[str, JSON] = {}
        self.rv = ""
        self.stopped_by = ""

    # ------------------------------------------------------------------ before any change

    def prepare(self) -> tuple[list[PodChange], str, str]:
        """The pods to resize with the values each starts from, or (``code``, ``reason``)
        when one of them cannot be resized at all: then nothing is sent to any pod."""
        pods, self.rv = self.api.pods_of(self.target)
        running = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"
                   and not (p.get("metadata") or {}).get("deletionTimestamp")]
        self.view = {p["metadata"]["name"]: p for p in running}
        changes: list[PodChange] = []
        for pod in sorted(running, key=lambda p: str(p["metadata"]["name"])):
            why = rz.refusal(pod, self.want)
            if why is not None:
                return [], REFUSED, why
            meta = pod["metadata"]
            change = PodChange(str(meta["name"]), str(meta.get("uid", "")),
                               rz.values_of(pod, self.want), _plain(self.want))
            if rz.already(pod, self.want):
                change.state = UNCHANGED
            changes.append(change)
        return changes, "", ""

    def dry_run(self, changes: list[PodChange]) -> None:
        """The server's dry-run of every resize: a refusal is found before anything moves."""
        for c in changes:
            if c.state == PLANNED:
                self._send(c, dry_run=True)

    # ------------------------------------------------------------------ the resize

    def run(self, changes: list[PodChange]) -> Outcome:
        """Resize the planned pods, at most ``maxPodsResizing`` at a time, following them
        with one watch until each is done, gone, or one stops the whole resize."""
        before = self.api.requests
        out = Outcome(changes)
        pending = [c for c in changes if c.state == PLANNED]
        inflight: dict[str, PodChange] = {}
        follow = _Follow()
        limit = max(1, self.policy.max_pods_resizing)

        def stop(code: str, reason: str) -> Outcome:
            out.code, out.reason, out.pod = code, reason, self.stopped_by
            for c in inflight.values():
                c.state, c.message = STOPPED, reason
            out.requests = self.api.requests - before
            return out

        while pending or inflight:
            # Start what the limit and the budgets allow.
            while pending and len(inflight) < limit:
                c = pending[0]
                pod = self.view.get(c.name)
                if pod is None:
                    c.state = GONE
                    pending.pop(0)
                    continue
                c.restarts = rz.restarts(pod, c.goal)
                why = rz.budget_allows(
                    self.api.pdbs(self.namespace), list(self.view.values()), pod,
                    sum(1 for i in inflight.values() if i.restarts),
                    _replicas(self.target, len(self.view)), c.restarts)
                if why is not None:
                    if inflight:
                        break  # wait for ours to finish
                    waited = follow.deferred.setdefault("budget:" + c.name, self.clock())
                    if self.clock() - waited > self.policy.deferred_timeout:
                        doing = "restarts to resize" if c.restarts else "would be resized"
                        return stop(BUDGET, f"pod {c.name} {doing} and {why}")
                    break
                code, reason = self._start(c)
                if code:
                    return stop(code, reason)
                pending.pop(0)
                if c.state == RESIZING:
                    inflight[c.name] = c
                    follow.started[c.name] = self.clock()
            if not pending and not inflight:
                break
            code, reason = self._follow(inflight, follow, bool(pending))
            if code:
                return stop(code, reason)
        out.requests = self.api.requests - before
        return out

    def _start(self, c: PodChange) -> tuple[str, str]:
        try:
            self._send(c, dry_run=False)
        except kube.TestFailed:
            # The pod changed since it was read: read it once more and start from there.
            fresh = self.api.pod(self.namespace, c.name)
            if fresh is None or str(fresh["metadata"].get("uid")) != c.uid:
                c.state = GONE
                return "", ""
            self.view[c.name] = fresh
            c.start = rz.values_of(fresh, c.goal)
            try:
                self._send(c, dry_run=False)
            except kube.TestFailed as e:
                return CHANGED, f"pod {c.name} keeps changing: {e}"
        except errors.TemporaryError:
            raise
        except errors.ReconcilerError as e:
            code, reason = self._refused(c, e)
            if code:
                return code, reason
        return "", ""

    def _send(self, c: PodChange, *, dry_run: bool) -> None:
        pod = self.view[c.name]
        if rz.already(pod, c.goal):
            if not dry_run:
                c.state = UNCHANGED
            return
        got = self.api.resize_pod(self.namespace, c.name, rz.patch(pod, c.start, c.goal),
                                  dry_run=dry_run)
        if not dry_run:
            self.view[c.name] = got
            self.rv = max(self.rv, str(got["metadata"].get("resourceVersion", "")), key=_rv)
            c.state = RESIZING

    def _refused(self, c: PodChange, e: errors.ReconcilerError) -> tuple[str, str]:
        """404 / 422 / 403 from the subresource, by what the server meant."""
        if isinstance(e, errors.NotFoundError):
            if self.api.pod(self.namespace, c.name) is None:
                c.state = GONE  # deleted meanwhile: its replacement comes from the template
                return "", ""
            return UNSUPPORTED, (
                "the cluster has no pods/resize subresource (Kubernetes 1.33 or later resizes "
                f"pods in place): {e}")
        return REFUSED, f"the API server refused to resize pod {c.name}: {e}"

    def _follow(self, inflight: dict[str, PodChange], follow: _Follow,
                more: bool) -> tuple[str, str]:
        """Watch the workload's pods until one in flight finishes (when more wait to start),
        all finish, a deadline passes, or one stops. Returns (code, reason) on a stop."""
        opened: list[Any] = []
        timeout = self._next_deadline(inflight, follow)
        try:
            events = self.api.watch_pods(self.namespace, self.selector, self.rv, timeout,
                                         on_open=opened.append)
            for event in events:
                obj = event.get("object") or {}
                rv = str((obj.get("metadata") or {}).get("resourceVersion") or "")
                if event.get("type") == "ERROR":
                    if int(obj.get("code") or 0) == 410:
                        self._relist()
                    break
                if rv:
                    self.rv = rv
                if event.get("type") == "BOOKMARK":
                    continue
                name = str((obj.get("metadata") or {}).get("name") or "")
                finished = False
                c = inflight.get(name)
                if c is not None:
                    if (event.get("type") == "DELETED"
                            or str(obj["metadata"].get("uid")) != c.uid):
                        c.state, finished = GONE, True
                    else:
                        self.view[name] = obj
                        p = rz.progress(obj, c.goal)
                        if p.state == rz.DONE:
                            c.state, finished = RESIZED, True
                        elif p.state in rz.STOPS:
                            c.message = p.message
                            self.stopped_by = name
                            return p.state, (f"pod {name}: resize {p.state}"
                                             + (f": {txt.one_line(p.message)}"
                                                if p.message else ""))
                        elif p.state == rz.DEFERRED:
                            c.message = p.message
                            if name not in follow.deferred:
                                follow.deferred[name] = self.clock()
                                break  # a new deadline: watch again until it, no longer
                        else:
                            follow.deferred.pop(name, None)  # no longer Deferred: applying
                elif event.get("type") == "DELETED":
                    self.view.pop(name, None)
                elif name in self.view:
                    self.view[name] = obj
                if c is None and not inflight:
                    break  # waiting on a budget: a pod's health moved, look again
                if finished:
                    inflight.pop(name, None)
                    if more or not inflight:
                        break
                code, reason = self._late(inflight, follow)
                if code:
                    return code, reason
        except errors.ExpiredError:
            self._relist()
        finally:
            for resp in opened:
                kube.close_stream(resp)
        return self._late(inflight, follow)

    def _relist(self) -> None:
        pods, self.rv = self.api.pods_of(self.target)
        self.view.update({p["metadata"]["name"]: p for p in pods})

    def _late(self, inflight: Mapping[str, PodChange], follow: _Follow) -> tuple[str, str]:
        now = self.clock()
        for name, c in inflight.items():
            since = follow.deferred.get(name)
            if since is not None and now - since > self.policy.deferred_timeout:
                return DEFERRED_TOO_LONG, (
                    f"pod {name}: resize Deferred for over {self.policy.deferred_timeout:g} s"
                    + (f" ({txt.one_line(c.message)})" if c.message else ""))
            if now - follow.started.get(name, now) > self.policy.in_progress_timeout:
                return IN_PROGRESS_TOO_LONG, (
                    f"pod {name}: resize still in progress after "
                    f"{self.policy.in_progress_timeout:g} s")
        return "", ""

    def _next_deadline(self, inflight: Mapping[str, PodChange], follow: _Follow) -> float:
        now = self.clock()
        ends = [WATCH_SLICE]
        for name in inflight:
            if name in follow.deferred:
                ends.append(follow.deferred[name] + self.policy.deferred_timeout - now)
            ends.append(follow.started.get(name, now) + self.policy.in_progress_timeout - now)
        for key, since in follow.deferred.items():
            if key.startswith("budget:"):
                ends.append(since + self.policy.deferred_timeout - now)
        return max(0.2, min(ends) + 0.05)


def _plain(values: rz.Values) -> dict[str, Any]:
    return {c: {s: dict(v) for s, v in secs.items()} for c, secs in values.items()}


def _replicas(target: Mapping[str, Any], seen: int) -> int:
    replicas = (target.get("spec") or {}).get("replicas")
    return int(replicas) if isinstance(replicas, int) else seen


def _rv(v: str) -> int:
    return int(v) if v.isdigit() else 0


def put_back(api: kube.Kube, target: Mapping[str, Any], changes: list[PodChange],
             policy: decision.LivePolicy) -> Outcome:
    """Resize back, in place, the pods of ``changes`` that were resized (or were being
    resized) to the values they had; each only while it still holds what we set (a pod
    changed since is left alone and named)."""
    back = [PodChange(c.name, c.uid, start=c.goal, goal=c.start)
            for c in changes if c.state in (RESIZED, RESIZING, STOPPED)]
    return restore(api, target, back, policy)


def restore(api: kube.Kube, target: Mapping[str, Any], back: list[PodChange],
            policy: decision.LivePolicy) -> Outcome:
    """Resize each pod of ``back`` from its ``start`` to its ``goal`` values (a rollback's
    or a failed migration's way back). Pods gone or replaced are skipped."""
    if not back:
        return Outcome([])
    resizer = Resizer(api, target, {}, policy)
    pods, resizer.rv = api.pods_of(target)
    resizer.view = {p["metadata"]["name"]: p for p in pods}
    todo: list[PodChange] = []
    for c in back:
        pod = resizer.view.get(c.name)
        if pod is None or str(pod["metadata"].get("uid")) != c.uid:
            c.state = GONE
            continue
        spec_now = rz.values_of(pod, c.start)
        if all(rz.matches(spec_now.get(n), w) for n, w in c.goal.items()):
            c.state = UNCHANGED  # never resized (or already back): nothing to do
            continue
        if not all(rz.matches(spec_now.get(n), w) for n, w in c.start.items()):
            c.state, c.message = STOPPED, "changed since by someone else: left as it is"
            continue
        todo.append(c)
    out = resizer.run(todo)
    out.changes = back
    return out
