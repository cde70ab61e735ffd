"""The reference platform: the other end of the stream, for demos, tests and benchmarks.

It streams recommendations from a YAML/JSON file, records every ack, nack and upstream
message, honours ``Hello.resume_from``, and injects the faults the client must survive:
dropped connections, stalls (a live process that stops reading and sending), duplicates
and garbage. It is meant to be a faithful platform for the operator's contract, so the
delivery rules are the ones documented in ``proto/dakr/v1/stream.proto``.

``python -m reconciler.stream.platform --from FILE --port N`` (or ``reconciler platform
serve``) runs it; tests use ``PlatformServer`` directly.
"""

from __future__ import annotations

import argparse
import json
import logging
import pathlib
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any, TextIO

import grpc

from reconciler.adapters import files
from reconciler.domain import errors, validation
from reconciler.stream.gen import stream_pb2, stream_pb2_grpc

log = logging.getLogger(__name__)

# Garbage the client must refuse, one kind after the other: not JSON, JSON that is not an
# object, and a recommendation with invalid fields.
_GARBAGE = (
    "{this is not json",
    "[1, 2, 3]",
    json.dumps({"apiVersion": "dakr.devzero.io/v1alpha1", "kind": "WorkloadRecommendation",
                "metadata": {"namespace": "default"},
                "spec": {"recommendationId": "GARBAGE", "action": "Rightsizing",
                         "targetRef": {"kind": "Pod", "name": "x"},
                         "containers": [{"name": "app",
                                         "resources": {"requests": {"cpu": "-1"}}}]}}),
)


# The generated registration function is untyped; this is the one place its type is stated.
_register: Callable[[Any, grpc.Server], None] = (
    stream_pb2_grpc.add_RecommendationStreamServicer_to_server)


@dataclass(frozen=True)
class Faults:
    drop_after: int = 0  # end the stream after every N messages sent on it
    duplicate_every: int = 0  # send every Nth message twice
    garbage_every: int = 0  # insert a malformed recommendation after every N documents
    stall_after: int = 0  # after N messages on a connection: stop sending and reading


@dataclass(frozen=True)
class ServerTls:
    cert: bytes
    key: bytes
    client_ca: bytes | None = None  # set: mutual TLS, a client certificate is required


def build_feed(docs: Iterable[Any], garbage_every: int = 0) -> list[stream_pb2.PlatformMessage]:
    """Number the documents into messages (garbage included, so sequences stay stable)."""
    feed: list[stream_pb2.PlatformMessage] = []
    n_garbage = 0
    for i, doc in enumerate(docs, 1):
        seq = len(feed) + 1
        if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
            name = str((doc.get("metadata") or {}).get("name", f"crd-{i}"))
            feed.append(stream_pb2.PlatformMessage(crd_update=stream_pb2.CrdUpdate(
                sequence=seq, id=name, crd_json=json.dumps(doc))))
        else:
            feed.append(stream_pb2.PlatformMessage(recommendation=stream_pb2.Recommendation(
                sequence=seq, id=validation.raw_id(doc) or f"document-{i}",
                document_json=json.dumps(doc))))
        if garbage_every and i % garbage_every == 0:
            feed.append(stream_pb2.PlatformMessage(recommendation=stream_pb2.Recommendation(
                sequence=len(feed) + 1, id=f"garbage-{n_garbage}",
                document_json=_GARBAGE[n_garbage % len(_GARBAGE)])))
            n_garbage += 1
    return feed


def sequence_of(msg: stream_pb2.PlatformMessage) -> int:
    body = msg.WhichOneof("body")
    if body in ("recommendation", "crd_update", "rollback_request", "policy_update"):
        seq: int = getattr(msg, body).sequence
        return seq
    return 0


@dataclass
class PlatformState:
    """What the platform saw; every method is thread-safe, ``wait_for`` blocks on changes."""

    acks: list[dict[str, Any]] = field(default_factory=list)
    upstream: list[dict[str, Any]] = field(default_factory=list)  # deduplicated, in order
    hellos: list[dict[str, Any]] = field(default_factory=list)
    resumed: set[int] = field(default_factory=set)  # sent, ack lost, covered by resume_from
    stalls: list[float] = field(default_factory=list)  # monotonic time each stall began
    auth_failures: int = 0
    connections: int = 0
    sent: int = 0
    _acked_upstream: int = 0
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _acks_out: TextIO | None = None
    _upstream_out: TextIO | None = None

    def wait_for(self, predicate: Callable[[PlatformState], bool], timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self), timeout)

    def _changed(self) -> None:
        self._cond.notify_all()

    def acked_ids(self) -> list[str]:
        with self._cond:
            return [a["id"] for a in self.acks if a["kind"] == "ack"]

    def nacks(self) -> list[dict[str, Any]]:
        with self._cond:
            return [a for a in self.acks if a["kind"] == "nack"]


class _Connection:
    def __init__(self, number: int) -> None:
        self.number = number
        self.cond = threading.Condition()
        self.hello: stream_pb2.Hello | None = None
        self.in_flight = 0
        self.sent_at: dict[int, float] = {}
        self.upstream_ack_due = 0
        self.stalled = False
        self.done = False


class PlatformServer(stream_pb2_grpc.RecommendationStreamServicer):
    """A gRPC server speaking the platform side of ``dakr.v1.RecommendationStream``."""

    def __init__(self, feed: Sequence[stream_pb2.PlatformMessage], *, host: str = "127.0.0.1",
                 port: int = 0, faults: Faults = Faults(), tls: ServerTls | None = None,
                 token_file: str | None = None, heartbeat_interval: float = 1.0,
                 window: int = 1000, batch: int = 64, min_ping_interval_ms: int = 500,
                 keepalive_time_ms: int = 10_000, keepalive_timeout_ms: int = 5_000,
                 acks_out: str | None = None, upstream_out: str | None = None) -> None:
        self.feed = list(feed)
        self.host, self.requested_port, self.port = host, port, 0
        self.faults, self.tls, self.token_file = faults, tls, token_file
        self.heartbeat_interval, self.window = heartbeat_interval, window
        self.batch = max(1, batch)
        self.state = PlatformState()
        self._options = [
            # Accept the client's keepalive pings (grpc doc/keepalive.md): a ping more
            # often than this without data would count as a strike and end in too_many_pings.
            ("grpc.http2.min_ping_interval_without_data_ms", min_ping_interval_ms),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.keepalive_time_ms", keepalive_time_ms),
            ("grpc.keepalive_timeout_ms", keepalive_timeout_ms),
            ("grpc.so_reuseport", 0),
        ]
        self._acks_out_path = acks_out
        self._upstream_out_path = upstream_out
        self._server: grpc.Server | None = None
        self._stopping = threading.Event()
        self._feed_cond = threading.Condition()
        self._connections: list[_Connection] = []

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> PlatformServer:
        if self._acks_out_path:
            self.state._acks_out = open(self._acks_out_path, "a", encoding="utf-8")  # noqa: SIM115
        if self._upstream_out_path:
            self.state._upstream_out = open(  # noqa: SIM115
                self._upstream_out_path, "a", encoding="utf-8")
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="pf"),
                             options=self._options)
        _register(self, server)
        address = f"{self.host}:{self.requested_port}"
        if self.tls is None:
            port = server.add_insecure_port(address)
        else:
            creds = grpc.ssl_server_credentials(
                [(self.tls.key, self.tls.cert)], root_certificates=self.tls.client_ca,
                require_client_auth=self.tls.client_ca is not None)
            port = server.add_secure_port(address, creds)
        if not port:
            raise errors.ConfigError(f"cannot listen on {address}")
        self.port = port
        server.start()
        self._server = server
        log.info("platform: listening on %s:%d (%d messages)", self.host, port, len(self.feed))
        return self

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def stop(self, grace: float | None = None) -> None:
        """Stop serving; ``grace=None`` or 0 cuts every stream at once (a crash, as seen
        from the client)."""
        self._stopping.set()
        with self._feed_cond:
            self._feed_cond.notify_all()
        if self._server is not None:
            self._server.stop(grace).wait()
        for name in ("_acks_out", "_upstream_out"):
            f = getattr(self.state, name)
            if f is not None:
                f.close()
                setattr(self.state, name, None)

    def add(self, messages: Iterable[stream_pb2.PlatformMessage]) -> None:
        """Append messages to the feed (numbered after the last one), for live streams."""
        with self._feed_cond:
            for m in messages:
                body = m.WhichOneof("body")
                if body and body != "heartbeat" and body != "upstream_ack":
                    getattr(m, body).sequence = len(self.feed) + 1
                self.feed.append(m)
            self._feed_cond.notify_all()
        for c in list(self._connections):
            with c.cond:
                c.cond.notify_all()

    # -- the RPC ---------------------------------------------------------------------------

    def Connect(self, request_iterator: Iterator[stream_pb2.OperatorMessage],
                context: grpc.ServicerContext) -> Iterator[stream_pb2.PlatformMessage]:
        st = self.state
        expected = self._expected_token()
        if expected is not None:
            got = dict(context.invocation_metadata()).get("authorization", "")
            if got != f"Bearer {expected}":
                with st._cond:
                    st.auth_failures += 1
                    st._changed()
                context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid bearer token")
        with st._cond:
            st.connections += 1
            conn = _Connection(st.connections)
            st._changed()
        self._connections.append(conn)
        reader = threading.Thread(target=self._read, args=(conn, request_iterator, context),
                                  name=f"pf-read-{conn.number}", daemon=True)
        reader.start()
        try:
            yield from self._send(conn, context)
        finally:
            with conn.cond:
                conn.done = True
                conn.cond.notify_all()

    def _expected_token(self) -> str | None:
        if not self.token_file:
            return None
        try:
            return pathlib.Path(self.token_file).read_text().strip()
        except OSError:
            return ""  # unreadable: accept nobody rather than everybody

    def _send(self, conn: _Connection, context: grpc.ServicerContext
              ) -> Iterator[stream_pb2.PlatformMessage]:
        with conn.cond:
            conn.cond.wait_for(lambda: conn.hello is not None or conn.done
                               or self._stopping.is_set(), timeout=30)
            hello = conn.hello
        if hello is None:
            if self._stopping.is_set() or conn.done:
                context.abort(grpc.StatusCode.UNAVAILABLE, "the platform is shutting down")
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "expected Hello first")
            return
        resume = hello.resume_from
        self._resume(resume)
        index = next((i for i, m in enumerate(self.feed) if sequence_of(m) > resume),
                     len(self.feed))
        sent_here = 0
        last_sent = time.monotonic()
        f = self.faults
        while context.is_active() and not self._stopping.is_set():
            with conn.cond:
                def ready(i: int = index) -> bool:
                    return (conn.done or self._stopping.is_set() or conn.upstream_ack_due > 0
                            or (conn.in_flight < self.window and i < len(self.feed)))
                conn.cond.wait_for(ready, timeout=min(0.1, self.heartbeat_interval))
                if conn.done:
                    return
                useq, conn.upstream_ack_due = conn.upstream_ack_due, 0
            if useq:
                yield stream_pb2.PlatformMessage(
                    upstream_ack=stream_pb2.UpstreamAck(upstream_sequence=useq))
            if conn.in_flight < self.window and index < len(self.feed):
                out: list[stream_pb2.PlatformMessage] = []
                while (index < len(self.feed) and len(out) < self.batch
                       and conn.in_flight + len(out) < self.window):
                    msg = self.feed[index]
                    is_rec = msg.WhichOneof("body") == "recommendation"
                    if out and not is_rec:
                        break  # only recommendations travel in batches
                    index += 1
                    sent_here += 1
                    dup = f.duplicate_every and sent_here % f.duplicate_every == 0
                    out.extend([msg, msg] if dup else [msg])
                    if (not is_rec or (f.stall_after and sent_here >= f.stall_after)
                            or (f.drop_after and sent_here >= f.drop_after)):
                        break
                now = time.monotonic()
                with conn.cond:
                    conn.in_flight += len(out)
                    for m in out:
                        conn.sent_at[sequence_of(m)] = now
                with self.state._cond:
                    self.state.sent += len(out)
                if len(out) == 1:
                    yield out[0]
                else:
                    yield stream_pb2.PlatformMessage(
                        recommendation_batch=stream_pb2.RecommendationBatch(
                            recommendations=[m.recommendation for m in out]))
                last_sent = time.monotonic()
                if f.stall_after and sent_here >= f.stall_after:
                    self._stall(conn, context)
                    return
                if f.drop_after and sent_here >= f.drop_after:
                    log.info("platform: fault injection: dropping connection %d", conn.number)
                    context.abort(grpc.StatusCode.UNAVAILABLE, "fault injection: dropped")
            elif time.monotonic() - last_sent >= self.heartbeat_interval:
                last_sent = time.monotonic()
                yield stream_pb2.PlatformMessage(heartbeat=stream_pb2.Heartbeat(
                    unix_millis=int(time.time() * 1000)))

    def _stall(self, conn: _Connection, context: grpc.ServicerContext) -> None:
        """Keep the connection open but go silent: no messages, no reads, no heartbeats."""
        log.info("platform: fault injection: stalling connection %d", conn.number)
        with conn.cond:
            conn.stalled = True
            conn.cond.notify_all()
        with self.state._cond:
            self.state.stalls.append(time.monotonic())
            self.state._changed()
        while context.is_active() and not self._stopping.is_set():
            time.sleep(0.05)

    def _resume(self, resume: int) -> None:
        """Everything up to ``resume`` is delivered, even where the Ack was lost."""
        acked = {int(a["sequence"]) for a in self.state.acks}
        with self.state._cond:
            for m in self.feed:
                s = sequence_of(m)
                if s > resume:
                    break
                if s not in acked:
                    self.state.resumed.add(s)
            self.state._changed()

    def _read(self, conn: _Connection, requests: Iterator[stream_pb2.OperatorMessage],
              context: grpc.ServicerContext) -> None:
        st = self.state
        try:
            for msg in requests:
                body = msg.WhichOneof("body")
                if body == "hello":
                    with st._cond:
                        st.hellos.append({"connection": conn.number,
                                          "resume_from": msg.hello.resume_from,
                                          "cluster_id": msg.hello.cluster_id,
                                          "time": time.monotonic()})
                        st._changed()
                    with conn.cond:
                        conn.hello = msg.hello
                        conn.cond.notify_all()
                elif body in ("ack", "nack"):
                    self._record_acks(conn, [(body, getattr(msg, body))])
                elif body == "replies":
                    self._record_acks(conn, [("ack", a) for a in msg.replies.acks]
                                      + [("nack", n) for n in msg.replies.nacks])
                elif body in ("status_update", "audit_event"):
                    self._record_upstream(conn, body, getattr(msg, body))
                with conn.cond:
                    while conn.stalled and not conn.done and not self._stopping.is_set():
                        conn.cond.wait(0.1)  # stop reading: the client's sends back up
        except grpc.RpcError:
            pass  # the connection ended; the sender notices through its context
        except ValueError:
            pass  # the request iterator was torn down under us by a server stop
        finally:
            with conn.cond:
                conn.done = True
                conn.cond.notify_all()

    def _record_acks(self, conn: _Connection, answers: list[tuple[str, Any]]) -> None:
        now = time.monotonic()
        with conn.cond:
            conn.in_flight = max(0, conn.in_flight - len(answers))
            sent = [conn.sent_at.pop(m.sequence, None) for _, m in answers]
            conn.cond.notify_all()
        entries: list[dict[str, Any]] = []
        for (body, m), at in zip(answers, sent, strict=True):
            entry: dict[str, Any] = {"id": m.id, "kind": body, "sequence": m.sequence,
                                     "reason": getattr(m, "reason", ""),
                                     "duplicate": bool(getattr(m, "duplicate", False)),
                                     "latency_ms": round((now - at) * 1000, 3) if at else None,
                                     "sent_at": at}
            if body == "nack":
                entry["fields"] = [v.field for v in m.violations]
            entries.append(entry)
        with self.state._cond:
            self.state.acks.extend(entries)
            out = self.state._acks_out
            if out is not None:
                out.write("".join(json.dumps(e) + "\n" for e in entries))
                out.flush()
            self.state._changed()

    def _record_upstream(self, conn: _Connection, body: str, m: Any) -> None:
        st = self.state
        with st._cond:
            if m.upstream_sequence > st._acked_upstream:  # not a resend of one we have
                st._acked_upstream = m.upstream_sequence
                entry = {"type": body, "upstream_sequence": m.upstream_sequence,
                         "recommendation_id": m.recommendation_id,
                         "connection": conn.number, "received_at": time.monotonic()}
                if body == "status_update":
                    entry["phase"] = m.phase
                else:
                    entry["action"] = m.action
                st.upstream.append(entry)
                if st._upstream_out is not None:
                    st._upstream_out.write(json.dumps(entry) + "\n")
                    st._upstream_out.flush()
            st._changed()
        with conn.cond:
            conn.upstream_ack_due = max(conn.upstream_ack_due, m.upstream_sequence)
            conn.cond.notify_all()


# -- command line ----------------------------------------------------------------------------

def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="source", required=True,
                   help="YAML/JSON file of recommendation documents ('-' for stdin)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=50051, help="0 picks a free port")
    p.add_argument("--drop-after", type=int, default=0, metavar="N",
                   help="end the stream after every N messages sent on it")
    p.add_argument("--duplicate-every", type=int, default=0, metavar="N")
    p.add_argument("--garbage-every", type=int, default=0, metavar="N")
    p.add_argument("--stall-after", type=int, default=0, metavar="N",
                   help="after N messages on a connection, stop sending and reading")
    p.add_argument("--acks-out", metavar="FILE",
                   help="append one JSON line per ack or nack received")
    p.add_argument("--upstream-out", metavar="FILE",
                   help="append one JSON line per status update or audit event received")
    p.add_argument("--heartbeat", type=float, default=1.0, metavar="SECONDS")
    p.add_argument("--window", type=int, default=1000,
                   help="most unacknowledged messages in flight per connection")
    p.add_argument("--batch", type=int, default=64,
                   help="most recommendations per message (1: one message each)")
    p.add_argument("--tls-cert", metavar="FILE")
    p.add_argument("--tls-key", metavar="FILE")
    p.add_argument("--tls-client-ca", metavar="FILE", help="require client certificates")
    p.add_argument("--token-file", metavar="FILE",
                   help="require this bearer token (re-read on every connection)")


def _read_bytes(path: str) -> bytes:
    try:
        return pathlib.Path(path).read_bytes()
    except OSError as e:
        raise errors.ConfigError(f"cannot read {path}: {e.strerror}") from e


def server_from_args(args: argparse.Namespace) -> PlatformServer:
    for name in ("drop_after", "duplicate_every", "garbage_every", "stall_after"):
        if getattr(args, name) < 0:
            raise errors.ConfigError(f"--{name.replace('_', '-')} must not be negative")
    tls = None
    if args.tls_cert or args.tls_key:
        if not (args.tls_cert and args.tls_key):
            raise errors.ConfigError("--tls-cert and --tls-key go together")
        tls = ServerTls(_read_bytes(args.tls_cert), _read_bytes(args.tls_key),
                        _read_bytes(args.tls_client_ca) if args.tls_client_ca else None)
    elif args.tls_client_ca:
        raise errors.ConfigError("--tls-client-ca needs --tls-cert and --tls-key")
    faults = Faults(args.drop_after, args.duplicate_every, args.garbage_every, args.stall_after)
    return PlatformServer(build_feed(files.load_documents(args.source), faults.garbage_every),
                          host=args.host, port=args.port, faults=faults, tls=tls,
                          token_file=args.token_file, heartbeat_interval=args.heartbeat,
                          window=args.window, batch=args.batch, acks_out=args.acks_out,
                          upstream_out=args.upstream_out)


def serve(args: argparse.Namespace) -> int:
    """Run until SIGINT/SIGTERM; prints the address it listens on (port 0 picks one)."""
    try:
        server = server_from_args(args).start()
    except errors.ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"listening on {server.address}", flush=True)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    server.stop(1.0)
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    p = argparse.ArgumentParser(prog="python -m reconciler.stream.platform",
                                description=__doc__.split("\n\n")[0] if __doc__ else None)
    add_arguments(p)
    return serve(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
