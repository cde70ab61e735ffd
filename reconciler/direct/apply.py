"""Direct-apply mode: approved recommendations change the live workloads through the API.

The batch reuses the GitOps pipeline's stages (intake, policy, status bookkeeping) with the
live object as the target policy and the planner see. Safety comes from four rules:

- never clobber another writer: every workload write is a JSON Patch whose ``test``
  operations check the very values the plan was computed from; when they no longer hold,
  the server refuses the patch and the recommendation is re-read and re-decided (a bounded
  number of times), never re-sent as it was;
- never fight an HPA: when one targets the workload, replica recommendations move its
  min/max, never ``spec.replicas``;
- always able to put things back: the previous values are written to the recommendation's
  status before the workload is touched, and a finalizer keeps a deleted recommendation
  until its change has been rolled back (``rollback``, ``reconcile_deletions``);
- a rerun changes nothing: an applied recommendation is skipped, and equal values are not
  edits at all.

Reads go through ``kube.Kube``'s cache and the store through a batch view primed with one
LIST per kind, so a batch costs a handful of reads however many recommendations it holds.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from reconciler.adapters import kube
from reconciler.adapters.opa import engine as opa
from reconciler.adapters.store import kube as kube_store
from reconciler.adapters.store import port as store
from reconciler.config import settings
from reconciler.direct import drain
from reconciler.domain import decision, errors, model, planner, policy_input, results
from reconciler.gitops import pipeline

log = logging.getLogger(__name__)
audit_log = logging.getLogger("reconciler.audit")

FINALIZER = "dakr.devzero.io/rollback"
MAX_ATTEMPTS = 3  # reads + decisions per recommendation when the target keeps changing
CONTAINERS = "/spec/template/spec/containers"


# --------------------------------------------------------------------------- store view


class BatchStore:
    """A store view for one batch: one LIST per kind up front, then reads from memory.

    Writes go to the real store and their answers refresh the view, so the view never
    hands out a resourceVersion older than the one this process wrote; a status write from
    a stale read (another writer got there first) still fails with ``ConflictError`` on the
    server, and the entry is then read again from the store on next use.
    """

    def __init__(self, inner: store.Store) -> None:
        self.inner = inner
        self._recs: dict[tuple[str, str], store.Record] = {}
        self._reread: set[tuple[str, str]] = set()
        self.finalizers: dict[tuple[str, str], list[str]] = {}  # KubeStore objects only
        self.uids: dict[tuple[str, str], str] = {}
        self.unstored: dict[tuple[str, str], str] = {}  # why the store refused a record
        self._primed = False

    @property
    def kube(self) -> kube_store.KubeStore | None:
        return self.inner if isinstance(self.inner, kube_store.KubeStore) else None

    def prime(self) -> None:
        ks = self.kube
        for kind in model.KINDS:
            if ks is not None:
                for obj in ks.raw_list(kind):
                    self.remember_object(obj)
            else:
                for r in self.inner.list(kind):
                    self._recs[(r.kind, r.id)] = r
        self._primed = True

    def remember_object(self, obj: dict[str, Any]) -> store.Record:
        rec = kube_store.to_record(obj)
        key = (rec.kind, rec.id)
        self._recs[key] = rec
        self.finalizers[key] = list((obj.get("metadata") or {}).get("finalizers") or [])
        self.uids[key] = str((obj.get("metadata") or {}).get("uid", ""))
        self._reread.discard(key)
        return rec

    def forget(self, kind: str, rec_id: str) -> None:
        self._recs.pop((kind, rec_id), None)
        self._reread.add((kind, rec_id))

    def get(self, kind: str, rec_id: str) -> store.Record | None:
        key = (kind, rec_id)
        cached = self._recs.get(key)
        if cached is not None:
            return cached
        if self._primed and kind in model.KINDS and key not in self._reread:
            return None
        ks = self.kube
        if ks is not None:
            obj = ks.raw(kind, rec_id)
            return None if obj is None else self.remember_object(obj)
        rec = self.inner.get(kind, rec_id)
        if rec is not None:
            self._recs[key] = rec
            self._reread.discard(key)
        return rec

    def list(self, kind: str | None = None, phase: str | None = None) -> list[store.Record]:
        if not self._primed or self._reread:
            return self.inner.list(kind, phase)
        recs = sorted(self._recs.values(), key=lambda r: r.created_at)
        return [r for r in recs if (kind is None or r.kind == kind)
                and (phase is None or r.phase == phase)]

    def upsert(self, kind: str, rec_id: str, namespace: str, name: str,
               spec: dict[str, Any]) -> store.UpsertResult:
        cur = self.get(kind, rec_id)
        if cur is not None and cur.spec == spec:
            return store.UpsertResult(cur, created=False, changed=False)
        ks = self.kube
        if ks is not None:
            try:
                # Created with the rollback finalizer: applying it later then costs no
                # metadata write. Deleting one never applied is released by
                # reconcile_deletions (every `apply --mode direct` and `run` round).
                res = ks.upsert(kind, rec_id, namespace, name, spec, current=cur,
                                finalizers=(FINALIZER,))
            except errors.PermanentError as e:
                # E.g. its namespace does not exist: that recommendation fails, not the batch.
                self.unstored[(kind, rec_id)] = str(e)
                return store.UpsertResult(store.Record(kind, rec_id, namespace, name, spec),
                                          created=False, changed=False)
            if res.created:
                self.finalizers[(kind, rec_id)] = [FINALIZER]
        else:
            res = self.inner.upsert(kind, rec_id, namespace, name, spec)
        self._recs[(kind, rec_id)] = res.record
        return res

    def update_status(self, kind: str, rec_id: str, status: dict[str, Any],
                      resource_version: str) -> store.Record:
        try:
            new = self.inner.update_status(kind, rec_id, status, resource_version)
        except errors.ConflictError:
            self.forget(kind, rec_id)
            raise
        self._recs[(kind, rec_id)] = new
        return new

    def watch(self, since: str = "", timeout: float = 0.0) -> Any:
        return self.inner.watch(since, timeout)

    def close(self) -> None:
        self.inner.close()


# --------------------------------------------------------------------------- the batch


@dataclass
class _Live:
    """What was read about one target."""

    hpa: dict[str, Any] | None = None


def run(docs: Sequence[object], cfg: settings.Settings, st: store.Store,
        engine: opa.PolicyEngine, kube_api: kube.Kube, *,
        dry_run: bool = False, drain_options: drain.DrainOptions | None = None
        ) -> pipeline.Batch:
    """Run one batch in direct mode. ``dry_run``: server-side dry-run only, no status.

    Node group recommendations drain the nodes they name (``_carry_out_nodes``)."""
    now = cfg.now or pipeline.now_rfc3339()
    view = BatchStore(st)
    view.prime()
    sv: store.Store = pipeline.ReadOnly(view) if dry_run else view
    batch = pipeline.Batch()
    live = pipeline.intake(docs, sv, batch)
    for w in [w for w in live if (w.rec.kind, w.rec.id) in view.unstored]:
        w.item.phase = model.FAILED
        w.item.message = f"cannot store the recommendation: {view.unstored[(w.rec.kind, w.rec.id)]}"
        live.remove(w)
    read = {w.rec.id: _read_target(kube_api, w) for w in live}
    # The HPA and PDBs for the policy (the same cached LISTs the HPA routing uses), and
    # the pods on the nodes a node group recommendation would drain.
    nodes = any(isinstance(w.rec, model.NodeGroupRecommendation) for w in live)
    live, cluster = pipeline.cluster_facts(sv, kube_api, live, now, nodes=nodes)
    pipeline.decide(sv, engine, cfg, live, now, cluster=cluster)
    for w in live:
        if isinstance(w.rec, model.NodeGroupRecommendation):
            _carry_out_nodes(w, sv, view, kube_api, now, dry_run, drain_options or
                             drain.DrainOptions(timeout=cfg.direct.drain_timeout))
            continue
        _carry_out(w, sv, view, kube_api, engine, cfg, read[w.rec.id], now, dry_run)
    return batch


def _read_target(api: kube.Kube, w: pipeline.Work) -> _Live:
    rec = w.rec
    if not isinstance(rec, model.WorkloadRecommendation):
        return _Live()  # a node group: its facts are the nodes' (pipeline.cluster_facts)
    try:
        w.target = api.workload(rec.targetRef.kind, rec.namespace, rec.targetRef.name)
        hpa = api.hpa_for(rec.targetRef.kind, rec.namespace, rec.targetRef.name)
    except errors.ReconcilerError as e:
        w.target, w.problem = None, f"cannot read {rec.target_label}: {e}"
        return _Live()
    if w.target is None:
        w.problem = f"{rec.target_label} not found in namespace {rec.namespace}"
    return _Live(hpa=hpa)


def _input(w: pipeline.Work, fact: _Live, cfg: settings.Settings, now: str,
           history: Mapping[tuple[str, str, str], Any]) -> dict[str, Any]:
    return policy_input.build(w.rec, w.target, now=now, cluster={"hpa": fact.hpa},
                              history={"lastApplied": history.get(w.rec.target_key)},
                              operator_namespace=cfg.operator_namespace)


# --------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class Change:
    """A plan bound to the live objects it was computed from."""

    plan: planner.Plan
    target: dict[str, Any]
    hpa: dict[str, Any] | None


def _plan(rec: model.WorkloadRecommendation, dec: decision.Decision, target: dict[str, Any],
          hpa: dict[str, Any] | None) -> planner.Plan:
    """The planner's edits, with replica changes routed to the HPA when one owns scaling."""
    p = planner.plan(rec, dec, target)
    if hpa is None:
        if rec.hpa is not None and rec.replicas is None:
            raise errors.PermanentError(
                f"the recommendation sets HPA bounds but no HorizontalPodAutoscaler targets "
                f"{rec.target_label}")
        return p
    hpa_name = hpa["metadata"]["name"]
    if rec.replicas is not None and rec.hpa is None:
        raise errors.PermanentError(
            f"HorizontalPodAutoscaler {hpa_name} owns the scaling of {rec.target_label}: "
            "setting spec.replicas would be undone by it; send hpa bounds instead")
    p = replace(p, replicas=None)
    if rec.hpa is None:
        return p
    spec = hpa.get("spec") or {}
    old = {"minReplicas": int(spec.get("minReplicas", 1)),
           "maxReplicas": int(spec["maxReplicas"])}
    new = dict(old)
    if rec.hpa.minReplicas is not None:
        new["minReplicas"] = rec.hpa.minReplicas
    if rec.hpa.maxReplicas is not None:
        new["maxReplicas"] = rec.hpa.maxReplicas
    if new["minReplicas"] > new["maxReplicas"]:
        raise errors.PermanentError(
            f"HPA {hpa_name}: minReplicas {new['minReplicas']} would exceed maxReplicas "
            f"{new['maxReplicas']}")
    if new != old:
        p = replace(p, hpa=(old, new))
    return p


def _previous(change: Change) -> dict[str, Any]:
    """status.previous: the values replaced (planner shape) plus what we set in their place
    (``set``) and the HPA we edited, so a rollback can check that they are still ours."""
    p = change.plan
    out = p.previous()
    applied = p.applied()
    if p.hpa is not None and change.hpa is not None:
        out["hpaName"] = change.hpa["metadata"]["name"]
    else:
        applied.pop("hpa", None)
    out["set"] = applied
    out["target"] = {"kind": p.kind, "namespace": p.namespace, "name": p.name}
    return out


def _container_ops(target: Mapping[str, Any], edits: Sequence[planner.ValueEdit],
                   values: str) -> list[dict[str, Any]]:
    """JSON Patch for container resource edits. ``values`` = "new" to apply, "old" to put
    back. Every value the edit starts from is tested; the container index is tested by name
    so that a reordered pod template cannot make us write into the wrong container."""
    containers = planner.containers_of(target)
    index = {str(c.get("name")): i for i, c in enumerate(containers)}
    ops: list[dict[str, Any]] = []
    by_container: dict[str, list[planner.ValueEdit]] = {}
    for e in edits:
        by_container.setdefault(e.container, []).append(e)
    for name, group in by_container.items():
        if name not in index:
            raise errors.NotFoundError(f"container {name!r} is no longer in the pod template")
        i = index[name]
        base = f"{CONTAINERS}/{i}"
        cont = containers[i]
        ops.append({"op": "test", "path": f"{base}/name", "value": name})
        res = cont.get("resources")
        if not isinstance(res, Mapping):
            # Nothing to test value by value: test the whole container as read.
            ops.append({"op": "test", "path": base, "value": copy.deepcopy(dict(cont))})
            new_res: dict[str, Any] = {}
            for e in group:
                v = e.new if values == "new" else e.old
                if v is not None:
                    new_res.setdefault(e.section, {})[e.resource] = v
            ops.append({"op": "add", "path": f"{base}/resources", "value": new_res})
            continue
        for section in ("requests", "limits"):
            sec_edits = [e for e in group if e.section == section]
            if not sec_edits:
                continue
            cur = res.get(section)
            spath = f"{base}/resources/{section}"
            if not isinstance(cur, Mapping):
                ops.append({"op": "test", "path": f"{base}/resources",
                            "value": copy.deepcopy(dict(res))})
                vals = {e.resource: (e.new if values == "new" else e.old) for e in sec_edits}
                ops.append({"op": "add", "path": spath,
                            "value": {k: v for k, v in vals.items() if v is not None}})
                continue
            for e in sec_edits:
                start, goal = (e.old, e.new) if values == "new" else (e.new, e.old)
                path = f"{spath}/{_escape(e.resource)}"
                if start is None:
                    # An absent key cannot be tested: test the section it would join.
                    ops.append({"op": "test", "path": spath, "value": copy.deepcopy(dict(cur))})
                else:
                    ops.append({"op": "test", "path": path, "value": cur.get(e.resource)})
                if goal is None:
                    ops.append({"op": "remove", "path": path})
                else:
                    ops.append({"op": "add" if start is None else "replace", "path": path,
                                "value": goal})
    return ops


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _hpa_ops(start: Mapping[str, int], goal: Mapping[str, int],
             hpa: Mapping[str, Any]) -> list[dict[str, Any]]:
    spec = hpa.get("spec") or {}
    ops: list[dict[str, Any]] = []
    # maxReplicas first when growing, minReplicas first when shrinking: every intermediate
    # state stays valid (the server validates the final object only, but be obvious).
    for key in ("minReplicas", "maxReplicas"):
        if key in spec:
            ops.append({"op": "test", "path": f"/spec/{key}", "value": spec[key]})
        if spec.get(key, 1 if key == "minReplicas" else None) != start.get(key):
            raise errors.ConflictError(f"HPA {key} is {spec.get(key)}, expected {start.get(key)}")
    for key in ("minReplicas", "maxReplicas"):
        if goal.get(key) != start.get(key):
            ops.append({"op": "add" if key not in spec else "replace", "path": f"/spec/{key}",
                        "value": goal[key]})
    return ops


# --------------------------------------------------------------------------- applying


def _carry_out(w: pipeline.Work, st: store.Store, view: BatchStore, api: kube.Kube,
               engine: opa.PolicyEngine, cfg: settings.Settings, fact: _Live, now: str,
               dry_run: bool) -> None:
    """Plan, apply, and on a lost race re-read, re-decide and re-plan (bounded)."""
    rec, item = w.rec, w.item
    for attempt in range(MAX_ATTEMPTS):
        dec = item.decision
        assert dec is not None
        if not _settle(st, w, dec, fact, now):
            return
        assert isinstance(rec, model.WorkloadRecommendation) and w.target is not None
        assert item.plan is not None
        change = Change(item.plan, w.target, fact.hpa)
        try:
            if dry_run:
                _send(api, rec, change, dry_run=True)
                item.phase = model.APPROVED
                item.message = "dry run (server-side): would change " + _describe(item.plan)
                return
            _apply(st, view, api, w, change, dec, now, dry_run_first=cfg.direct.server_dry_run)
            return
        except errors.ConflictError as e:
            log.info("%s: the target changed while applying (%s); reading it again", rec.id, e)
            if attempt == MAX_ATTEMPTS - 1:
                _fail(st, w, f"the target keeps changing under us: {e}", "Conflict", now)
                return
            fact = _Live()
            w.target = api.refresh(rec.targetRef.kind, rec.namespace, rec.targetRef.name)
            if w.target is None:
                w.problem = f"{rec.target_label} not found in namespace {rec.namespace}"
            else:
                fact.hpa = _fresh_hpa(api, rec, change.hpa)
            hist = pipeline.history(st, {rec.kind})
            item.decision = engine.decide(_input(w, fact, cfg, now, hist))
        except errors.ReconcilerError as e:
            _fail_for(st, w, e, now)
            return


def _fresh_hpa(api: kube.Kube, rec: model.WorkloadRecommendation,
               old: dict[str, Any] | None) -> dict[str, Any] | None:
    if old is not None:
        return api.refresh(kube.HPA, rec.namespace, old["metadata"]["name"])
    return api.hpa_for(rec.targetRef.kind, rec.namespace, rec.targetRef.name)


def _settle(st: store.Store, w: pipeline.Work, dec: decision.Decision, fact: _Live,
            now: str) -> bool:
    """What the decision and the live target allow; True when there is a change to send.
    Mirrors ``pipeline.plan_item`` with HPA routing and direct-mode wording."""
    rec, item = w.rec, w.item
    status = pipeline.decided_status(rec, dec)
    if not dec.allow or dec.mode == "audit" or w.target is None:
        return pipeline.plan_item(st, w, now)  # refused / audit / not found: same as GitOps
    if dec.mode == "gitops":
        _routed_to_gitops(st, w, status)
        return False
    assert isinstance(rec, model.WorkloadRecommendation)
    try:
        item.plan = _plan(rec, dec, w.target, fact.hpa)
    except errors.PermanentError as e:
        _fail(st, w, str(e), "NotApplicable", now)
        return False
    if item.plan.empty:
        item.phase, item.message = model.APPLIED, "the workload already has these values"
        stored = st.get(rec.kind, rec.id)
        prev = stored.status.get("previous", {}) if stored is not None else {}
        save_to = replace(status, phase=model.APPLIED, message=item.message,
                          previous=prev if isinstance(prev, dict) else {},
                          appliedAt=(stored.status.get("appliedAt") if stored else "") or now)
        pipeline.save_status(st, rec, save_to.with_condition(
            pipeline.condition("Applied", True, "AlreadyApplied", item.message, now)))
        return False
    return True


def _carry_out_nodes(w: pipeline.Work, st: store.Store, view: BatchStore, api: kube.Kube,
                     now: str, dry_run: bool, options: drain.DrainOptions) -> None:
    """Consolidate a node group: cordon and drain the nodes it names, through the Eviction
    API so that PodDisruptionBudgets hold (reconciler/drain.py). The empty nodes are then
    removed by the cluster's autoscaler; nothing here deletes a node or a machine.

    The nodes that will be cordoned are recorded in status first, so a rollback (or the
    deletion of the recommendation) can make them schedulable again; evicted pods are not
    restored, their controllers have already replaced them elsewhere."""
    rec, item, dec = w.rec, w.item, w.item.decision
    assert isinstance(rec, model.NodeGroupRecommendation) and dec is not None
    status = pipeline.decided_status(rec, dec)
    if not dec.allow or dec.mode == "audit":
        pipeline.plan_item(st, w, now)  # refused, or recorded only: as in GitOps mode
        return
    if dec.mode == "gitops":
        _routed_to_gitops(st, w, status)
        return
    nodes = list(dict.fromkeys(rec.nodesToRemove))
    if not nodes:
        _fail(st, w, "direct mode drains the nodes named in nodesToRemove and this "
              "recommendation names none; resizing a node group is left to GitOps mode",
              "NotApplicable", now)
        return
    try:
        if dry_run:
            plans = [drain.plan_drain(n, api.refresh_pods_on_node(n), options) for n in nodes]
            item.phase = model.APPROVED
            item.message = "dry run: " + "; ".join(_describe_drain_plan(p) for p in plans)
            return
        schedulable, present = [], []
        for n in nodes:
            node = api.refresh_node(n)
            if node is None:
                continue  # already removed (by the autoscaler, say): nothing to drain
            present.append(n)
            if not (node.get("spec") or {}).get("unschedulable"):
                schedulable.append(n)
        # The way back is recorded before the first node is cordoned.
        pipeline.save_status(st, rec, replace(
            status, phase=model.APPLYING, message="draining",
            previous={"cordoned": schedulable, "nodes": nodes}).with_condition(
            pipeline.condition("Applied", False, "Draining",
                               f"cordoning and draining {', '.join(nodes)}", now)))
        _ensure_finalizer(view, rec)
        results_ = drain.drain_nodes(api, present, options)
    except errors.ReconcilerError as e:
        _fail_for(st, w, e, now)
        return
    cordoned = [r.node for r in results_ if r.cordoned_by_us]
    evicted = [f"{ns}/{name}" for r in results_ for ns, name in r.evicted]
    done = len(results_) == len(present) and all(r.complete or not r.node_found
                                                  for r in results_)
    gone = [n for n in nodes if n not in present]
    previous = {"cordoned": cordoned, "nodes": nodes, "evicted": evicted}
    who = kube.who(api.api_client, api.field_manager)
    audit_log.info(json.dumps({
        "event": "change", "action": "drain", "who": who, "recommendationId": rec.id,
        "decisionId": dec.decision_id, "object": {"kind": "NodeGroup", "name": rec.nodeGroup},
        "nodes": nodes, "cordoned": cordoned, "evicted": evicted, "complete": done,
        "at": pipeline.now_rfc3339()}, sort_keys=True))
    if done:
        item.phase = model.APPLIED
        item.message = (f"drained {len(present)} node(s), {len(evicted)} pod(s) evicted; the "
                        "cluster's autoscaler removes the empty nodes"
                        + (f" ({', '.join(gone)} already gone)" if gone else ""))
        pipeline.save_status(st, rec, replace(
            status, phase=model.APPLIED, appliedAt=now, message=item.message,
            previous=previous).with_condition(
            pipeline.condition("Applied", True, "Drained", item.message, now)))
        api.event(_rec_ref(view, rec.kind, rec.id, ""), "Drained", item.message)
        return
    last = results_[-1].message if results_ else "nothing drained"
    item.phase, item.message = model.FAILED, f"drain incomplete: {last}"
    pipeline.save_status(st, rec, replace(
        status, phase=model.FAILED, message=item.message, previous=previous).with_condition(
        pipeline.condition("Applied", False, "DrainIncomplete", item.message, now)))
    api.event(_rec_ref(view, rec.kind, rec.id, ""), "DrainIncomplete", item.message,
              type_="Warning")


def _routed_to_gitops(st: store.Store, w: pipeline.Work, status: model.Status) -> None:
    """Approved, not applied here: the policy wants a reviewed pull request (mode gitops)."""
    w.item.phase = model.APPROVED
    w.item.message = ("policy routes this change through a pull request (mode gitops): "
                      "not applied directly")
    pipeline.save_status(st, w.rec, replace(status, phase=model.APPROVED,
                                            message=w.item.message))


def _describe_drain_plan(p: drain.DrainPlan) -> str:
    if not p.ok:
        return f"{p.node}: refused ({'; '.join(f'{ns}/{n}: {why}' for ns, n, why in p.blocking)})"
    return (f"{p.node}: would evict {len(p.evict)} pod(s), skip {len(p.skipped)}"
            + (f", wait for {len(p.wait)}" if p.wait else ""))


def _fail_for(st: store.Store, w: pipeline.Work, e: errors.ReconcilerError, now: str) -> None:
    """Failed, worded by the error class: the API unavailable (tried again next run), or
    refused for good (403, 404, 422...) with the server's reason."""
    if isinstance(e, errors.TemporaryError):
        _fail(st, w, f"the API server is unavailable, will retry on the next run: {e}",
              "Unavailable", now)
    else:
        _fail(st, w, str(e), type(e).__name__.replace("Error", "") or "Refused", now)


def _fail(st: store.Store, w: pipeline.Work, reason: str, code: str, now: str) -> None:
    w.item.phase, w.item.message = model.FAILED, reason
    dec = w.item.decision
    status = model.Status(phase=model.FAILED, message=reason, decision=(
        pipeline.decision_summary(dec) if dec is not None else None))
    try:
        pipeline.save_status(st, w.rec, status.with_condition(
            pipeline.condition("Applied", False, code or "Failed", reason, now)))
    except errors.ReconcilerError as e:
        log.warning("%s: could not record the failure: %s", w.rec.id, e)


def _send(api: kube.Kube, rec: model.WorkloadRecommendation, change: Change, *,
          dry_run: bool) -> None:
    """The workload (and HPA / scale) writes of one plan; every one guarded."""
    p = change.plan
    kind, ns, name = rec.targetRef.kind, rec.namespace, rec.targetRef.name
    if p.resources:
        api.json_patch(kind, ns, name, _container_ops(change.target, p.resources, "new"),
                       dry_run=dry_run)
    if p.replicas is not None:
        api.scale(kind, ns, name, p.replicas[0], p.replicas[1], dry_run=dry_run)
    if p.hpa is not None and change.hpa is not None:
        api.json_patch(kube.HPA, ns, change.hpa["metadata"]["name"],
                       _hpa_ops(p.hpa[0], p.hpa[1], change.hpa), dry_run=dry_run)


def _apply(st: store.Store, view: BatchStore, api: kube.Kube, w: pipeline.Work,
           change: Change, dec: decision.Decision, now: str, *,
           dry_run_first: bool = True) -> None:
    rec, item = w.rec, w.item
    assert isinstance(rec, model.WorkloadRecommendation)
    base = replace(pipeline.decided_status(rec, dec), previous=_previous(change))
    # Dry-run first: an invalid change or a lost race is found before anything is written.
    if dry_run_first:
        _send(api, rec, change, dry_run=True)
    # The way back is recorded before the workload moves.
    pipeline.save_status(st, rec, replace(base, phase=model.APPLYING,
                                          message="applying").with_condition(
        pipeline.condition("Applied", False, "Applying", "patching the workload", now)))
    _ensure_finalizer(view, rec)
    _send(api, rec, change, dry_run=False)
    item.phase = model.APPLIED
    item.message = "applied to the live workload"
    pipeline.save_status(st, rec, replace(base, phase=model.APPLIED, appliedAt=now,
                                          message=item.message).with_condition(
        pipeline.condition("Applied", True, "Patched", _describe(change.plan), now)))
    who = kube.who(api.api_client, api.field_manager)
    for line in _audit_lines(change.plan, change.hpa, dec, "apply", who):
        audit_log.info(json.dumps(line, sort_keys=True))
    target_ref = change.target
    api.event(target_ref, "DakrRecommendationApplied",
              f"{rec.id}: {_describe(change.plan)}")
    api.event(_rec_ref(view, rec.kind, rec.id, rec.namespace), "Applied",
              f"applied to {rec.target_label}: {_describe(change.plan)}")


def _ensure_finalizer(view: BatchStore, rec: model.Recommendation) -> None:
    """Add the rollback finalizer (KubeStore only), guarded on the version we hold."""
    ks = view.kube
    if ks is None:
        return
    key = (rec.kind, rec.id)
    for _ in range(2):
        cur = view.get(rec.kind, rec.id)
        finals = view.finalizers.get(key)
        if cur is None or finals is None:
            obj = ks.raw(rec.kind, rec.id)
            if obj is None:
                raise errors.NotFoundError(f"{rec.kind} {rec.id} disappeared")
            cur, finals = view.remember_object(obj), view.finalizers[key]
        if FINALIZER in finals:
            return
        meta: dict[str, Any] = {"name": cur.name, "resourceVersion": cur.resource_version}
        if cur.namespace:
            meta["namespace"] = cur.namespace
        try:
            new = ks.set_finalizers({"kind": rec.kind, "metadata": meta}, [*finals, FINALIZER])
        except errors.ConflictError:  # our copy was stale: read it and try once more
            view.forget(rec.kind, rec.id)
            view.finalizers.pop(key, None)
            continue
        if new is not None:
            view.remember_object(new)
        return
    raise errors.ConflictError(f"{rec.kind} {rec.id} keeps changing: finalizer not added")


def _rec_ref(view: BatchStore, kind: str, rec_id: str, namespace: str) -> dict[str, Any]:
    rec = view.get(kind, rec_id)
    meta: dict[str, Any] = {"name": kube_store.object_name(rec_id),
                            "namespace": namespace or None}
    if view.uids.get((kind, rec_id)):
        meta["uid"] = view.uids[(kind, rec_id)]
    if rec is not None:
        meta["resourceVersion"] = rec.resource_version
    return {"apiVersion": model.API_VERSION, "kind": kind, "metadata": meta}


def _describe(p: planner.Plan) -> str:
    parts = [f"{e.container} {e.section}.{e.resource} {e.old or '(unset)'} -> {e.new}"
             for e in p.resources]
    if p.replicas is not None:
        parts.append(f"replicas {p.replicas[0]} -> {p.replicas[1]}")
    if p.hpa is not None:
        parts.append(f"HPA min/max {p.hpa[0]['minReplicas']}/{p.hpa[0]['maxReplicas']} -> "
                     f"{p.hpa[1]['minReplicas']}/{p.hpa[1]['maxReplicas']}")
    return ", ".join(parts)


def _audit_lines(p: planner.Plan, hpa: Mapping[str, Any] | None, dec: decision.Decision,
                 action: str, who: str) -> list[dict[str, Any]]:
    """One structured line per changed value: who, what, before, after, decision id."""
    target = {"kind": p.kind, "namespace": p.namespace, "name": p.name}
    lines: list[dict[str, Any]] = []

    def line(what: str, obj: Mapping[str, Any], before: Any, after: Any) -> None:
        lines.append({"event": "change", "action": action, "who": who,
                      "recommendationId": p.rec_id, "decisionId": dec.decision_id,
                      "object": dict(obj), "field": what, "before": before, "after": after,
                      "at": pipeline.now_rfc3339()})

    for e in p.resources:
        line(f"spec.template.spec.containers[{e.container}].resources.{e.section}."
             f"{e.resource}", target, e.old, e.new)
    if p.replicas is not None:
        line("spec.replicas", target, p.replicas[0], p.replicas[1])
    if p.hpa is not None:
        ref = {"kind": kube.HPA, "namespace": p.namespace,
               "name": (hpa or {}).get("metadata", {}).get("name", "")}
        for key in ("minReplicas", "maxReplicas"):
            if p.hpa[0].get(key) != p.hpa[1].get(key):
                line(f"spec.{key}", ref, p.hpa[0].get(key), p.hpa[1].get(key))
    return lines


# --------------------------------------------------------------------------- rollback


def rollback(rec_id: str, st: store.Store, api: kube.Kube, *, now: str = "",
             kind: str = model.WORKLOAD) -> results.ItemResult:
    """Put back the values a direct-mode recommendation replaced, if they are still ours.

    The restore is a JSON Patch guarded by ``test`` operations on the values WE set: when
    someone changed them since, nothing is written, the recommendation keeps its finalizer
    and gets a ``RolledBack=False/ChangedSince`` condition naming the value. On success the
    phase becomes RolledBack and the finalizer is released (a deleted recommendation is
    then gone).
    """
    now = now or pipeline.now_rfc3339()
    view = st if isinstance(st, BatchStore) else BatchStore(st)
    rec = view.get(kind, rec_id)
    item = results.ItemResult(id=rec_id, kind=kind)
    if rec is None:
        raise errors.NotFoundError(f"{kind} {rec_id} not found")
    item.namespace = rec.namespace
    tref = rec.spec.get("targetRef") or {}
    item.target = f"{tref.get('kind', '')}/{tref.get('name', '')}"
    if rec.phase == model.ROLLED_BACK:
        item.phase, item.message = model.ROLLED_BACK, "already rolled back: nothing to do"
        _release(view, kind, rec_id)
        return item
    prev = rec.status.get("previous") or {}
    if kind == model.NODE_GROUP and prev.get("cordoned"):
        return _rollback_nodes(view, rec, api, item, now)
    if rec.phase not in (model.APPLIED, model.APPLYING) or not prev.get("set"):
        item.phase = rec.phase
        item.message = (f"nothing to roll back: phase {rec.phase} and no change recorded by "
                        "direct mode")
        _release(view, kind, rec_id)
        return item
    tkind, ns, name = str(tref.get("kind")), rec.namespace, str(tref.get("name"))
    target = api.refresh(tkind, ns, name)
    hpa_name = str(prev.get("hpaName") or "")
    hpa = api.refresh(kube.HPA, ns, hpa_name) if hpa_name else None
    plan = _restore_plan(rec_id, tkind, ns, name, prev)
    problem = _foreign_change(plan, target, hpa, hpa_name)
    if problem is None:
        try:
            assert target is not None
            _send_restore(api, plan, target, hpa)
        except errors.ConflictError as e:
            problem = f"the workload changed while rolling back ({e})"
    status = model.Status(**_status_fields(rec.status))
    if problem is not None:
        item.phase = rec.phase
        item.message = f"rollback refused: {problem}; the finalizer is kept"
        pipeline.save_status(view, _stub(rec), status.with_condition(pipeline.condition(
            "RolledBack", False, "ChangedSince", item.message, now)))
        api.event(_rec_ref(view, kind, rec_id, ns), "RollbackRefused", item.message,
                  type_="Warning")
        return item
    item.phase, item.message = model.ROLLED_BACK, "previous values restored"
    pipeline.save_status(view, _stub(rec), replace(
        status, phase=model.ROLLED_BACK, message=item.message).with_condition(
        pipeline.condition("RolledBack", True, "Restored", _describe(plan), now)))
    dec = decision.Decision(allow=True, mode="direct", decision_id=str(
        (rec.status.get("decision") or {}).get("decisionId", "")))
    who = kube.who(api.api_client, api.field_manager)
    for line in _audit_lines(plan, hpa, dec, "rollback", who):
        audit_log.info(json.dumps(line, sort_keys=True))
    if target is not None:
        api.event(target, "DakrRecommendationRolledBack", f"{rec_id}: {_describe(plan)}")
    api.event(_rec_ref(view, kind, rec_id, ns), "RolledBack", _describe(plan))
    _release(view, kind, rec_id)
    return item


def _rollback_nodes(view: BatchStore, rec: store.Record, api: kube.Kube,
                    item: results.ItemResult, now: str) -> results.ItemResult:
    """Make the nodes a drain cordoned schedulable again (those still there). Evicted pods
    are not brought back: their controllers replaced them when they were evicted."""
    nodes = [str(n) for n in (rec.status.get("previous") or {}).get("cordoned") or []]
    uncordoned = [n for n in nodes if _uncordon_if_present(api, n)]
    item.phase = model.ROLLED_BACK
    item.message = (f"uncordoned {', '.join(uncordoned) or 'no node (none left cordoned)'}; "
                    "evicted pods are not restored")
    status = model.Status(**_status_fields(rec.status))
    pipeline.save_status(view, _stub(rec), replace(
        status, phase=model.ROLLED_BACK, message=item.message).with_condition(
        pipeline.condition("RolledBack", True, "Uncordoned", item.message, now)))
    audit_log.info(json.dumps({
        "event": "change", "action": "rollback", "who": kube.who(api.api_client,
                                                                 api.field_manager),
        "recommendationId": rec.id, "object": {"kind": "NodeGroup",
                                               "name": str(rec.spec.get("nodeGroup", ""))},
        "uncordoned": uncordoned, "at": pipeline.now_rfc3339()}, sort_keys=True))
    api.event(_rec_ref(view, rec.kind, rec.id, ""), "RolledBack", item.message)
    _release(view, rec.kind, rec.id)
    return item


def _uncordon_if_present(api: kube.Kube, node: str) -> bool:
    try:
        return drain.uncordon(api, node)
    except errors.NotFoundError:
        return False  # removed by the autoscaler meanwhile: nothing to put back


def _status_fields(status: Mapping[str, Any]) -> dict[str, Any]:
    """The stored status as ``model.Status`` arguments (unknown keys dropped)."""
    conds = tuple(model.Condition(**{k: v for k, v in c.items() if k in (
        "type", "status", "reason", "message", "lastTransitionTime", "observedGeneration")})
        for c in status.get("conditions") or [])
    d = status.get("decision")
    summary = model.DecisionSummary(
        allowed=bool(d.get("allowed")), mode=str(d.get("mode", "direct")),
        reasons=tuple(d.get("reasons") or ()), warnings=tuple(d.get("warnings") or ()),
        decisionId=str(d.get("decisionId", ""))) if isinstance(d, dict) else None
    return {"phase": str(status.get("phase", model.PENDING)), "conditions": conds,
            "decision": summary, "previous": dict(status.get("previous") or {}),
            "appliedAt": str(status.get("appliedAt", "")),
            "projectedSavings": str(status.get("projectedSavings", "")),
            "message": str(status.get("message", ""))}


@dataclass(frozen=True)
class _Stub:
    """Enough of a recommendation for ``pipeline.save_status`` (kind and id)."""

    kind: str
    id: str


def _stub(rec: store.Record) -> Any:
    return _Stub(rec.kind, rec.id)


def _restore_plan(rec_id: str, kind: str, ns: str, name: str,
                  prev: Mapping[str, Any]) -> planner.Plan:
    """The edits of the original change, old and new swapped back: ``old`` = what we set,
    ``new`` = what was there before."""
    applied = prev.get("set") or {}
    edits: list[planner.ValueEdit] = []
    for cname, secs in (applied.get("containers") or {}).items():
        for section, vals in secs.items():
            for res, ours in vals.items():
                before = (((prev.get("containers") or {}).get(cname) or {}).get(section)
                          or {}).get(res)
                edits.append(planner.ValueEdit(cname, section, res, ours, before))  # type: ignore[arg-type]
    replicas = None
    if "replicas" in applied:
        # A workload that had no replicas field ran 1: that is what goes back.
        before_r = prev.get("replicas")
        replicas = (int(applied["replicas"]), int(before_r) if before_r is not None else 1)
    hpa = None
    if "hpa" in applied and isinstance(prev.get("hpa"), dict):
        hpa = (dict(applied["hpa"]), dict(prev["hpa"]))
    return planner.Plan(rec_id=rec_id, kind=kind, namespace=ns, name=name,
                        resources=tuple(edits), replicas=replicas, hpa=hpa)


def _foreign_change(plan: planner.Plan, target: Mapping[str, Any] | None,
                    hpa: Mapping[str, Any] | None, hpa_name: str) -> str | None:
    """Why the values we set are no longer there (a readable reason), or None."""
    if target is None:
        return f"{plan.kind}/{plan.name} no longer exists"
    current = planner.current_resources(target)
    for e in plan.resources:
        now_v = (current.get(e.container) or {}).get(e.section, {}).get(e.resource)
        if now_v != e.old:
            return (f"container {e.container} {e.section}.{e.resource} is {now_v or '(unset)'}"
                    f", not the {e.old} this recommendation set: someone changed it since")
    if plan.replicas is not None:
        cur = (target.get("spec") or {}).get("replicas")
        if cur != plan.replicas[0]:
            return (f"replicas is {cur}, not the {plan.replicas[0]} this recommendation set: "
                    "someone changed it since")
    if plan.hpa is not None:
        if hpa is None:
            return f"HorizontalPodAutoscaler {hpa_name} no longer exists"
        spec = hpa.get("spec") or {}
        for key, ours in plan.hpa[0].items():
            if spec.get(key, 1 if key == "minReplicas" else None) != ours:
                return (f"HPA {hpa_name} {key} is {spec.get(key)}, not the {ours} this "
                        "recommendation set: someone changed it since")
    return None


def _send_restore(api: kube.Kube, plan: planner.Plan, target: dict[str, Any],
                  hpa: dict[str, Any] | None) -> None:
    if plan.resources:
        ops = _container_ops(target, plan.resources, "new")
        api.json_patch(plan.kind, plan.namespace, plan.name, ops, dry_run=True)
        api.json_patch(plan.kind, plan.namespace, plan.name, ops)
    if plan.replicas is not None and plan.replicas[1] is not None:
        api.scale(plan.kind, plan.namespace, plan.name, plan.replicas[0], plan.replicas[1])
    if plan.hpa is not None and hpa is not None:
        api.json_patch(kube.HPA, plan.namespace, hpa["metadata"]["name"],
                       _hpa_ops(plan.hpa[0], plan.hpa[1], hpa))


def _release(view: BatchStore, kind: str, rec_id: str) -> None:
    """Drop our finalizer (a deleted object then goes away)."""
    ks = view.kube
    if ks is None:
        return
    for _ in range(3):
        obj = ks.raw(kind, rec_id)
        if obj is None:
            return
        finals = list((obj.get("metadata") or {}).get("finalizers") or [])
        if FINALIZER not in finals:
            return
        try:
            ks.set_finalizers(obj, [f for f in finals if f != FINALIZER])
            return
        except errors.ConflictError:
            continue
    raise errors.ConflictError(f"{kind} {rec_id}: could not release the finalizer")


def reconcile_deletions(st: store.Store, api: kube.Kube, *,
                        now: str = "") -> list[results.ItemResult]:
    """Roll back every recommendation being deleted that still holds our finalizer."""
    ks = st if isinstance(st, kube_store.KubeStore) else (
        st.kube if isinstance(st, BatchStore) else None)
    if ks is None:
        return []
    out: list[results.ItemResult] = []
    for kind in model.KINDS:
        for obj in ks.raw_list(kind):
            meta = obj.get("metadata") or {}
            if not meta.get("deletionTimestamp") or \
                    FINALIZER not in (meta.get("finalizers") or []):
                continue
            rec_id = str((obj.get("spec") or {}).get("recommendationId") or meta.get("name"))
            try:
                out.append(rollback(rec_id, ks, api, now=now, kind=kind))
            except errors.ReconcilerError as e:
                out.append(results.ItemResult(id=rec_id, kind=kind, phase=model.FAILED,
                                              message=f"rollback failed: {e}"))
    return out
