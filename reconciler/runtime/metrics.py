"""Prometheus metrics of ``reconciler run``, served on ``/metrics``.

A platform team running the operator wants to alert on a few things without reading logs:
work that stops succeeding (``dakr_last_successful_reconcile_timestamp_seconds`` goes
stale, ``dakr_reconciles_total{result="error"}`` grows), a queue that does not drain
(``dakr_workqueue_depth``, retries in backoff), policy or API trouble (``Failed`` items,
``PolicyUnavailable`` denials, retries by reason), the platform stream being down
(``dakr_stream_connected``), and which replica leads (``dakr_leader``). Label values are
bounded sets (sources, phases, modes, reasons, policy rule names), never recommendation
ids or workload names, so the series count stays small whatever the cluster size.

Each ``Metrics`` has its own registry (not the process-global default), so tests and
several operators in one process do not share counters.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import prometheus_client

from reconciler.domain import results

CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST
WORK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500)


class Metrics:
    """The operator's counters, gauges and histograms."""

    def __init__(self) -> None:
        r = self.registry = prometheus_client.CollectorRegistry()
        self.taken_in = prometheus_client.Counter(
            "dakr_recommendations_taken_in_total",
            "Recommendations stored new or changed, by source kind", ["source"], registry=r)
        self.refused = prometheus_client.Counter(
            "dakr_recommendations_refused_total",
            "Recommendations refused at intake as malformed, by source kind", ["source"],
            registry=r)
        self.items = prometheus_client.Counter(
            "dakr_batch_items_total",
            "Outcomes of the operator's work on recommendations, by writer and phase",
            ["mode", "phase"], registry=r)
        self.denials = prometheus_client.Counter(
            "dakr_policy_denials_total",
            "Deny reasons of policy decisions, by rule (PolicyUnavailable: no policy answer)",
            ["rule"], registry=r)
        self.reconciles = prometheus_client.Counter(
            "dakr_reconciles_total",
            "Work-queue keys processed, by result (ok | retry | error)", ["result"],
            registry=r)
        self.work_seconds = prometheus_client.Histogram(
            "dakr_work_duration_seconds", "Time to process one work-queue key",
            buckets=WORK_BUCKETS, registry=r)
        self.retries = prometheus_client.Counter(
            "dakr_retries_total", "Temporary outcomes requeued with backoff, by reason",
            ["reason"], registry=r)
        self.depth = prometheus_client.Gauge(
            "dakr_workqueue_depth", "Keys ready to be processed", registry=r)
        self.waiting = prometheus_client.Gauge(
            "dakr_workqueue_retrying", "Keys waiting out a retry backoff", registry=r)
        self.last_success = prometheus_client.Gauge(
            "dakr_last_successful_reconcile_timestamp_seconds",
            "Unix time work on a key last completed without error (0: none yet)", registry=r)
        self.batch_size = prometheus_client.Histogram(
            "dakr_gitops_batch_recommendations",
            "Recommendations gathered into one GitOps commit and pull request",
            buckets=BATCH_BUCKETS, registry=r)
        self.relists = prometheus_client.Counter(
            "dakr_informer_lists_total",
            "Full lists of a recommendation kind (at start, and after 410 Gone)", ["kind"],
            registry=r)
        self.stream_connected = prometheus_client.Gauge(
            "dakr_stream_connected", "1 while the platform stream is open, else 0",
            registry=r)
        self.leader = prometheus_client.Gauge(
            "dakr_leader", "1 while this replica holds the leader lease (or runs without "
            "leader election), else 0", registry=r)
        self.rollbacks = prometheus_client.Counter(
            "dakr_rollbacks_total", "Rollbacks carried out (done) or refused, by result",
            ["result"], registry=r)
        for result in ("ok", "retry", "error"):
            self.reconciles.labels(result)  # every series exists from the start, at 0

    def observe_intake(self, by_source: dict[str, int], refused: dict[str, int]) -> None:
        for source, n in by_source.items():
            self.taken_in.labels(source).inc(n)
        for source, n in refused.items():
            self.refused.labels(source).inc(n)

    def observe_items(self, mode: str, items: Iterable[results.ItemResult]) -> None:
        for it in items:
            self.items.labels(mode, it.phase).inc()
            dec = it.decision
            if dec is not None and not dec.allow:
                for rule in sorted({d.rule for d in dec.deny}):
                    self.denials.labels(rule).inc()
            if it.retry:
                self.retries.labels(it.retry).inc()

    def observe_work(self, started: float, result: str) -> None:
        """``started``: ``time.monotonic()`` when the key was taken."""
        self.work_seconds.observe(time.monotonic() - started)
        self.reconciles.labels(result).inc()
        if result != "error":
            self.last_success.set(time.time())

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes."""
        return bytes(prometheus_client.generate_latest(self.registry))
