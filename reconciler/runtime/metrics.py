"""Prometheus metrics of ``reconciler run``, served on ``/metrics``.

A platform team running the operator wants to alert on three things without reading logs:
rounds that stop succeeding (``dakr_last_successful_round_timestamp_seconds`` goes stale,
``dakr_rounds_total{result="error"}`` grows), policy or API trouble (``Failed`` items,
``PolicyUnavailable`` denials), and which replica leads (``dakr_leader``). Label values are
bounded sets (sources, phases, modes, policy rule names), never recommendation ids or
workload names, so the series count stays small whatever the cluster size.

Each ``Metrics`` has its own registry (not the process-global default), so tests and
several loops in one process do not share counters.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import prometheus_client

from reconciler.domain import results

CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST
ROUND_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600)


class Metrics:
    """The operator loop's counters, gauges and round-duration histogram."""

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
            "Recommendations a batch left in each phase, by apply mode", ["mode", "phase"],
            registry=r)
        self.denials = prometheus_client.Counter(
            "dakr_policy_denials_total",
            "Deny reasons of policy decisions, by rule (PolicyUnavailable: no policy answer)",
            ["rule"], registry=r)
        self.rounds = prometheus_client.Counter(
            "dakr_rounds_total", "Rounds of the operator loop, by result (ok | error)",
            ["result"], registry=r)
        self.round_seconds = prometheus_client.Histogram(
            "dakr_round_duration_seconds", "Wall time of one round (intake and batch)",
            buckets=ROUND_BUCKETS, registry=r)
        self.last_success = prometheus_client.Gauge(
            "dakr_last_successful_round_timestamp_seconds",
            "Unix time the last round completed without error (0: none yet)", registry=r)
        self.pending = prometheus_client.Gauge(
            "dakr_pending_recommendations",
            "Recommendations the last round found still to decide", registry=r)
        self.leader = prometheus_client.Gauge(
            "dakr_leader", "1 while this replica holds the leader lease (or runs without "
            "leader election), else 0", registry=r)
        self.rollbacks = prometheus_client.Counter(
            "dakr_rollbacks_total", "Rollback requests from the platform carried out "
            "(done) or refused, by result", ["result"], registry=r)
        for result in ("ok", "error"):
            self.rounds.labels(result)  # both series exist from the start, at 0

    def observe_intake(self, by_source: dict[str, int], refused: dict[str, int]) -> None:
        for source, n in by_source.items():
            self.taken_in.labels(source).inc(n)
        for source, n in refused.items():
            self.refused.labels(source).inc(n)

    def observe_batch(self, mode: str, items: Iterable[results.ItemResult]) -> None:
        for it in items:
            self.items.labels(mode, it.phase).inc()
            dec = it.decision
            if dec is not None and not dec.allow:
                for rule in sorted({d.rule for d in dec.deny}):
                    self.denials.labels(rule).inc()

    def observe_round(self, started: float, ok: bool) -> None:
        """``started``: ``time.monotonic()`` when the round began."""
        self.round_seconds.observe(time.monotonic() - started)
        self.rounds.labels("ok" if ok else "error").inc()
        if ok:
            self.last_success.set(time.time())

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes."""
        return bytes(prometheus_client.generate_latest(self.registry))
