"""``reconciler run``: the operator's loop over its recommendation sources.

Each round takes in what the sources have (the platform's gRPC stream until it is idle,
files, VPA objects, KRR reports), then runs one batch over everything still Pending in the
store, in GitOps or direct mode. The store is the hand-over point: the stream acks a
recommendation once it is stored, and the batch picks it up from there, so a crash
between the two loses nothing.
"""

from __future__ import annotations

import http.server
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler.adapters import files, importers
from reconciler.adapters.opa import platform_data as policy_data
from reconciler.adapters.store import port as store
from reconciler.domain import errors, model, results, validation
from reconciler.gitops import pipeline
from reconciler.runtime import metrics as metrics_mod
from reconciler.stream import batch, client
from reconciler.stream import state as stream_state

log = logging.getLogger(__name__)

SOURCE_KINDS = ("platform", "file", "vpa", "krr")


@dataclass(frozen=True)
class Source:
    kind: str    # platform | file | vpa | krr
    where: str   # HOST:PORT or a path

    @classmethod
    def parse(cls, text: str) -> Source:
        kind, sep, where = text.partition(":")
        if not sep or kind not in SOURCE_KINDS or not where:
            raise errors.ConfigError(
                f"--source {text!r}: expected one of platform:HOST:PORT, file:PATH, "
                "vpa:PATH, krr:PATH")
        return cls(kind, where)


@dataclass
class Round:
    taken_in: int = 0
    refused: list[str] | None = None
    by_source: dict[str, int] = field(default_factory=dict)  # taken in, per source kind
    refused_by_source: dict[str, int] = field(default_factory=dict)


def take_in(sources: Sequence[Source], st: store.Store, stream_state_path: Path, *,
            idle: float = 2.0, token_file: str | None = None, token: str = "",
            rollbacks: bool = False, platform_data: Path | None = None) -> Round:
    """Bring every source's recommendations into the store (idempotent by id).

    ``rollbacks``: accept the platform's rollback requests (recorded on the
    recommendation, acked once stored, carried out by the round); without it they are
    refused (nacked), as by an operator that cannot roll back. ``platform_data``: where the
    platform's policy parameters are kept (``reconciler/policy_data.py``); without it
    they are refused.
    """
    out = Round(refused=[])
    for src in sources:
        if src.kind == "platform":
            state = stream_state.StreamState(stream_state_path)
            try:
                cfg = client.ClientConfig(target=src.where, token_file=token_file, token=token)

                def on_rollback(kind: str, rec_id: str, reason: str) -> None:
                    request_rollback(st, kind, rec_id, reason)

                def on_policy_update(data: dict[str, Any]) -> None:
                    assert platform_data is not None
                    policy_data.update(platform_data, data)

                stats = client.StreamClient(
                    cfg, st, state, on_rollback=on_rollback if rollbacks else None,
                    on_policy_update=on_policy_update if platform_data is not None else None,
                ).run(until_idle=idle)
            finally:
                state.close()
            out.taken_in += stats.stored
            out.by_source[src.kind] = out.by_source.get(src.kind, 0) + stats.stored
            continue
        docs: list[Any]
        if src.kind == "file":
            docs = files.load_documents(src.where)
        else:
            result = importers.load(src.kind, src.where)
            docs = list(result.documents)
            for s in result.skipped:
                log.warning("%s: skipped %s: %s", src.where, s.source, s.reason)
        items: list[batch.Item] = []
        for p in validation.parse_many(docs):
            if p.recommendation is None:
                assert out.refused is not None
                out.refused.append(f"{p.raw_id or f'item {p.index}'}: "
                                   + "; ".join(str(e) for e in p.errors))
                out.refused_by_source[src.kind] = out.refused_by_source.get(src.kind, 0) + 1
                continue
            r = p.recommendation
            items.append(batch.Item(r.kind, r.id, r.namespace, r.name, r.spec_dict()))
        n = sum(1 for u in batch.upsert_many(st, items) if u.changed)
        out.taken_in += n
        out.by_source[src.kind] = out.by_source.get(src.kind, 0) + n
    return out


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


ROLLBACK_REQUESTED = "RollbackRequested"


@dataclass(frozen=True)
class RollbackRequest:
    kind: str
    id: str
    reason: str


def _set_condition(st: store.Store, kind: str, rec_id: str, ok: bool, reason: str,
                   message: str) -> None:
    """Set the RollbackRequested condition on a stored recommendation (CAS, retried)."""
    cond = pipeline.condition(ROLLBACK_REQUESTED, ok, reason, message,
                              pipeline.now_rfc3339()).to_dict()
    for _ in range(5):
        rec = st.get(kind, rec_id)
        if rec is None:
            raise errors.NotFoundError(f"{kind} {rec_id} is not known to this operator")
        status = dict(rec.status)
        conds = [c for c in status.get("conditions") or [] if c.get("type") != ROLLBACK_REQUESTED]
        conds.append(cond)
        status["conditions"] = conds
        try:
            st.update_status(kind, rec_id, status, rec.resource_version)
            return
        except errors.ConflictError:
            continue
    raise errors.ConflictError(f"{kind} {rec_id} keeps changing: rollback request not recorded")


def request_rollback(st: store.Store, kind: str, rec_id: str, reason: str) -> None:
    """Record the platform's rollback request on the recommendation; the stream acks it once
    this returns (stored durably), and the next round carries it out. Unknown ids raise,
    which the stream turns into a nack naming the reason."""
    kind = kind or model.WORKLOAD
    if kind not in model.KINDS:
        raise errors.PermanentError(f"unknown recommendation kind {kind!r}")
    _set_condition(st, kind, rec_id, True, "PlatformRequest",
                   reason or "rollback requested by the platform")


def requested_rollbacks(st: store.Store) -> list[RollbackRequest]:
    """Rollback requests recorded and not yet carried out, oldest recommendation first."""
    out: list[RollbackRequest] = []
    for kind in model.KINDS:
        for r in st.list(kind=kind):
            for c in r.status.get("conditions") or []:
                if c.get("type") == ROLLBACK_REQUESTED and c.get("status") == "True":
                    out.append(RollbackRequest(r.kind, r.id, str(c.get("message", ""))))
    return out


def finish_rollback(st: store.Store, req: RollbackRequest, done: bool, message: str) -> None:
    """Close a request with what came of it: ``done`` (rolled back, a revert proposed, or
    nothing to roll back) or refused, with the reason; either way it is not tried again."""
    _set_condition(st, req.kind, req.id, False, "Done" if done else "Refused", message)


def pending(st: store.Store) -> list[dict[str, Any]]:
    """Everything the batch still has to decide, in custom-resource form: new records, and
    records whose spec changed since a batch last looked at them (a newer generation)."""
    return [r.to_document() for kind in model.KINDS for r in st.list(kind=kind)
            if r.phase == model.PENDING or not r.observed]


class Health:
    """``/healthz`` (the process serves) and ``/readyz`` (a first round has completed) for
    the kubelet's probes, and ``/metrics`` when given ``metrics``, on a small HTTP server
    thread. ``probes=False`` serves ``/metrics`` alone (the chart's separate metrics port).
    """

    def __init__(self, addr: str, metrics: metrics_mod.Metrics | None = None, *,
                 probes: bool = True) -> None:
        host, _, port = addr.rpartition(":")
        self.ready = threading.Event()
        ready = self.ready

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                ctype = "text/plain"
                if path == "/metrics" and metrics is not None:
                    code, body, ctype = 200, metrics.exposition(), metrics_mod.CONTENT_TYPE
                elif probes and path == "/healthz":
                    code, body = 200, b"ok\n"
                elif probes and path == "/readyz":
                    code, body = (200, b"ok\n") if ready.is_set() else (503, b"not ready\n")
                else:
                    code, body = 404, b"not found\n"
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        self._httpd = http.server.ThreadingHTTPServer((host or "0.0.0.0", int(port)), Handler)
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True,
                                        name="health")
        self._thread.start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)


def loop(sources: Sequence[Source], open_store: Callable[[], store.Store],
         stream_state_path: Path,
         run_batch: Callable[[list[dict[str, Any]]], object], *, interval: float,
         once: bool, stop: threading.Event, idle: float = 2.0,
         token_file: str | None = None, token: str = "",
         health: Health | None = None, metrics: metrics_mod.Metrics | None = None,
         run_rollbacks: Callable[[list[RollbackRequest]], object] | None = None,
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
            _round(sources, open_store, stream_state_path, run_batch, rounds + 1, idle=idle,
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


def _round(sources: Sequence[Source], open_store: Callable[[], store.Store],
           stream_state_path: Path, run_batch: Callable[[list[dict[str, Any]]], object],
           number: int, *, idle: float, token_file: str | None, token: str,
           metrics: metrics_mod.Metrics | None,
           run_rollbacks: Callable[[list[RollbackRequest]], object] | None = None,
           platform_data: Path | None = None) -> None:
    st = open_store()
    try:
        got = take_in(sources, st, stream_state_path, idle=idle, token_file=token_file,
                      token=token, rollbacks=run_rollbacks is not None,
                      platform_data=platform_data)
        docs = pending(st)
        todo = requested_rollbacks(st) if run_rollbacks is not None else []
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
