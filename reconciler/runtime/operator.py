"""``reconciler run``: the operator, composed from its parts.

What runs: leader election around the loop of rounds (``loop``), each round's batch in
the configured mode (``jobs``), the platform's rollback requests, probes and metrics on
HTTP, and every phase reported up the stream. The CLI builds the settings and prints what
a batch did (``on_batch``); everything else happens here.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import threading
from collections.abc import Callable
from typing import Any

from reconciler import wiring
from reconciler.config import settings
from reconciler.domain import errors, model, results
from reconciler.flow import batch as flow
from reconciler.runtime import health as health_mod
from reconciler.runtime import jobs, leader, loop, rollbacks, sources
from reconciler.runtime import metrics as metrics_mod
from reconciler.stream import state as stream_state

log = logging.getLogger(__name__)

PLATFORM_DATA = "platform-data.json"  # the platform's policy parameters, under data.platform


class Operator:
    """One operator process: ``run()`` until SIGINT/SIGTERM (or one round with ``once``)."""

    def __init__(self, cfg: settings.Settings, run: settings.RunSettings, *,
                 dry_run: bool = False,
                 on_batch: Callable[[flow.Batch], object] = lambda _: None) -> None:
        if not run.sources:
            raise errors.ConfigError("no --source given and DAKR_API_ENDPOINT is not set")
        self.sources = [sources.Source.parse(x) for x in run.sources]
        if run.interval <= 0 or run.idle <= 0:
            raise errors.ConfigError("--interval and --idle must be positive")
        if cfg.mode == "gitops" and not cfg.git.repo:
            raise errors.ConfigError("--repo is required with --mode gitops (the default)")
        # The platform's policy parameters (PolicyUpdate), under data.platform, kept here.
        self.platform_data = cfg.state_dir / PLATFORM_DATA
        self.cfg = dataclasses.replace(cfg, policy=dataclasses.replace(
            cfg.policy, platform_data=self.platform_data))
        self.run_settings = run
        self.dry_run = dry_run
        self.on_batch = on_batch
        self.stream_path = stream_state.default_path(cfg.store.uri, None, cfg.state_dir)
        self.reports_upstream = (any(s.kind == "platform" for s in self.sources)
                                 and not dry_run)
        self.metrics = metrics_mod.Metrics()
        self.health: health_mod.Health | None = None

    # ------------------------------------------------------------------ one round's work

    def batch(self, docs: list[dict[str, Any]]) -> flow.Batch:
        with wiring.open_parts(self.cfg) as parts:
            if self.cfg.mode == "direct":
                if not self.dry_run:
                    for item in jobs.release_deletions(parts, self.cfg):
                        log.info("deleted recommendation %s: %s: %s", item.id, item.phase,
                                 item.message)
                result = jobs.direct_batch(parts, self.cfg, docs, dry_run=self.dry_run)
            else:
                result = jobs.gitops_batch(parts, self.cfg, docs, dry_run=self.dry_run)
        self.metrics.observe_batch(self.cfg.mode, result.items)
        self.on_batch(result)
        if self.reports_upstream:
            loop.report_upstream(self.stream_path, result.items)
        return result

    def rollbacks(self, todo: list[rollbacks.RollbackRequest]) -> None:
        """The platform's rollback requests: direct mode restores the previous values,
        GitOps mode proposes a revert pull request. A temporary failure leaves the request
        open for the next round; a refusal closes it with the reason."""
        done: list[tuple[rollbacks.RollbackRequest, results.ItemResult, bool]] = []
        with wiring.open_parts(self.cfg, engine=False) as parts:
            for req in todo:
                try:
                    item, ok = jobs.rollback(parts, self.cfg, req.id, req.kind)
                except errors.TemporaryError as e:
                    log.warning("rollback of %s: %s; trying again next round", req.id, e)
                    continue
                done.append((req, item, ok))
            # Close the requests with what came of them.
            for req, item, ok in done:
                if not ok or not item.phase or item.phase == model.PENDING:
                    rec = parts.store.get(req.kind, req.id)
                    item.phase = rec.phase if rec is not None else item.phase
                rollbacks.finish(parts.store, req, ok, item.message)
                self.metrics.rollbacks.labels("done" if ok else "refused").inc()
                log.log(logging.INFO if ok else logging.WARNING, "rollback of %s requested "
                        "by the platform: %s: %s", req.id, item.phase, item.message)
        if done and self.reports_upstream:
            loop.report_upstream(self.stream_path, [item for _, item, _ in done])

    # ------------------------------------------------------------------ the process

    def run(self) -> int:
        run = self.run_settings
        lead = run.leader
        lease_client = wiring.api_client(self.cfg.kube) if lead.enabled else None
        stop = threading.Event()
        previous: dict[signal.Signals, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, lambda *_: stop.set())
        self.cfg.state_dir.mkdir(parents=True, exist_ok=True)
        metrics = self.metrics
        self.health = (health_mod.Health(run.health_addr, metrics) if run.health_addr
                       else None)
        metrics_server = (health_mod.Health(run.metrics_addr, metrics, probes=False)
                          if run.metrics_addr and run.metrics_addr != run.health_addr
                          else None)

        def work(until: threading.Event) -> object:
            metrics.leader.set(1)
            return loop.loop(
                self.sources, lambda: wiring.open_store(self.cfg.store.uri, self.cfg.kube),
                self.stream_path, self.batch, interval=run.interval, once=run.once,
                stop=until, idle=run.idle, token_file=run.platform_token_file,
                token=run.platform_token, health=self.health, metrics=metrics,
                run_rollbacks=self.rollbacks,
                platform_data=self.platform_data)

        def standby() -> None:
            # A standby is ready: readiness gated on leadership would stall every rolling
            # update (the new pod cannot lead while the old one holds the lease).
            metrics.leader.set(0)
            if self.health is not None:
                self.health.ready.set()

        def lost() -> None:
            # The loop stops between rounds only; a round still running when a standby may
            # take over (lease duration minus renew deadline from now) must not go on
            # writing.
            metrics.leader.set(0)
            timer = threading.Timer(max(1.0, lead.lease_duration - lead.renew_deadline),
                                    lambda: os._exit(1))
            timer.daemon = True
            timer.start()

        try:
            return leader.run_as_leader(lease_client, lead, stop, work, on_standby=standby,
                                        on_lost=lost)
        finally:
            for server in (self.health, metrics_server):
                if server is not None:
                    server.close()
            if lease_client is not None:
                lease_client.close()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
