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
import math
import pathlib
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
from google.protobuf.descriptor import FieldDescriptor

import reconciler
from reconciler.adapters.store import bulk as batch
from reconciler.adapters.store import port as store
from reconciler.config import secrets
from reconciler.domain import clock, errors, validation
from reconciler.domain import limits as limits_mod
from reconciler.domain import text as txt
from reconciler.stream import state as stream_state
from reconciler.stream.gen import stream_pb2
from reconciler.yamledit import bounded

log = logging.getLogger(__name__)

CRD_API_VERSION = "apiextensions.k8s.io/v1"
# Sequences are uint64 on the wire; the cursor is a SQLite INTEGER (signed 64 bits).
MAX_SEQUENCE = 2**63 - 1
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
    # What one message's JSON may make us build (depth, aliases, strings): a breach is a
    # nack naming the field and the limit, and the stream goes on.
    limits: limits_mod.InputLimits = field(default_factory=limits_mod.InputLimits)

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
            # Reconnecting is ours too (``Backoff``): each connection gets a fresh channel,
            # but by default gRPC shares subchannels between channels with the same target
            # and options, and with them its own connect backoff (1 s growing to 120 s). After
            # the platform came back, a new channel could wait out that hidden backoff
            # instead of ours (seen as a 10 s stall under load in the outage test).
            ("grpc.use_local_subchannel_pool", 1),
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


@dataclass(frozen=True)
class _Garbled:
    """A downstream message protobuf refused to parse, as far as it could be read.

    One part per item it carries (the body, or each recommendation of a batch): the item's
    body field, the item, and what is wrong with it. An item that parses on its own has no
    problem and is handled as usual; one that does not carries only its sequence and id,
    read from the wire, and is refused.
    """

    parts: tuple[tuple[str, Any, tuple[errors.FieldError, ...]], ...]


_Outcome = stream_pb2.OperatorMessage
_SERVICE = stream_pb2.DESCRIPTOR.services_by_name["RecommendationStream"]
CONNECT_METHOD = f"/{_SERVICE.full_name}/{_SERVICE.methods_by_name['Connect'].name}"


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

        # Not the generated stub: its deserializer raises on a message protobuf refuses,
        # which fails the whole call, and the platform would send that message again after
        # every reconnect, forever. This one turns it into something to nack.
        connect = channel.stream_stream(
            CONNECT_METHOD, request_serializer=stream_pb2.OperatorMessage.SerializeToString,
            response_deserializer=read_platform_message)
        call = connect(requests(), metadata=metadata)
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
            except Exception as e:  # a bug: end this connection now, not at the watchdog
                log.exception("stream: reading the stream failed")
                reason = f"internal error reading the stream: {type(e).__name__}"
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
                msgs = [i for i in items if isinstance(i, _Received)]
                # What arrived before the end is handled too: dropping it would have the
                # platform send it again, and a platform that always ends its streams after
                # N messages would send the same N forever. Its replies are lost with the
                # stream; the next Hello's resume_from tells the platform instead.
                replies = self._handle(msgs)
                if any(m.kind != "upstream_ack" for m in msgs):
                    delivered = True
                    self._last_work = time.monotonic()
                    if ended is None:
                        self.connected.set()
                if ended is not None:
                    reason = ended.reason
                    break
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

    def _unpack(self, msg: stream_pb2.PlatformMessage | _Garbled) -> list[_Received]:
        """Split a message into its items, validating recommendations on the way; what
        protobuf could not parse comes already refused."""
        parts: Sequence[tuple[str, Any, Sequence[errors.FieldError]]]
        if isinstance(msg, _Garbled):
            parts = msg.parts
        else:
            body = msg.WhichOneof("body")
            if body is None or body == "heartbeat":
                return []
            if body == "recommendation_batch":
                parts = [("recommendation", r, ())
                         for r in msg.recommendation_batch.recommendations]
            else:
                parts = [(body, getattr(msg, body), ())]
        out = []
        for kind, m, problems in parts:
            prepared: batch.Item | stream_pb2.Nack | None = None
            if problems:
                log.warning("stream: message %d could not be parsed, refused: %s", m.sequence,
                            txt.one_line("; ".join(str(p) for p in problems)))
                prepared = _nack(m.sequence, m.id, problems)
            elif kind == "recommendation":
                prepared = self._validate(m)
            out.append(_Received(kind, m, prepared))
        return out

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

        def flush() -> None:
            for k, result in zip([k for k, _ in to_store], self._store(to_store), strict=True):
                replies[k] = result
            to_store.clear()

        for n, rcv in enumerate(received):
            m = rcv.payload
            if rcv.kind == "upstream_ack":
                # Our upstream sequences are SQLite rowids, never above MAX_SEQUENCE: a
                # higher confirmation confirms them all (and SQLite could not bind it).
                self.state.confirm(min(m.upstream_sequence, MAX_SEQUENCE))
                continue
            key = (m.sequence, n)
            if m.sequence > MAX_SEQUENCE:
                # The cursor could not record it (an OverflowError here once ended the
                # stream): refused, nothing applied, and the cursor stays where it was.
                replies[key] = _nack(m.sequence, m.id, [errors.FieldError(
                    "sequence", f"{m.sequence} is above {MAX_SEQUENCE}, the highest "
                    "sequence this operator can record")])
                continue
            highest = max(highest, m.sequence)
            if rcv.kind == "rollback_request":
                # It may name a recommendation that came earlier in this batch: store those
                # first, or it would be refused as unknown (and acked when redelivered).
                flush()
            try:
                answer = self._answer(rcv)
            except Exception as e:
                # One bad message never stops the stream: escaping here, an error would end
                # the stream thread (or the connection, and the message would come back
                # after every reconnect). Refused, and the stream goes on.
                answer = _internal_error(rcv, e)
            if isinstance(answer, batch.Item):
                to_store.append((key, answer))
            elif answer is not None:
                replies[key] = answer
        flush()
        if highest:
            self.state.advance(highest)
        ordered = [replies[k] for k in sorted(replies)]
        acks = [r for r in ordered if isinstance(r, stream_pb2.Ack)]
        nacks = [r for r in ordered if isinstance(r, stream_pb2.Nack)]
        self.stats.nacked += len(nacks)
        if not ordered:
            return []
        return [stream_pb2.OperatorMessage(replies=stream_pb2.Replies(acks=acks, nacks=nacks))]

    def _answer(self, rcv: _Received) -> batch.Item | stream_pb2.Ack | stream_pb2.Nack | None:
        """The reply to one message (a recommendation: what to store); applies the rest."""
        m = rcv.payload
        if rcv.prepared is not None:
            return rcv.prepared
        if rcv.kind == "recommendation":
            return self._validate(m)
        if rcv.kind == "crd_update":
            return self._crd(m)
        if rcv.kind == "rollback_request":
            return self._rollback(m)
        if rcv.kind == "policy_update":
            return self._policy(m)
        return None

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
        doc, bad = self._json(r.document_json, "document_json", r.sequence)
        if bad is not None:
            return _nack(r.sequence, r.id, [bad])
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

    def _json(self, text: str, field: str, sequence: int
              ) -> tuple[Any, errors.FieldError | None]:
        """A message's JSON field read within the input limits: its value, or the field
        error to nack it with (a breach names the limit, bad JSON says where)."""
        try:
            return bounded.load_json(text, self.config.limits, f"message {sequence}"), None
        except errors.InputLimitError as e:
            return None, errors.FieldError(field, str(e))
        except ValueError as e:
            return None, errors.FieldError(field, f"is not valid JSON: {e}")

    def _crd(self, m: stream_pb2.CrdUpdate) -> stream_pb2.Ack | stream_pb2.Nack:
        crd, bad = self._json(m.crd_json, "crd_json", m.sequence)
        if bad is not None:
            return _nack(m.sequence, m.id, [bad])
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
        data, bad = self._json(m.data_json, "data_json", m.sequence)
        if bad is not None:
            return _nack(m.sequence, m.id, [bad])
        if not isinstance(data, dict):
            return _nack(m.sequence, m.id, [errors.FieldError("data_json",
                                                              "must be a JSON object")])
        depth = _depth(data)
        if depth >= self.config.limits.depth:
            # Stored, the update sits one level deeper, under its root in the policy data
            # (adapters.opa.platform_data: data.platform), and the policy engine reads it
            # back within these same limits (wiring): at the limit here, it would be acked
            # and then refuse to load, leaving no policy set at the engine's next load.
            return _nack(m.sequence, m.id, [errors.FieldError("data_json", str(
                self.config.limits.breach("depth", f"nesting {depth} levels deep, "
                                          f"{depth + 1} once stored in the policy data",
                                          f"message {m.sequence}")))])
        where = _non_finite(data)
        if where is not None:
            # Python reads NaN, Infinity and 1e999; OPA does not: stored, they would stop
            # the policy engine from loading the platform data at its next (re)load.
            return _nack(m.sequence, m.id, [errors.FieldError(
                "data_json", f"{where} is not a finite number (NaN and infinities are not "
                "JSON, and OPA cannot load them)")])
        if self.on_policy_update is None:
            return _nack(m.sequence, m.id, [errors.FieldError(
                "(message)", "policy data updates are not handled by this configuration")])
        try:
            self.on_policy_update(data)
        except errors.ReconcilerError as e:
            return _nack(m.sequence, m.id, [errors.FieldError("(policy)", str(e))])
        return _ack(m.sequence, m.id)


def _internal_error(rcv: _Received, e: Exception) -> stream_pb2.Nack:
    m = rcv.payload
    log.error("stream: handling message %d (%s) failed, refused: %s", m.sequence, rcv.kind,
              txt.one_line(f"{type(e).__name__}: {txt.said(e)}"))
    log.debug("stream: how handling message %d failed", m.sequence, exc_info=e)
    return _nack(m.sequence, m.id, [errors.FieldError(
        "(message)", f"internal error: {type(e).__name__}: {txt.said(e)}")])


# -- reading what protobuf refuses ---------------------------------------------------------
#
# Protobuf refuses a whole message for one string field that is not UTF-8 (or any wire
# damage), and gRPC then fails the whole call: the platform would send that message again
# after every reconnect and nothing after it would ever be handled. What can still be read
# (which item it is, its sequence and id) is enough to refuse it and move on.

_ANSWERED = ("recommendation", "crd_update", "rollback_request", "policy_update")
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
_UINT64 = 2**64 - 1
_UNSIGNED = {FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_UINT32}  # what sequences are
_Part = tuple[str, Any, tuple[errors.FieldError, ...]]


def read_platform_message(raw: bytes) -> stream_pb2.PlatformMessage | _Garbled:
    """The stream's response deserializer: a PlatformMessage, or what could be read of one
    protobuf refuses. Never raises (gRPC would fail the call)."""
    try:
        return stream_pb2.PlatformMessage.FromString(raw)
    except Exception as e:  # protobuf's DecodeError; anything else must not end the call
        problem = str(e)
    try:
        parts = _salvage(raw)
    except Exception:  # a bug here: the message is lost, the stream is not
        log.exception("stream: reading a message protobuf refused failed, skipped")
        parts = ()
    if not parts:
        log.warning("stream: skipped a message that could not be parsed and has no "
                    "readable sequence to refuse it by (%d bytes): %s", len(raw),
                    txt.one_line(problem))
    return _Garbled(parts)


def _salvage(raw: bytes) -> tuple[_Part, ...]:
    """The items of an unparsable PlatformMessage that have a sequence to answer."""
    body: Any = None  # the oneof member the message carries (its FieldDescriptor)
    chunks: list[bytes] = []
    for number, _, value in _wire_fields(raw):
        f = stream_pb2.PlatformMessage.DESCRIPTOR.fields_by_number.get(number)
        if f is None or f.message_type is None or not isinstance(value, bytes):
            continue
        if f is not body:  # a later member of the oneof replaces an earlier one
            body, chunks = f, []
        chunks.append(value)  # a message field seen twice merges: as if concatenated
    if body is None:
        return ()
    data = b"".join(chunks)
    if body.name == "recommendation_batch":
        listed = body.message_type.fields_by_name["recommendations"]
        kind, item_type = "recommendation", listed.message_type
        items = [v for n, _, v in _wire_fields(data)
                 if n == listed.number and isinstance(v, bytes)]
    else:
        kind, item_type, items = body.name, body.message_type, [data]
    if kind not in _ANSWERED:
        return ()
    cls = getattr(stream_pb2, item_type.name)
    parts: list[_Part] = []
    for item in items:
        try:
            parts.append((kind, cls.FromString(item), ()))
            continue
        except Exception as e:
            problem = str(e)
        values, not_utf8 = _scalars(item, item_type)
        if "sequence" not in values:
            continue
        problems = tuple(errors.FieldError(name, "is not valid UTF-8 (protobuf strings "
                                           "must be)") for name in not_utf8) or (
            errors.FieldError("(message)", f"could not be parsed: {problem}"),)
        parts.append((kind, cls(sequence=values["sequence"], id=values.get("id", "")),
                      problems))
    return tuple(parts)


def _scalars(data: bytes, descriptor: Any) -> tuple[dict[str, Any], list[str]]:
    """The string and unsigned integer fields of a message that can be read from its wire
    bytes (strings decoded with replacement characters), and the names of the strings
    that are not UTF-8. Anything else is left unread: only the item's sequence and id are
    needed, to refuse it."""
    values: dict[str, Any] = {}
    not_utf8: set[str] = set()
    for number, wire, value in _wire_fields(data):
        f = descriptor.fields_by_number.get(number)
        if f is None:
            continue
        if f.type == FieldDescriptor.TYPE_STRING and isinstance(value, bytes):
            try:
                values[f.name] = value.decode("utf-8")
            except UnicodeDecodeError:
                values[f.name] = value.decode("utf-8", "replace")
                not_utf8.add(f.name)
        elif f.type in _UNSIGNED and wire == _VARINT and isinstance(value, int):
            values[f.name] = value & (_UINT64 if f.type == FieldDescriptor.TYPE_UINT64
                                      else 2**32 - 1)
    return values, sorted(not_utf8)


def _wire_fields(data: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of each field of an encoded message, in order, up
    to the first one that cannot be read. A length-delimited value is its bytes; groups
    (which no message of the stream has) end the reading."""
    pos, end = 0, len(data)
    while pos < end:
        key, pos = _varint(data, pos)
        if key is None:
            return
        number, wire = key >> 3, key & 7
        value: int | bytes | None
        if wire == _VARINT:
            value, pos = _varint(data, pos)
        elif wire in (_I64, _I32):
            size = 8 if wire == _I64 else 4
            value = int.from_bytes(data[pos:pos + size], "little") \
                if pos + size <= end else None
            pos += size
        elif wire == _LEN:
            size_, pos = _varint(data, pos)
            value = data[pos:pos + size_] if size_ is not None and pos + size_ <= end \
                else None
            pos += size_ or 0
        else:
            return
        if value is None:
            return
        yield number, wire, value


def _varint(data: bytes, pos: int) -> tuple[int | None, int]:
    """The varint at ``pos`` (as an unsigned 64-bit value) and the position after it;
    None when the bytes end first or it runs past ten bytes."""
    value = shift = 0
    for i in range(pos, min(pos + 10, len(data))):
        b = data[i]
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value & _UINT64, i + 1
        shift += 7
    return None, len(data)


def _ack(sequence: int, rec_id: str, duplicate: bool = False) -> stream_pb2.Ack:
    return stream_pb2.Ack(sequence=sequence, id=_utf8(rec_id), duplicate=duplicate)


# A nack says what is wrong, not all of it. Unbounded, a document with thousands of bad
# keys (each named by its whole path) made a nack twice its own size, and the replies of a
# batch travel in one message: past the platform's receive limit (gRPC's default is 4 MiB)
# the connection broke and every answer in that message was lost. Bounded, a nack is at
# most about 11 KB, and a full batch of them (batch_size 256) stays under 3 MB.
NACK_VIOLATIONS = 10  # listed; the rest are counted in one more
NACK_FIELD = 256  # bytes of UTF-8, for a field name or the id
NACK_REASON = 512  # bytes, per violation
NACK_SUMMARY = 2048  # bytes, the whole reason


def _nack(sequence: int, rec_id: str, problems: Sequence[errors.FieldError]) -> stream_pb2.Nack:
    listed = [(_cut(p.field, NACK_FIELD), _cut(p.reason, NACK_REASON))
              for p in problems[:NACK_VIOLATIONS]]
    if len(problems) > NACK_VIOLATIONS:
        listed.append(("(more)", f"{len(problems) - NACK_VIOLATIONS} more problems not listed"))
    return stream_pb2.Nack(
        sequence=sequence, id=_cut(rec_id, NACK_FIELD),
        reason=_cut("; ".join(f"{f}: {r}" for f, r in listed), NACK_SUMMARY),
        violations=[stream_pb2.FieldViolation(field=f, reason=r) for f, r in listed])


def _cut(text: str, most: int) -> str:
    """``text`` in at most ``most`` bytes of UTF-8, an ellipsis marking a cut."""
    raw = _utf8(text).encode("utf-8")
    if len(raw) <= most:
        return raw.decode("utf-8")
    return raw[:most - 3].decode("utf-8", "ignore") + "…"  # the ellipsis is 3 bytes


def _depth(value: Any) -> int:
    """How deep a JSON value nests (a scalar: 0, ``{}``: 1)."""
    deepest, todo = 0, [(value, 1)]
    while todo:  # iterative: the depth is bounded by the input limits, not the stack
        v, d = todo.pop()
        if isinstance(v, dict | list):
            deepest = max(deepest, d)
            todo.extend((x, d + 1) for x in (v.values() if isinstance(v, dict) else v))
    return deepest


def _non_finite(value: Any) -> str | None:
    """Where a NaN or an infinity is in a JSON value (``a.b[2]``); None if nowhere."""
    todo: list[tuple[str, Any]] = [("", value)]
    while todo:  # iterative: the depth is bounded by the input limits, not the stack
        path, v = todo.pop()
        if isinstance(v, float) and not math.isfinite(v):
            return path or "(document)"
        if isinstance(v, dict):
            todo.extend((f"{path}.{k}" if path else str(k), x) for k, x in v.items())
        elif isinstance(v, list):
            todo.extend((f"{path}[{i}]", x) for i, x in enumerate(v))
    return None


def _utf8(text: str) -> str:
    """``text`` as protobuf can carry it. A document's JSON may spell lone surrogates
    (``"\\ud800"``) in a key or an id, which then end up in a field name or the id a nack
    reports; protobuf strings must be UTF-8, so they are written as escapes instead of
    making the nack itself fail."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


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
