"""The operator's end of the recommendation stream.

Why it is built the way it is:

- **Nothing lost, nothing twice.** A recommendation is acked only after the store write that
  holds it has committed, and the cursor (the highest sequence handled) is persisted after
  that write, so a crash can only cause a redelivery, which the store's idempotent upsert
  (the recommendation id is the key) turns into a no-op that is acked again.
- **Dead connections are noticed.** gRPC keepalive pings catch a peer or a path that went
  away (a half-open TCP connection would otherwise block a read forever, grpc#32095); an
  application heartbeat watchdog catches a platform whose process is alive but stuck.
- **Reconnects do not hammer the platform.** Exponential backoff with jitter, the schedule
  gRPC itself uses (x1.6, +-20 %, capped), reset once a connection has delivered something.
- **Back-pressure.** Received messages wait in a bounded queue; when the store is slower
  than the network the reader blocks, gRPC's flow control stops the platform, and memory
  stays flat whatever the backlog.
- **Request iterators stay trivial.** The upstream direction is a generator that only takes
  from a queue (an exception inside a request iterator can hang the call, grpc#8454).
- **Secrets stay secret.** The bearer token (and TLS material) is re-read from disk on every
  connect, so a rotated Secret is picked up without a restart, and it is never logged.
"""

from __future__ import annotations

import contextlib
import json
import logging
import pathlib
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc

import reconciler
from reconciler.adapters.store import bulk as batch
from reconciler.adapters.store import port as store
from reconciler.config import secrets
from reconciler.domain import clock, errors, validation
from reconciler.stream import state as stream_state
from reconciler.stream.gen import stream_pb2, stream_pb2_grpc

log = logging.getLogger(__name__)

CRD_API_VERSION = "apiextensions.k8s.io/v1"
DEFAULT_ALLOWED_GROUPS = ("dakr.devzero.io",)
FIELD_MANAGER = "dakr-reconciler"


class CrdInstaller(Protocol):
    """Installs or upgrades a CustomResourceDefinition (server-side apply): the Kubernetes
    adapter (``adapters.kube.Kube``) is one.

    Raises ``errors.ReconcilerError`` when it could not; the platform is told why (a nack).
    """

    def apply_crd(self, crd: dict[str, Any], field_manager: str) -> Any: ...


RollbackHandler = Callable[[str, str, str], None]  # (kind, recommendation id, reason)
PolicyUpdateHandler = Callable[[dict[str, Any]], None]
StoredHandler = Callable[[Sequence[store.Record]], None]  # new or changed, durably stored


@dataclass(frozen=True)
class TlsFiles:
    """Paths, not bytes: they are re-read on every connect so rotated certificates apply."""

    ca: str | None = None  # None: the system's roots
    cert: str | None = None  # client certificate chain, for mutual TLS
    key: str | None = None
    server_name: str | None = None  # override the name checked in the server certificate


@dataclass(frozen=True)
class ClientConfig:
    target: str
    cluster_id: str = "default"
    operator_version: str = reconciler.__version__
    tls: TlsFiles | None = None
    token_file: str | None = None
    token: str = ""  # a fixed token (from the environment); token_file wins when set
    # A dead path is noticed within keepalive_time + keepalive_timeout; a stuck platform
    # within heartbeat_timeout.
    keepalive_time_ms: int = 10_000
    keepalive_timeout_ms: int = 5_000
    heartbeat_interval: float = 5.0
    heartbeat_timeout: float = 20.0
    backoff_initial: float = 1.0
    backoff_max: float = 120.0
    backoff_multiplier: float = 1.6
    backoff_jitter: float = 0.2
    queue_size: int = 1024
    batch_size: int = 256
    allowed_crd_groups: tuple[str, ...] = DEFAULT_ALLOWED_GROUPS
    field_manager: str = FIELD_MANAGER
    max_message_bytes: int = 16 * 1024 * 1024

    def channel_options(self) -> list[tuple[str, int]]:
        """Keepalive as grpc doc/keepalive.md asks; the server must allow this ping rate."""
        return [
            ("grpc.keepalive_time_ms", self.keepalive_time_ms),
            ("grpc.keepalive_timeout_ms", self.keepalive_timeout_ms),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),
            # Any ping (also gRPC's own flow-control probe, which can be the one in flight when
            # the path dies and then blocks the keepalive ping) must be answered as fast as a
            # keepalive ping, or a dead path goes unnoticed for the default minute.
            ("grpc.http2.ping_timeout_ms", self.keepalive_timeout_ms),
            ("grpc.max_receive_message_length", self.max_message_bytes),
            ("grpc.enable_retries", 0),  # resuming is ours to do, from our own cursor
        ]


class Backoff:
    """gRPC's connection backoff: x``multiplier`` per failure, capped, +-``jitter``."""

    def __init__(self, initial: float, maximum: float, multiplier: float = 1.6,
                 jitter: float = 0.2, rand: Callable[[], float] = random.random) -> None:
        if initial <= 0 or maximum < initial or multiplier < 1 or not 0 <= jitter < 1:
            raise errors.ConfigError(
                f"invalid backoff: initial={initial} max={maximum} x{multiplier} +-{jitter}")
        self.initial, self.maximum = initial, maximum
        self.multiplier, self.jitter = multiplier, jitter
        self._rand = rand
        self._current = initial

    def next(self) -> float:
        base = self._current
        self._current = min(self._current * self.multiplier, self.maximum)
        return base * (1 + self.jitter * (2 * self._rand() - 1))

    def reset(self) -> None:
        self._current = self.initial


@dataclass
class Stats:
    connections: int = 0
    stored: int = 0  # new or changed recommendations written
    duplicates: int = 0  # redeliveries acked without a change
    nacked: int = 0
    crds_applied: int = 0
    upstream_sent: int = 0
    disconnects: list[str] = field(default_factory=list)  # why each connection ended


def queue_status(state: stream_state.StreamState, kind: str, rec_id: str, phase: str, *,
                 message: str = "", pull_request_url: str = "",
                 decision: dict[str, Any] | None = None) -> int:
    """Put a status change in the outbox; the next connection sends it (no client needed:
    a batch that ran while no stream was open reports this way)."""
    body = stream_pb2.StatusUpdate(
        kind=kind, recommendation_id=rec_id, phase=phase, message=message,
        pull_request_url=pull_request_url, time=clock.rfc3339(),
        decision_json=json.dumps(decision, sort_keys=True) if decision is not None else "")
    return state.append("status_update", body.SerializeToString())


def queue_audit(state: stream_state.StreamState, action: str, *, kind: str = "",
                rec_id: str = "", details: dict[str, Any] | None = None) -> int:
    body = stream_pb2.AuditEvent(
        action=action, kind=kind, recommendation_id=rec_id, time=clock.rfc3339(),
        details_json=json.dumps(details or {}, sort_keys=True))
    return state.append("audit_event", body.SerializeToString())


def read_token(path: str | None) -> str:
    """The token, re-read at every connection so that a rotated Secret is picked up. A
    file that cannot be read now (mid-rotation) is a temporary failure: try again."""
    try:
        return secrets.read_token(path, "token") or ""
    except errors.ConfigError as e:
        raise errors.TemporaryError(str(e)) from e


def _read(path: str | None) -> bytes | None:
    if not path:
        return None
    try:
        return pathlib.Path(path).read_bytes()
    except OSError as e:
        raise errors.ConfigError(f"cannot read {path}: {e.strerror}") from e


def make_channel(config: ClientConfig) -> grpc.Channel:
    options: list[tuple[str, Any]] = list(config.channel_options())
    if config.tls is None:
        return grpc.insecure_channel(config.target, options=options)
    if bool(config.tls.cert) != bool(config.tls.key):
        raise errors.ConfigError("mutual TLS needs both a client certificate and its key")
    creds = grpc.ssl_channel_credentials(
        root_certificates=_read(config.tls.ca), private_key=_read(config.tls.key),
        certificate_chain=_read(config.tls.cert))
    if config.tls.server_name:
        options.append(("grpc.ssl_target_name_override", config.tls.server_name))
    return grpc.secure_channel(config.target, creds, options=options)


def _describe_rpc_error(e: grpc.RpcError) -> str:
    """The one place a gRPC failure becomes text; never includes call metadata."""
    code = e.code() if isinstance(e, grpc.Call) else None
    details = e.details() if isinstance(e, grpc.Call) else str(e)
    return f"{code.name if code else 'ERROR'}: {details}"


@dataclass(frozen=True)
class _Received:
    """A downstream message, with a recommendation already validated by the reader thread.

    Decoding and validation happen on the reader so they overlap with the store's commits
    (SQLite releases the GIL while it writes); the store thread only writes and acks.
    """

    kind: str  # the PlatformMessage body field, e.g. "recommendation"
    payload: Any  # that body
    prepared: batch.Item | stream_pb2.Nack | None = None


class _Ended:
    """Put in the inbox by the reader when the response stream ends or fails."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


_Outcome = stream_pb2.OperatorMessage
# The generated stub is untyped; this is the one place its type is stated.
_new_stub: Callable[[grpc.Channel], Any] = stream_pb2_grpc.RecommendationStreamStub


class StreamClient:
    """Connects, stores, acks; reconnects and resumes until stopped or idle."""

    def __init__(self, config: ClientConfig, st: store.Store, state: stream_state.StreamState,
                 *, crd_installer: CrdInstaller | None = None,
                 on_rollback: RollbackHandler | None = None,
                 on_policy_update: PolicyUpdateHandler | None = None,
                 on_stored: StoredHandler | None = None) -> None:
        self.config = config
        self.store = st
        self.state = state
        self.crd_installer = crd_installer
        self.on_rollback = on_rollback
        self.on_policy_update = on_policy_update
        # Told what each batch stored, once it is durable (the operator queues the work at
        # once instead of waiting for the store's watch to report it).
        self.on_stored = on_stored
        self.stats = Stats()
        self._stop = threading.Event()
        self._upstream_wakeup = threading.Event()
        self.connected = threading.Event()  # set while a stream is open (for tests, probes)
        self._last_work = time.monotonic()

    # -- upstream API (any thread) -----------------------------------------------------------

    def send_status(self, kind: str, rec_id: str, phase: str, *, message: str = "",
                    pull_request_url: str = "", decision: dict[str, Any] | None = None) -> int:
        """Queue a status change for the platform; kept on disk until the platform has it."""
        useq = queue_status(self.state, kind, rec_id, phase, message=message,
                            pull_request_url=pull_request_url, decision=decision)
        self._upstream_wakeup.set()
        return useq

    def send_audit(self, action: str, *, kind: str = "", rec_id: str = "",
                   details: dict[str, Any] | None = None) -> int:
        useq = queue_audit(self.state, action, kind=kind, rec_id=rec_id, details=details)
        self._upstream_wakeup.set()
        return useq

    # -- lifecycle -------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    @property
    def last_delivery(self) -> float:
        """``time.monotonic()`` when the platform last delivered something to handle."""
        return self._last_work

    def run(self, until_idle: float | None = None) -> Stats:
        """Serve the stream until ``stop()``, or until nothing arrived for ``until_idle`` s."""
        cfg = self.config
        backoff = Backoff(cfg.backoff_initial, cfg.backoff_max, cfg.backoff_multiplier,
                          cfg.backoff_jitter)
        self._last_work = time.monotonic()
        while not self._stop.is_set() and not self._idle(until_idle):
            delivered = False
            try:
                delivered = self._connection(until_idle)
            except errors.TemporaryError as e:
                self.stats.disconnects.append(str(e))
                log.warning("stream: %s", e)
            if delivered:
                backoff.reset()
            if self._stop.is_set() or self._idle(until_idle):
                break
            delay = backoff.next()
            if until_idle is not None:
                delay = min(delay, max(0.0, self._last_work + until_idle - time.monotonic()))
            log.info("stream: reconnecting in %.2fs", delay)
            self._stop.wait(delay)
        return self.stats

    def _idle(self, until_idle: float | None) -> bool:
        return until_idle is not None and time.monotonic() - self._last_work >= until_idle

    # -- one connection --------------------------------------------------------------------

    def _connection(self, until_idle: float | None) -> bool:
        """One stream from connect to its end; True when it delivered at least one message."""
        cfg = self.config
        token = read_token(cfg.token_file) if cfg.token_file else cfg.token
        metadata = (("authorization", f"Bearer {token}"),) if token else ()
        resume_from = self.state.cursor()
        channel = make_channel(cfg)
        outq: queue.Queue[stream_pb2.OperatorMessage | None] = queue.Queue(cfg.queue_size)
        inbox: queue.Queue[_Received | _Ended] = queue.Queue(cfg.queue_size)
        closed = threading.Event()
        last_received = [time.monotonic()]
        delivered = False
        outq.put(stream_pb2.OperatorMessage(hello=stream_pb2.Hello(
            cluster_id=cfg.cluster_id, operator_version=cfg.operator_version,
            resume_from=resume_from)))

        def requests() -> Iterator[stream_pb2.OperatorMessage]:
            while True:
                item = outq.get()
                if item is None:
                    return
                yield item

        stub = _new_stub(channel)
        call = stub.Connect(requests(), metadata=metadata)
        self.stats.connections += 1
        log.info("stream: connecting to %s, resuming after sequence %d", cfg.target, resume_from)

        def read() -> None:
            reason = "the platform closed the stream"
            try:
                for msg in call:
                    last_received[0] = time.monotonic()
                    self.connected.set()  # the platform answered: the stream is up
                    for item in self._unpack(msg):
                        while not closed.is_set():
                            try:
                                inbox.put(item, timeout=0.1)
                                break
                            except queue.Full:
                                continue  # back-pressure: the store is behind
                        if closed.is_set():
                            return
            except grpc.RpcError as e:
                reason = _describe_rpc_error(e)
            while not closed.is_set():
                try:
                    inbox.put(_Ended(reason), timeout=0.1)
                    return
                except queue.Full:
                    continue

        reader = threading.Thread(target=read, name="stream-reader", daemon=True)
        reader.start()

        def alive() -> bool:
            # Unprocessed messages mean we are behind, not that the platform went quiet.
            return (time.monotonic() - last_received[0] < cfg.heartbeat_timeout
                    or not inbox.empty())

        def send(msg: stream_pb2.OperatorMessage) -> bool:
            while alive() and not closed.is_set():
                try:
                    outq.put(msg, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        upstream_sent_upto = 0
        last_heartbeat = last_pump = 0.0
        reason = ""
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if not alive():
                    reason = (f"no message from the platform for {cfg.heartbeat_timeout:g}s "
                              "(heartbeat watchdog)")
                    break
                if self._idle(until_idle):
                    reason = "idle"
                    break
                if now - last_heartbeat >= cfg.heartbeat_interval:
                    last_heartbeat = now
                    hb = stream_pb2.Heartbeat(unix_millis=int(time.time() * 1000))
                    if not send(stream_pb2.OperatorMessage(heartbeat=hb)):
                        continue
                if self._upstream_wakeup.is_set() or now - last_pump >= 1.0:
                    last_pump = now
                    upstream_sent_upto = self._pump_upstream(upstream_sent_upto, send)
                items = self._take(inbox)
                if not items:
                    continue
                ended = next((i for i in items if isinstance(i, _Ended)), None)
                if ended is not None:
                    reason = ended.reason
                    break  # what came with it is redelivered: the cursor did not move
                msgs = [i for i in items if isinstance(i, _Received)]
                replies = self._handle(msgs)
                if any(m.kind != "upstream_ack" for m in msgs):
                    delivered = True
                    self._last_work = time.monotonic()
                    self.connected.set()
                for reply in replies:
                    if not send(reply):
                        break
        finally:
            closed.set()
            self.connected.clear()
            while True:  # end the request generator even if the queue is full
                try:
                    outq.put_nowait(None)
                    break
                except queue.Full:
                    with contextlib.suppress(queue.Empty):
                        outq.get_nowait()
            call.cancel()
            channel.close()
            reader.join(timeout=5)
        if self._stop.is_set():
            reason = reason or "stopped"
        self.stats.disconnects.append(reason)
        if reason not in ("idle", "stopped"):
            log.warning("stream: disconnected: %s", reason)
        return delivered

    def _unpack(self, msg: stream_pb2.PlatformMessage) -> list[_Received]:
        """Split a message into its items, validating recommendations on the way."""
        body = msg.WhichOneof("body")
        if body == "recommendation_batch":
            return [_Received("recommendation", r, self._validate(r))
                    for r in msg.recommendation_batch.recommendations]
        if body == "recommendation":
            return [_Received(body, msg.recommendation, self._validate(msg.recommendation))]
        if body is None or body == "heartbeat":
            return []
        return [_Received(body, getattr(msg, body))]

    def _take(self, inbox: queue.Queue[_Received | _Ended]) -> list[_Received | _Ended]:
        """Up to ``batch_size`` queued messages; waits briefly for the first one."""
        wait = 0.0 if self._upstream_wakeup.is_set() else min(0.05, self.config.heartbeat_interval)
        try:
            first = inbox.get(timeout=wait) if wait else inbox.get_nowait()
        except queue.Empty:
            return []
        items = [first]
        while len(items) < self.config.batch_size and not isinstance(items[-1], _Ended):
            try:
                items.append(inbox.get_nowait())
            except queue.Empty:
                break
        return items

    def _pump_upstream(self, sent_upto: int,
                       send: Callable[[stream_pb2.OperatorMessage], bool]) -> int:
        """Send outbox entries not yet sent on this connection, in order."""
        self._upstream_wakeup.clear()
        for useq, body_kind, body in self.state.pending(sent_upto):
            if body_kind == "status_update":
                su = stream_pb2.StatusUpdate.FromString(body)
                su.upstream_sequence = useq
                msg = stream_pb2.OperatorMessage(status_update=su)
            else:
                ae = stream_pb2.AuditEvent.FromString(body)
                ae.upstream_sequence = useq
                msg = stream_pb2.OperatorMessage(audit_event=ae)
            if not send(msg):
                return sent_upto
            sent_upto = useq
            self.stats.upstream_sent += 1
        return sent_upto

    # -- handling downstream messages ------------------------------------------------------

    def _handle(self, received: Sequence[_Received]) -> list[_Outcome]:
        """Store / apply a batch; the replies to send, in sequence order.

        Replies are produced only after the writes they report on are durable, and the
        cursor moves only after that too.
        """
        # (sequence, arrival order) -> reply: a message delivered twice in one batch gets
        # two replies, the first a plain ack and the second a duplicate's.
        replies: dict[tuple[int, int], stream_pb2.Ack | stream_pb2.Nack] = {}
        to_store: list[tuple[tuple[int, int], batch.Item]] = []
        highest = 0
        for n, rcv in enumerate(received):
            m = rcv.payload
            if rcv.kind == "upstream_ack":
                self.state.confirm(m.upstream_sequence)
                continue
            highest = max(highest, m.sequence)
            key = (m.sequence, n)
            if rcv.kind == "recommendation":
                prepared = rcv.prepared if rcv.prepared is not None else self._validate(m)
                if isinstance(prepared, batch.Item):
                    to_store.append((key, prepared))
                else:
                    replies[key] = prepared
            elif rcv.kind == "crd_update":
                replies[key] = self._crd(m)
            elif rcv.kind == "rollback_request":
                replies[key] = self._rollback(m)
            elif rcv.kind == "policy_update":
                replies[key] = self._policy(m)
        for key, result in zip([k for k, _ in to_store], self._store(to_store), strict=True):
            replies[key] = result
        if highest:
            self.state.advance(highest)
        ordered = [replies[k] for k in sorted(replies)]
        acks = [r for r in ordered if isinstance(r, stream_pb2.Ack)]
        nacks = [r for r in ordered if isinstance(r, stream_pb2.Nack)]
        self.stats.nacked += len(nacks)
        if not ordered:
            return []
        return [stream_pb2.OperatorMessage(replies=stream_pb2.Replies(acks=acks, nacks=nacks))]

    def _validate(self, r: stream_pb2.Recommendation) -> batch.Item | stream_pb2.Nack:
        try:
            return self._validate_unguarded(r)
        except Exception as e:
            # A message that trips a bug must not kill the reader and come back forever
            # after each reconnect: it is refused like any other bad message.
            log.exception("stream: validating message %d failed", r.sequence)
            return _nack(r.sequence, r.id, [errors.FieldError(
                "(document)", f"could not be validated: {type(e).__name__}")])

    def _validate_unguarded(self, r: stream_pb2.Recommendation) -> batch.Item | stream_pb2.Nack:
        try:
            doc = json.loads(r.document_json)
        except RecursionError:
            return _nack(r.sequence, r.id, [errors.FieldError("document_json",
                                                              "is nested too deeply")])
        except ValueError as e:
            return _nack(r.sequence, r.id, [errors.FieldError(
                "document_json", f"is not valid JSON: {e}")])
        try:
            rec = validation.parse(doc)
        except errors.ValidationError as e:
            return _nack(r.sequence, r.id or validation.raw_id(doc), e.errors)
        if r.id and r.id != rec.id:
            return _nack(r.sequence, r.id, [errors.FieldError(
                "spec.recommendationId",
                f"{rec.id!r} does not match the message id {r.id!r}")])
        return batch.Item.of(rec)

    def _store(self, pairs: list[tuple[tuple[int, int], batch.Item]]
               ) -> list[stream_pb2.Ack | stream_pb2.Nack]:
        if not pairs:
            return []
        try:
            results = batch.upsert_many(self.store, [i for _, i in pairs])
        except errors.TemporaryError:
            raise  # nothing acked, the cursor did not move: redelivered after reconnecting
        except errors.PermanentError as e:
            if len(pairs) == 1:
                (seq, _), item = pairs[0]
                return [_nack(seq, item.id, [errors.FieldError("(store)", str(e))])]
            # One unstorable item must not sink the batch: find it by storing one at a time.
            return [o for pair in pairs for o in self._store([pair])]
        out: list[stream_pb2.Ack | stream_pb2.Nack] = []
        for ((seq, _), item), res in zip(pairs, results, strict=True):
            if res.changed:
                self.stats.stored += 1
            else:
                self.stats.duplicates += 1
            out.append(_ack(seq, item.id, duplicate=not res.changed))
        if self.on_stored is not None:
            changed = [r.record for r in results if r.changed]
            if changed:
                try:
                    self.on_stored(changed)
                except Exception:  # the acks stand: the records are stored
                    log.exception("stream: on_stored failed")
        return out

    def _crd(self, m: stream_pb2.CrdUpdate) -> stream_pb2.Ack | stream_pb2.Nack:
        try:
            crd = json.loads(m.crd_json)
        except ValueError as e:
            return _nack(m.sequence, m.id, [errors.FieldError("crd_json", f"is not JSON: {e}")])
        problems = check_crd(crd, self.config.allowed_crd_groups)
        if problems:
            return _nack(m.sequence, m.id, problems)
        if self.crd_installer is None:
            return _nack(m.sequence, m.id, [errors.FieldError(
                "(message)", "this operator has no Kubernetes API to install CRDs through")])
        try:
            self.crd_installer.apply_crd(crd, self.config.field_manager)
        except errors.ReconcilerError as e:
            return _nack(m.sequence, m.id, [errors.FieldError("(apply)", str(e))])
        self.stats.crds_applied += 1
        return _ack(m.sequence, m.id)

    def _rollback(self, m: stream_pb2.RollbackRequest) -> stream_pb2.Ack | stream_pb2.Nack:
        if self.on_rollback is None:
            return _nack(m.sequence, m.id, [errors.FieldError(
                "(message)", "rollback is not handled by this operator configuration")])
        try:
            self.on_rollback(m.kind, m.recommendation_id, m.reason)
        except errors.ReconcilerError as e:
            return _nack(m.sequence, m.id, [errors.FieldError("(rollback)", str(e))])
        return _ack(m.sequence, m.id)

    def _policy(self, m: stream_pb2.PolicyUpdate) -> stream_pb2.Ack | stream_pb2.Nack:
        try:
            data = json.loads(m.data_json)
        except ValueError as e:
            return _nack(m.sequence, m.id, [errors.FieldError("data_json", f"is not JSON: {e}")])
        if not isinstance(data, dict):
            return _nack(m.sequence, m.id, [errors.FieldError("data_json",
                                                              "must be a JSON object")])
        if self.on_policy_update is None:
            return _nack(m.sequence, m.id, [errors.FieldError(
                "(message)", "policy data updates are not handled by this configuration")])
        try:
            self.on_policy_update(data)
        except errors.ReconcilerError as e:
            return _nack(m.sequence, m.id, [errors.FieldError("(policy)", str(e))])
        return _ack(m.sequence, m.id)


def _ack(sequence: int, rec_id: str, duplicate: bool = False) -> stream_pb2.Ack:
    return stream_pb2.Ack(sequence=sequence, id=rec_id, duplicate=duplicate)


def _nack(sequence: int, rec_id: str, problems: Sequence[errors.FieldError]) -> stream_pb2.Nack:
    return stream_pb2.Nack(
        sequence=sequence, id=rec_id, reason="; ".join(str(p) for p in problems),
        violations=[stream_pb2.FieldViolation(field=p.field, reason=p.reason)
                    for p in problems])


def check_crd(crd: object, allowed_groups: Sequence[str]) -> list[errors.FieldError]:
    """Why this CRD must not be installed; empty when it may be.

    The allow-list is what keeps a compromised or confused platform from redefining
    arbitrary APIs in the cluster.
    """
    if not isinstance(crd, dict):
        return [errors.FieldError("(document)", "must be a JSON object")]
    out: list[errors.FieldError] = []
    if crd.get("apiVersion") != CRD_API_VERSION:
        out.append(errors.FieldError("apiVersion", f"must be {CRD_API_VERSION!r}, "
                                     f"got {crd.get('apiVersion')!r}"))
    if crd.get("kind") != "CustomResourceDefinition":
        out.append(errors.FieldError("kind", f"must be 'CustomResourceDefinition', "
                                     f"got {crd.get('kind')!r}"))
    spec = crd.get("spec")
    group = spec.get("group") if isinstance(spec, dict) else None
    if not isinstance(group, str) or not group:
        out.append(errors.FieldError("spec.group", "is required"))
    elif group not in allowed_groups:
        out.append(errors.FieldError("spec.group", f"{group!r} is not in the allowed groups "
                                     f"({', '.join(allowed_groups) or 'none'})"))
    meta = crd.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    if isinstance(spec, dict) and isinstance(group, str) and group:
        names = spec.get("names")
        plural = names.get("plural") if isinstance(names, dict) else None
        if name != f"{plural}.{group}":
            out.append(errors.FieldError(
                "metadata.name", f"must be '<spec.names.plural>.<spec.group>', got {name!r}"))
    return out
