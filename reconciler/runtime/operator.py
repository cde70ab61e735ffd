"""``reconciler run``: the operator, as every Kubernetes operator works.

- It watches its recommendations (informers over the custom resources, or over the SQLite
  file in local mode) and keeps them in a cache; each change worth work (a new one, a new
  spec, a deletion, a rollback request) puts the key of the recommendation's *target* on
  a rate-limited work queue, so two recommendations for one workload never run at once
  and a change is looked at in milliseconds, not at the next round.
- It holds one gRPC stream to the platform for its whole life: what arrives is stored,
  acked and queued; phases and decisions go back up as they happen (an outbox on disk
  holds them while the stream is down).
- Workers take keys off the queue and carry the work out through the writer the decision
  names: direct changes at once, pull requests gathered per repository for a short window
  (``batcher``) into one commit and one pull request.
- A temporary outcome (no policy answer, the API or the forge unavailable, a target that
  keeps changing) leaves the recommendation Pending with a Retrying condition and its key
  is queued again with per-key exponential backoff; a terminal one is not retried.
- Open pull requests are followed every resync period and after each GitOps batch; a
  ``POST /resync`` asks for it at once.
- Only the leader works (a Lease); SIGTERM stops taking work, lets what is in flight
  finish (a guarded patch happened or did not: nothing is half-applied) and releases it.

The adapters are opened once for the process (one policy engine, which reloads changed
policies and keeps the last good set; one API client; one store; one forge client).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from reconciler import wiring
from reconciler.adapters.opa import platform_data as policy_data
from reconciler.adapters.store import port as store
from reconciler.config import settings
from reconciler.direct import apply as direct
from reconciler.direct import cache as direct_cache
from reconciler.direct import mark
from reconciler.direct import rollback as restore
from reconciler.domain import clock, errors, model, results, status
from reconciler.domain import text as txt
from reconciler.flow import audit, decide, report
from reconciler.flow import batch as flow
from reconciler.gitops import pipeline
from reconciler.runtime import (
    batcher,
    health,
    informer,
    jobs,
    leader,
    nodewatch,
    rollbacks,
    sources,
    workqueue,
)
from reconciler.runtime import metrics as metrics_mod
from reconciler.stream import client
from reconciler.stream import state as stream_state

log = logging.getLogger(__name__)

PLATFORM_DATA = "platform-data.json"  # the platform's policy parameters, under data.platform
# A watch event waits this long before its key is worked on, so that recommendations
# created together (`kubectl apply` of a file, a batch the platform sends) are decided and
# applied together instead of one by one.
COALESCE = 0.25
# How often a node group waiting for the node operator to remove its marked nodes is looked
# at when the nodes cannot be watched (no list/watch right on nodes); with the watch, it is
# looked at when one of its nodes goes, and at its deadline.
MARK_POLL = 10.0
Target = informer.Target
Docs = list[dict[str, Any]]


def needs_work(rec: store.Record, writers: frozenset[str]) -> bool:
    """Whether a recommendation has something for a worker to do: not decided yet (or its
    spec changed since), a direct change interrupted (Applying without a pull request: the
    process stopped between recording the way back and the patch; looking again finds the
    values applied or applies them, never twice), or waiting for a writer the process now
    has (refused for want of one, or only audited)."""
    if rec.deleting:
        return False
    if not rec.observed or rec.phase == model.PENDING:
        return True
    if rec.phase == model.APPLYING and not rec.status.get("pullRequest"):
        return True
    conds = rec.status.get("conditions") or []
    if rec.phase == model.FAILED:
        mode = str((rec.status.get("decision") or {}).get("mode", ""))
        return mode in writers and any(c.get("reason") == decide.WRITER_NOT_CONFIGURED
                                       for c in conds)
    if rec.phase == model.APPROVED and writers:
        return any(c.get("reason") == audit.AUDIT_MODE for c in conds)
    return False


def rollback_requested(rec: store.Record) -> rollbacks.RollbackRequest | None:
    for c in rec.status.get("conditions") or []:
        if c.get("type") == rollbacks.ROLLBACK_REQUESTED and c.get("status") == "True":
            return rollbacks.RollbackRequest(rec.kind, rec.id, str(c.get("message", "")))
    return None


def worth_work(old: store.Record | None, new: store.Record | None) -> bool:
    """What deserves a look: a new recommendation, a new spec, a deletion asked for, a
    rollback request. A status-only change (most often the operator's own write) does
    not, or every status write would wake the key again and defeat its backoff."""
    if new is None:
        return False
    if old is None:
        return True
    return (new.generation != old.generation or new.deleting != old.deleting
            or (rollback_requested(new) is not None and rollback_requested(old) is None))


class Operator:
    """One operator process: ``run()`` until SIGINT/SIGTERM (or, with ``once``, until it
    has done all there is to do)."""

    def __init__(self, cfg: settings.Settings, run: settings.RunSettings, *,
                 dry_run: bool = False,
                 on_batch: Callable[[flow.Batch], object] = lambda _: None) -> None:
        self.sources = [sources.Source.parse(x) for x in run.sources]
        self.platform = next((s for s in self.sources if s.kind == "platform"), None)
        if not self.sources and cfg.store.uri != "kube":
            # The custom resources are a source of their own; a local file store is not.
            raise errors.ConfigError("no --source given and DAKR_API_ENDPOINT is not set "
                                     "(with --store kube, the custom resources suffice)")
        if cfg.mode == "audit":
            log.warning("audit mode: recommendations are taken in, decided and reported; "
                        "nothing is written: %s", audit.HOW)
        self.platform_data = cfg.state_dir / PLATFORM_DATA
        self.cfg = dataclasses.replace(
            cfg, policy=dataclasses.replace(cfg.policy, platform_data=self.platform_data),
            # A long-lived process keeps no cluster's worth of workloads in memory: it reads
            # the few it works on, and its other reads expire.
            kube=dataclasses.replace(cfg.kube, cache_ttl=run.api_cache_ttl,
                                     list_workloads=False))
        self.run_settings = run
        self.dry_run = dry_run
        self.on_batch = on_batch
        self.metrics = metrics_mod.Metrics()
        self.queue: workqueue.WorkQueue[Target] = workqueue.WorkQueue(
            workqueue.Backoff(base=run.retry_base, maximum=run.retry_max))
        self.summary = flow.Batch()       # --once: everything done, printed at the end
        self._summary_lock = threading.Lock()
        self._resync_now = threading.Event()
        self._stream_up = threading.Event()
        # Keys whose work waits in a GitOps batch: what was done for them before, and when.
        self._pending_items: dict[Target, tuple[list[results.ItemResult], float,
                                                errors.ReconcilerError | None]] = {}
        # Built in _start, for the process's life.
        self.parts: wiring.Parts | None = None
        self.cache = informer.Cache()
        self.store: informer.CachedStore | None = None
        self.informers: list[informer.Informer] = []
        self.stream: client.StreamClient | None = None
        self._stream_thread: threading.Thread | None = None
        self._stream_state: stream_state.StreamState | None = None
        self._workers: list[threading.Thread] = []
        self.batcher: batcher.Batcher[Target, Docs] | None = None
        self.health: health.Health | None = None
        self.node_watch: nodewatch.NodeWatch | None = None
        self._sweep_refused = False

    # ------------------------------------------------------------------ readiness

    def not_ready(self) -> str:
        """Why /readyz says no ("" when ready)."""
        if self.store is None:
            return "starting"
        for inf in self.informers:
            if not inf.synced.is_set():
                return f"the {inf.kind} store is not synced yet"
            if not inf.healthy(stale_after=2 * self.run_settings.watch_timeout + 30):
                return f"the watch of {inf.kind} is stale"
        if self.parts is not None and self.parts.engine is not None \
                and not self.parts.engine.healthy():
            return "the policy engine does not answer"
        if self.platform is not None and not self._stream_up.is_set():
            return "the platform stream has not connected yet"
        return ""

    # ------------------------------------------------------------------ events -> keys

    def _changed(self, old: store.Record | None, new: store.Record | None) -> None:
        if worth_work(old, new):
            assert new is not None
            self.queue.add_after(informer.target_of(new), COALESCE)

    def _stored(self, recs: Sequence[store.Record]) -> None:
        """The stream stored a batch: queue it now, whole (its watch events follow)."""
        self.metrics.taken_in.labels("platform").inc(len(recs))
        for r in recs:
            self.queue.add(informer.target_of(r))

    def _rollback_requested(self, kind: str, rec_id: str, reason: str) -> None:
        assert self.store is not None
        rollbacks.request(self.store, kind, rec_id, reason)
        rec = self.store.get(kind or model.WORKLOAD, rec_id)
        if rec is not None:
            self.queue.add(informer.target_of(rec))

    def _policy_updated(self, data: dict[str, Any]) -> None:
        merged = policy_data.update(self.platform_data, data, self.cfg.limits)
        engine = self.parts.engine if self.parts is not None else None
        put = getattr(engine, "put_data", None)
        if callable(put):  # a sidecar keeps data in memory; the embedded engine reloads
            put(policy_data.ROOT, merged)

    # ------------------------------------------------------------------ the work

    def _worker(self) -> None:
        while True:
            key = self.queue.get(timeout=0.5)
            if key is None:
                if self.queue.shutting_down:
                    return
                continue
            started = time.monotonic()
            try:
                self.process(key, started)
            except Exception as e:  # one bad target never stops the operator
                log.exception("work on %s failed", "/".join(key))
                self._mark_failed_work(key, e)
                self._finish(key, [], started, error=e)

    def process(self, key: Target, started: float) -> None:
        """Everything one target needs: roll back what is being deleted, carry out the
        platform's rollback requests, decide and apply what is new. Calls ``_finish`` (at
        once, or after the GitOps batch the key joined)."""
        assert self.parts is not None and self.store is not None
        cfg, parts = self.cfg, self.parts
        recs = self.cache.for_targets([key])
        view = informer.TargetView(self.store, [key])
        items: list[results.ItemResult] = []
        temporary: errors.ReconcilerError | None = None
        for r in recs:
            if r.deleting and direct_cache.FINALIZER in r.finalizers and cfg.mode == "audit":
                # Writes nothing, a rollback neither: the finalizer keeps the deletion
                # until an operator with a writer restores the values.
                log.warning("%s is being deleted; its rollback waits for an operator that "
                            "writes (audit mode: %s)", r.id, audit.HOW)
            elif (r.deleting and direct_cache.FINALIZER in r.finalizers
                  and parts.api is not None):
                try:
                    items.append(restore.rollback(r.id, view, parts.api, kind=r.kind))
                except errors.TemporaryError as e:
                    temporary = e
            req = rollback_requested(r)
            if req is not None and not r.deleting:
                try:
                    item, ok = jobs.rollback(parts, cfg, r.id, r.kind)
                except errors.TemporaryError as e:
                    temporary = e
                    continue
                if not ok or not item.phase or item.phase == model.PENDING:
                    cur = view.get(r.kind, r.id)
                    item.phase = cur.phase if cur is not None else item.phase
                rollbacks.finish(view, req, ok, item.message)
                self.metrics.rollbacks.labels("done" if ok else "refused").inc()
                items.append(item)
        todo = [r.to_document() for r in self.cache.for_targets([key])
                if needs_work(r, cfg.writers)]
        if todo and cfg.mode == "gitops" and self.batcher is not None:
            self._pending_items[key] = (items, started, temporary)
            self.batcher.add(key, todo)  # _flush finishes the key with the batch
            return
        if todo and cfg.mode == "audit":
            items.extend(jobs.audit_batch(parts, cfg, todo, dry_run=self.dry_run,
                                          st=view).items)
        elif todo:
            out = direct.run(todo, cfg, view, parts.need_engine(), parts.need_api(),
                             dry_run=self.dry_run)
            items.extend(it for it in out.items
                         if (it.kind, it.id) not in {(w.rec.kind, w.rec.id)
                                                     for w in out.handoff})
            if out.handoff and self.batcher is not None:
                self._pending_items[key] = (items, started, temporary)
                self.batcher.add(key, [w.document for w in out.handoff])
                return
        self._look_again(key, items)
        self._finish(key, items, started, error=temporary)

    def _look_again(self, key: Target, items: Iterable[results.ItemResult]) -> None:
        """A node group left Applying waits for the node operator: its key comes back at
        its deadline (and when one of its nodes goes, ``_node_gone``; without the node
        watch, every ``MARK_POLL`` seconds)."""
        if self.store is None or self.dry_run:
            return
        now = clock.parse_rfc3339(self.cfg.now or clock.rfc3339())
        for it in items:
            if it.kind != model.NODE_GROUP or it.phase != model.APPLYING:
                continue
            rec = self.store.get(it.kind, it.id)
            left = mark.seconds_left(rec.status, now, self.cfg.direct.mark_deadline) \
                if rec is not None else None
            if left is None:
                continue
            watched = self.node_watch is not None and self.node_watch.watching
            self.queue.add_after(key, min(left + 1.0, self.run_settings.resync if watched
                                          else MARK_POLL))

    def _node_gone(self, node: str, owner: str) -> None:
        """A marked node was deleted (or lost its mark): look at its recommendation now."""
        recs = [r for r in (self.cache.get(model.NODE_GROUP, owner),) if r is not None] \
            if owner else list(self.cache.all(model.NODE_GROUP, model.APPLYING))
        for r in recs:
            if r.phase == model.APPLYING:
                log.info("node %s marked by %s is gone: looking at %s again",
                         txt.one_line(node), txt.one_line(owner or "?"), txt.one_line(r.id))
                self.queue.add(informer.target_of(r))

    def _nodes_listed(self) -> None:
        """The marked nodes were listed again: a deletion missed meanwhile is found by
        looking at every node group still waiting."""
        for r in self.cache.all(model.NODE_GROUP, model.APPLYING):
            self.queue.add(informer.target_of(r))

    def _sweep_marks(self) -> None:
        """Remove marks older than the TTL whose recommendation is no longer Applying (a
        mark left behind blocks autoscalers: kubernetes/autoscaler#5657)."""
        if (self.parts is None or self.parts.api is None or self.dry_run
                or "direct" not in self.cfg.writers):
            return

        def phase_of(rec_id: str) -> str | None:
            rec = self.cache.get(model.NODE_GROUP, rec_id)
            return rec.phase if rec is not None else None

        now = clock.parse_rfc3339(self.cfg.now or clock.rfc3339())
        try:
            mark.sweep(self.parts.api, phase_of, now, self.cfg.direct.mark_ttl)
        except errors.ReconcilerError as e:
            level = logging.DEBUG if self._sweep_refused else logging.WARNING
            self._sweep_refused = True
            log.log(level, "could not look for stale consolidation marks: %s", e)

    def _flush(self, work: dict[Target, Docs]) -> None:
        """One GitOps batch for the targets gathered in a window: one commit, one pull
        request; what the policy routes to direct mode goes there in the same pass."""
        assert self.parts is not None and self.store is not None
        cfg, parts = self.cfg, self.parts
        docs = [d for ds in work.values() for d in ds]
        view = informer.TargetView(self.store, work)
        self.metrics.batch_size.observe(len(docs))
        out: flow.Batch | None = None
        failure: errors.ReconcilerError | None = None
        try:
            out = pipeline.run(docs, cfg, view, parts.need_engine(), parts.need_prs(),
                               dry_run=self.dry_run, routed=cfg.mode == "gitops",
                               cluster_api=parts.api if cfg.cluster.facts else None)
            jobs.resize_beside_pull_requests(view, parts, cfg, out)
            if out.handoff and parts.api is not None:
                jobs.merge(out, direct.run([w.document for w in out.handoff], cfg, view,
                                           parts.need_engine(), parts.api,
                                           dry_run=self.dry_run, routed=False))
        except errors.ReconcilerError as e:
            failure = e
            log.warning("GitOps batch of %d recommendation(s) failed: %s", len(docs), e)
            if isinstance(e, errors.TemporaryError) and not self.dry_run:
                self._mark_retrying(view, docs, e)
        except Exception as e:
            failure = errors.PermanentError(f"{type(e).__name__}: {e}")
            log.exception("GitOps batch of %d recommendation(s) failed", len(docs))
        if out is not None:
            with self._summary_lock:
                jobs.merge(self.summary, dataclasses.replace(out, items=[]))
        by_target: dict[Target, list[results.ItemResult]] = {}
        index = {(d.get("kind"), (d.get("spec") or {}).get("recommendationId")): t
                 for t, ds in work.items() for d in ds}
        for it in (out.items if out is not None else []):
            t = index.get((it.kind, it.id))
            if t is not None:
                by_target.setdefault(t, []).append(it)
        for t in work:
            items, started, temporary = self._pending_items.pop(t, ([], time.monotonic(),
                                                                    None))
            self._finish(t, items + by_target.get(t, []), started,
                         error=failure or temporary)
        if out is not None and not self.dry_run:
            self._follow()

    def _mark_retrying(self, view: informer.TargetView, docs: Docs,
                       e: errors.ReconcilerError) -> None:
        """A batch that could not reach the repository or the forge: each of its
        recommendations says so, and is tried again with backoff."""
        now = clock.rfc3339()
        for d in docs:
            rec = view.get(str(d.get("kind")), str((d.get("spec") or {}).get("recommendationId")))
            if rec is None or rec.phase not in (model.PENDING, model.APPROVED):
                continue
            with_retry = status.retrying(status.from_dict(rec.status), "GitOpsUnavailable",
                                         f"the repository or the forge is unavailable: {e}",
                                         now)
            try:
                report.save_status(view, rec, with_retry)
            except errors.ReconcilerError as err:
                log.warning("%s: could not record the retry: %s", rec.id, err)

    def _finish(self, key: Target, items: list[results.ItemResult], started: float, *,
                error: BaseException | None = None) -> None:
        """Report what came of a key, then requeue it with backoff (temporary) or forget
        its failures (settled), and hand it back to the queue."""
        try:
            self.metrics.observe_items(self.cfg.mode, items)
            for it in items:
                log.info("%s %s: %s%s", it.id or "(invalid)", it.phase, it.message,
                         f" (retry: {it.retry})" if it.retry else "")
            if self.stream is not None and not self.dry_run:
                for it in items:
                    if it.id:
                        self.stream.send_status(
                            it.kind, it.id, it.phase, message=it.message,
                            pull_request_url=it.pull_request,
                            decision=it.to_json().get("decision"))
            if self.run_settings.once:
                with self._summary_lock:
                    jobs.merge(self.summary, flow.Batch(items=list(items)))
            retry = error is not None or any(it.retry for it in items)
            if retry and not self.queue.shutting_down:
                delay = self.queue.add_rate_limited(key)
                self._note_next_try(items, delay)
                result = "error" if error is not None and not isinstance(
                    error, errors.TemporaryError) else "retry"
            else:
                self.queue.forget(key)
                result = "ok"
            self.metrics.observe_work(started, result)
        finally:
            self.queue.done(key)

    def _mark_failed_work(self, key: Target, e: Exception) -> None:
        """A failure of ours (a bug, not a refusal) is written on the recommendations it
        held up, Pending with a Retrying condition naming it: the key is tried again with
        backoff, the other keys go on, and a user sees why nothing happened."""
        if self.store is None or self.dry_run:
            return
        message = f"internal error: {type(e).__name__}: {txt.clip(txt.said(e), 300)} (tried again)"
        now = clock.rfc3339()
        for r in self.cache.for_targets([key]):
            if not needs_work(r, self.cfg.writers):
                continue
            try:
                report.save_status(self.store, r, status.retrying(
                    status.from_dict(r.status), "InternalError", message, now))
            except Exception:  # the store may be what failed: the log has it already
                log.debug("%s: could not record the internal error", r.id, exc_info=True)

    def _note_next_try(self, items: Iterable[results.ItemResult], delay: float) -> None:
        """Write when a temporary outcome is tried next into its Retrying condition."""
        if self.store is None or self.dry_run:
            return
        at = clock.rfc3339(time.time() + delay)
        for it in items:
            if not it.retry:
                continue
            rec = self.store.get(it.kind, it.id)
            if rec is None:
                continue
            cur = status.from_dict(rec.status)
            cond = next((c for c in cur.conditions if c.type == status.RETRYING), None)
            if cond is None or cond.status != "True" or "next try at" in cond.message:
                continue
            note = f"{cond.message}; next try at {at}"
            try:
                report.save_status(self.store, rec, cur.with_condition(dataclasses.replace(
                    cond, message=note[:status.MESSAGE_LIMIT])))
            except errors.ReconcilerError as e:
                log.debug("%s: could not note the next try: %s", it.id, e)

    # ------------------------------------------------------------------ periodic work

    def _follow(self) -> None:
        """Carry open pull requests to their end (merged, closed), and report it."""
        if self.parts is None or self.parts.prs is None or self.store is None:
            return
        try:
            done = jobs.follow_pull_requests(self.store, self.parts, clock.rfc3339())
        except errors.ReconcilerError as e:
            log.warning("following pull requests: %s", e)
            return
        if done:
            self._finish_followed(done)

    def _finish_followed(self, items: list[results.ItemResult]) -> None:
        self.metrics.observe_items("gitops", items)
        if self.stream is not None:
            for it in items:
                self.stream.send_status(it.kind, it.id, it.phase, message=it.message,
                                        pull_request_url=it.pull_request)
        if self.run_settings.once:
            with self._summary_lock:
                jobs.merge(self.summary, flow.Batch(items=list(items)))

    def _take_in_files(self) -> None:
        if self.store is None or not any(s.kind != "platform" for s in self.sources):
            return
        got = sources.take_in(self.sources, self.store, self.cfg.limits)
        for reason in got.refused:
            log.warning("refused: %s", reason)
        self.metrics.observe_intake(got.by_source, got.refused_by_source)
        for r in got.stored:
            self.queue.add(informer.target_of(r))

    def resync(self) -> None:
        """What a resync period brings: the file sources again, the open pull requests, and
        every recommendation that still has something to do (a missed event costs a
        period, never the recommendation)."""
        self._take_in_files()
        self._follow()
        self._sweep_marks()
        for r in self.cache.all():
            if needs_work(r, self.cfg.writers) or rollback_requested(r) is not None or (
                    r.deleting and direct_cache.FINALIZER in r.finalizers):
                self.queue.add(informer.target_of(r))

    # ------------------------------------------------------------------ life cycle

    def _start(self) -> None:
        cfg, tuning = self.cfg, self.run_settings
        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        self.parts = parts = wiring.build_parts(cfg)
        watchable = parts.store
        self.store = informer.CachedStore(
            watchable, self.cache,
            finalizers=(direct_cache.FINALIZER,) if "direct" in cfg.writers else ())
        for kind in model.KINDS:
            self.informers.append(informer.Informer(
                watchable, kind, self.cache, self._changed,
                watch_timeout=tuning.watch_timeout,
                on_list=lambda k: self.metrics.relists.labels(k).inc()).start())
        deadline = time.monotonic() + tuning.sync_timeout
        for inf in self.informers:
            if not inf.synced.wait(max(0.0, deadline - time.monotonic())):
                raise errors.TemporaryError(
                    f"the {inf.kind} store did not sync within {tuning.sync_timeout:g}s")
        if "direct" in cfg.writers and parts.api is not None and not self.dry_run:
            self.node_watch = nodewatch.NodeWatch(
                parts.api, mark.SELECTOR, mark.BY, self._node_gone, self._nodes_listed,
                watch_timeout=tuning.watch_timeout).start()
        if "gitops" in cfg.writers:
            self.batcher = batcher.Batcher(self._flush, batcher.Window(
                tuning.batch_window, tuning.batch_max_wait, tuning.batch_max)).start()
        self._workers = [threading.Thread(target=self._worker, daemon=True,
                                          name=f"worker-{i}") for i in range(tuning.workers)]
        for t in self._workers:
            t.start()
        if self.platform is not None:
            self._start_stream()

    def _start_stream(self) -> None:
        assert self.platform is not None and self.store is not None and self.parts is not None
        run = self.run_settings
        conn = client.ClientConfig(target=self.platform.where, cluster_id=self.cfg.cluster_id,
                                   token_file=run.platform_token_file,
                                   token=run.platform_token, limits=self.cfg.limits)
        # Kept open until the operator stops: what is reported after the stream ended (a
        # --once run) waits in the outbox for the next connection.
        self._stream_state = state = stream_state.StreamState(
            stream_state.default_path(self.cfg.store.uri, None, self.cfg.state_dir))
        api = self.parts.api
        self.stream = client.StreamClient(
            conn, self.store, state,
            crd_installer=api,
            on_rollback=self._rollback_requested, on_policy_update=self._policy_updated,
            on_stored=self._stored)
        stream = self.stream

        def serve() -> None:
            stream.run(until_idle=run.idle if run.once else None)

        def watch_connection() -> None:
            while self._stream_thread is not None and self._stream_thread.is_alive():
                up = stream.connected.is_set()
                self.metrics.stream_connected.set(1 if up else 0)
                if up:
                    self._stream_up.set()
                time.sleep(0.2)
            self.metrics.stream_connected.set(0)

        self._stream_thread = threading.Thread(target=serve, daemon=True, name="stream")
        self._stream_thread.start()
        threading.Thread(target=watch_connection, daemon=True, name="stream-probe").start()

    def _idle(self) -> bool:
        """--once: nothing left to do now (retries in backoff do not count). A GitOps
        window still open is flushed at once: there is nothing more to wait for."""
        stream_done = self._stream_thread is None or not self._stream_thread.is_alive()
        if not stream_done or len(self.queue) or self.queue.processing():
            return False
        if self.batcher is None:
            return True
        left = self.batcher.take()
        if left:
            self._flush(left)
        return self.batcher.idle() and self.queue.processing() == 0 and not len(self.queue)

    def _stop(self) -> None:
        tuning = self.run_settings
        if self.stream is not None:
            self.stream.stop()
        for inf in self.informers:
            inf.stop()
        if self.node_watch is not None:
            self.node_watch.stop()
        self.queue.shut_down()
        deadline = time.monotonic() + tuning.shutdown_timeout
        for t in self._workers:
            t.join(max(0.0, deadline - time.monotonic()))
        if self.batcher is not None:
            left = self.batcher.stop(max(0.0, deadline - time.monotonic()))
            if left:
                log.info("stopping: %d target(s) left for the next leader (still Pending)",
                         len(left))
        if self._stream_thread is not None:
            self._stream_thread.join(max(0.0, deadline - time.monotonic()))
        for inf in self.informers:
            inf.join(max(0.0, deadline - time.monotonic()))
        if self.node_watch is not None:
            self.node_watch.join(max(0.0, deadline - time.monotonic()))
        if self._stream_state is not None:
            self._stream_state.close()
        if self.parts is not None:
            self.parts.close()

    def work(self, until: threading.Event) -> None:
        """The operator while it leads: start, serve until ``until`` (or, once, until
        idle), stop."""
        run = self.run_settings
        self.metrics.leader.set(1)
        try:
            self._start()
            if self.health is not None:
                self.health.check = self.not_ready
                self.health.ready.set()
            next_resync = 0.0
            while not until.is_set():
                if time.monotonic() >= next_resync or self._resync_now.is_set():
                    self._resync_now.clear()
                    self.resync()
                    next_resync = time.monotonic() + run.resync
                self.metrics.depth.set(len(self.queue))
                self.metrics.waiting.set(self.queue.waiting())
                if run.once and self._idle():
                    self._follow()
                    break
                until.wait(0.05 if run.once else 0.5)
        finally:
            self._stop()
            s = self.summary
            if run.once and (s.items or s.pull_requests or s.branch):
                self.on_batch(s)

    def run(self) -> int:
        run = self.run_settings
        lead = run.leader
        lease_client = wiring.api_client(self.cfg.kube) if lead.enabled else None
        stop = threading.Event()
        previous: dict[signal.Signals, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, lambda *_: stop.set())
        metrics = self.metrics
        try:
            self.health = (health.Health(run.health_addr, metrics, check=self.not_ready,
                                         on_resync=self._resync_now.set)
                           if run.health_addr else None)
            metrics_server = (health.Health(run.metrics_addr, metrics, probes=False)
                              if run.metrics_addr and run.metrics_addr != run.health_addr
                              else None)
        except (ValueError, OSError) as e:
            raise errors.ConfigError(f"--health-addr / --metrics-addr: {e}") from e

        def standby() -> None:
            # A standby is ready: readiness gated on leadership would stall every rolling
            # update (the new pod cannot lead while the old one holds the lease).
            metrics.leader.set(0)
            if self.health is not None:
                self.health.check = None
                self.health.ready.set()

        def lost() -> None:
            # Work may still be in flight when a standby may take over (lease duration
            # minus renew deadline from now): it must not go on writing.
            metrics.leader.set(0)
            timer = threading.Timer(max(1.0, lead.lease_duration - lead.renew_deadline),
                                    lambda: os._exit(1))
            timer.daemon = True
            timer.start()

        try:
            return leader.run_as_leader(lease_client, lead, stop, self.work,
                                        on_standby=standby, on_lost=lost)
        finally:
            for server in (self.health, metrics_server):
                if server is not None:
                    server.close()
            if lease_client is not None:
                lease_client.close()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
