"""``reconciler run``'s loop of rounds over its recommendation sources.

Each round takes in what the sources have (``sources``), carries out the platform's
rollback requests (``rollbacks``), then runs one batch over everything still Pending in
the store, in GitOps or direct mode, and reports the phases up the stream.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from reconciler.adapters.store import port as store
from reconciler.domain import errors, results
from reconciler.runtime import health as health_mod
from reconciler.runtime import metrics as metrics_mod
from reconciler.runtime import rollbacks, sources
from reconciler.stream import client
from reconciler.stream import state as stream_state

log = logging.getLogger(__name__)


def report_upstream(stream_state_path: Path, items: Sequence[results.ItemResult]) -> int:
    """Queue each recommendation's new phase (and decision) for the platform; the next
    connection of the stream sends them, in order, once."""
    state = stream_state.StreamState(stream_state_path)
    try:
        for it in items:
            if not it.id:
                continue  # refused before an id could be read: nothing to report against
            dec = it.to_json().get("decision")
            client.queue_status(state, it.kind, it.id, it.phase, message=it.message,
                                pull_request_url=it.pull_request, decision=dec)
    finally:
        state.close()
    return len(items)


def loop(srcs: Sequence[sources.Source], open_store: Callable[[], store.Store],
         stream_state_path: Path,
         run_batch: Callable[[list[dict[str, Any]]], object], *, interval: float,
         once: bool, stop: threading.Event, idle: float = 2.0,
         token_file: str | None = None, token: str = "",
         health: health_mod.Health | None = None, metrics: metrics_mod.Metrics | None = None,
         run_rollbacks: Callable[[list[rollbacks.RollbackRequest]], object] | None = None,
         platform_data: Path | None = None) -> int:
    """Rounds until ``stop`` is set (or one round with ``once``); returns the rounds run.

    A round that fails with a temporary error (the platform, the API server or the Git
    remote unreachable) is counted and logged, and the loop tries again after
    ``interval``: the store holds everything taken in, so nothing is lost, and a pod that
    crash-loops on a network blip helps nobody. Any other error, and any error with
    ``once``, ends the loop (a misconfiguration should be loud).
    """
    rounds = 0
    while True:
        started = time.monotonic()
        try:
            _round(srcs, open_store, stream_state_path, run_batch, rounds + 1, idle=idle,
                   token_file=token_file, token=token, metrics=metrics,
                   run_rollbacks=run_rollbacks, platform_data=platform_data)
        except errors.TemporaryError as e:
            if metrics is not None:
                metrics.observe_round(started, ok=False)
            if once:
                raise
            log.error("round %d failed, trying again in %gs: %s", rounds + 1, interval, e)
        except BaseException:
            if metrics is not None:
                metrics.observe_round(started, ok=False)
            raise
        else:
            if metrics is not None:
                metrics.observe_round(started, ok=True)
            if health is not None:
                health.ready.set()
        rounds += 1
        if once or stop.wait(interval):
            return rounds


def _round(srcs: Sequence[sources.Source], open_store: Callable[[], store.Store],
           stream_state_path: Path, run_batch: Callable[[list[dict[str, Any]]], object],
           number: int, *, idle: float, token_file: str | None, token: str,
           metrics: metrics_mod.Metrics | None,
           run_rollbacks: Callable[[list[rollbacks.RollbackRequest]], object] | None = None,
           platform_data: Path | None = None) -> None:
    st = open_store()
    try:
        got = sources.take_in(srcs, st, stream_state_path, idle=idle, token_file=token_file,
                      token=token, accept_rollbacks=run_rollbacks is not None,
                      platform_data=platform_data)
        docs = sources.pending(st)
        todo = rollbacks.requested(st) if run_rollbacks is not None else []
    finally:
        st.close()
    if todo and run_rollbacks is not None:
        log.info("round %d: %d rollback request(s)", number, len(todo))
        run_rollbacks(todo)
    for reason in got.refused or []:
        log.warning("refused: %s", reason)
    if metrics is not None:
        metrics.observe_intake(got.by_source, got.refused_by_source)
        metrics.pending.set(len(docs))
    log.info("round %d: %d new, %d pending", number, got.taken_in, len(docs))
    if docs:
        run_batch(docs)
