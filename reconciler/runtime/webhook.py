"""``reconciler webhook``: the live-migration admission webhook, as a server.

Live migration resizes running pods in place; pods created afterwards come from the
template with its old values. This server is called by the API server for every pod
creation (a MutatingWebhookConfiguration) and answers with the values of the live
migrations applied to the pod's workload (``domain/admission.py`` decides, purely):

- HTTPS only (TLS 1.2 or later), from certificate and key files that are looked at every
  ``reload_interval`` and loaded again when they change (cert-manager, or the chart's
  Secret, rotates them; a pair that does not load yet keeps the previous one serving);
- ``POST /mutate`` (AdmissionReview v1), ``GET /healthz``, ``GET /readyz`` (ready once
  the index has had its first full list), ``GET /metrics``; the metrics also over plain
  HTTP on ``metrics_addr`` for a scraper without the CA;
- the index is a dict kept by an informer over the store (the WorkloadRecommendations,
  listed and watched; or the SQLite file's change log, polled every 50 ms): each change
  of a recommendation rebuilds the entry of its workload, a deletion drops it. A review
  costs a dict read and a JSON patch: no API call on the request path;
- every mutation is logged (the pod, the workload, the recommendations, the values);
  request bodies never are.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import logging
import os
import signal
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

import prometheus_client

from reconciler import wiring
from reconciler.adapters.store import port as store
from reconciler.config import settings
from reconciler.domain import admission, errors, model
from reconciler.domain import text as txt
from reconciler.runtime import health, informer
from reconciler.runtime import metrics as metrics_mod

log = logging.getLogger(__name__)

MUTATE = "/mutate"
IDLE_TIMEOUT = 120.0  # a connection (the TLS handshake, a request) silent this long is closed
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2)
Key = tuple[str, str]
IndexSource = Callable[[], admission.Index]


class WebhookMetrics:
    """The webhook's series, in a registry of its own. Labels are bounded sets (results,
    workload kinds), never pod or workload names."""

    def __init__(self) -> None:
        r = self.registry = prometheus_client.CollectorRegistry()
        self.requests = prometheus_client.Counter(
            "dakr_webhook_requests_total",
            "Admission reviews answered, by result (patched | unchanged | skipped | ignored "
            "| malformed | bad_request)", ["result"], registry=r)
        self.patches = prometheus_client.Counter(
            "dakr_webhook_patches_total",
            "Pods given the values of a live migration, by workload kind", ["kind"],
            registry=r)
        self.latency = prometheus_client.Histogram(
            "dakr_webhook_request_duration_seconds",
            "Time from a review's request line to its answer", buckets=LATENCY_BUCKETS,
            registry=r)
        self.workloads = prometheus_client.Gauge(
            "dakr_webhook_indexed_workloads",
            "Workloads whose new pods get live-migration values", registry=r)
        self.lists = prometheus_client.Counter(
            "dakr_informer_lists_total",
            "Full lists of a recommendation kind (at start, and after 410 Gone)", ["kind"],
            registry=r)
        self.reloads = prometheus_client.Counter(
            "dakr_webhook_certificate_reloads_total",
            "Certificate files loaded again after a change, by result (ok | error)",
            ["result"], registry=r)
        for result in admission.RESULTS:
            self.requests.labels(result)
        for kind in model.TARGET_KINDS:
            self.patches.labels(kind)

    def exposition(self) -> bytes:
        return bytes(prometheus_client.generate_latest(self.registry))


# --------------------------------------------------------------------------- the index


class LiveIndex:
    """(namespace, kind, name) -> the values new pods of that workload get, from the
    recommendations an informer hands to ``changed``. ``entries`` is read without a lock
    (a dict read; an entry is replaced, never changed in place)."""

    def __init__(self, on_size: Callable[[int], None] = lambda _: None) -> None:
        self._lock = threading.Lock()
        self._by_rec: dict[Key, admission.Contribution] = {}
        self._by_target: dict[admission.Target, dict[Key, admission.Contribution]] = {}
        self.entries: dict[admission.Target, admission.Values] = {}
        self.ids: dict[admission.Target, tuple[str, ...]] = {}
        self._on_size = on_size

    @staticmethod
    def contribution_of(rec: store.Record) -> admission.Contribution | None:
        return admission.contribution(rec.kind, rec.id, rec.spec, rec.status,
                                      deleting=rec.deleting, created_at=rec.created_at)

    def changed(self, old: store.Record | None, new: store.Record | None) -> None:
        """An informer's handler: a recommendation appeared, changed or went away."""
        rec = new if new is not None else old
        if rec is None:
            return
        key = (rec.kind, rec.id)
        cur = self.contribution_of(new) if new is not None else None
        with self._lock:
            prev = self._by_rec.get(key)
            if prev == cur:
                return  # a status write that changes nothing here (a condition, say)
            touched: set[admission.Target] = set()
            if prev is not None:
                del self._by_rec[key]
                group = self._by_target.get(prev.target, {})
                group.pop(key, None)
                touched.add(prev.target)
            if cur is not None:
                self._by_rec[key] = cur
                self._by_target.setdefault(cur.target, {})[key] = cur
                touched.add(cur.target)
            before = {t: (self.entries.get(t), self.ids.get(t)) for t in touched}
            for target in touched:
                self._rebuild(target)
            size = len(self.entries)
            after = {t: (self.entries.get(t), self.ids.get(t)) for t in touched}
        for target in sorted(touched):
            if before[target] == after[target]:
                continue
            values, ids = after[target]
            if values is None:
                log.info("new pods of %s %s/%s keep their template's values", target[1],
                         target[0], target[2])
            else:
                log.info("new pods of %s %s/%s get %s (%s)", target[1], target[0],
                         target[2], describe(values), ", ".join(ids or ()))
        self._on_size(size)

    def _rebuild(self, target: admission.Target) -> None:
        group = self._by_target.get(target) or {}
        if not group:
            self._by_target.pop(target, None)
            self.entries.pop(target, None)
            self.ids.pop(target, None)
            return
        contributions = sorted(group.values(), key=lambda c: c.order)
        self.entries[target] = admission.merge(contributions)
        self.ids[target] = tuple(c.rec_id for c in contributions)

    def __len__(self) -> int:
        return len(self.entries)


def describe(values: Mapping[str, Mapping[str, Mapping[str, str]]]) -> str:
    """``app: requests cpu=100m memory=64Mi; limits memory=128Mi`` (for the log)."""
    parts = []
    for container, sections in sorted(values.items()):
        secs = "; ".join(f"{s} " + " ".join(f"{r}={v}" for r, v in sorted(items.items()))
                         for s, items in sorted(sections.items()) if items)
        parts.append(f"{container}: {secs}")
    return txt.clip(", ".join(parts), 500)


# --------------------------------------------------------------------------- TLS


def _stamp(path: str) -> tuple[int, int, int]:
    st = os.stat(path)  # through symlinks: a Secret volume swaps its ..data link
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class TlsFiles:
    """A server-side TLS context from a certificate and a key file, loaded again when
    either changes (``check``). Construction fails with a ConfigError naming the file that
    is missing, unreadable or not what it should be."""

    def __init__(self, cert: str, key: str) -> None:
        self.cert, self.key = cert, key
        self._stamps = self._read_stamps()
        self._context = self._load()
        self._failed: tuple[Any, ...] | None = None

    def _read_stamps(self) -> tuple[Any, ...]:
        out = []
        for flag, path in (("--tls-cert", self.cert), ("--tls-key", self.key)):
            try:
                out.append(_stamp(path))
            except FileNotFoundError:
                raise errors.ConfigError(f"{flag} {path}: no such file") from None
            except OSError as e:
                raise errors.ConfigError(f"{flag} {path}: {e.strerror or e}") from None
        return tuple(out)

    def _load(self) -> ssl.SSLContext:
        for flag, path in (("--tls-cert", self.cert), ("--tls-key", self.key)):
            try:
                with open(path, "rb") as f:
                    f.read(1)
            except OSError as e:
                raise errors.ConfigError(f"{flag} {path}: cannot be read: "
                                         f"{e.strerror or e}") from None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.load_cert_chain(self.cert, self.key)
        except ssl.SSLError as e:
            raise errors.ConfigError(
                f"--tls-cert {self.cert} / --tls-key {self.key}: not a PEM certificate and "
                f"its private key ({e.reason or e})") from None
        except OSError as e:
            raise errors.ConfigError(f"--tls-cert {self.cert} / --tls-key {self.key}: "
                                     f"{e.strerror or e}") from None
        return ctx

    def context(self) -> ssl.SSLContext:
        return self._context

    def check(self) -> bool | None:
        """Load the files again if they changed: True when loaded, False when they
        changed but do not load (the previous context keeps serving, and they are tried
        again when they change again), None when there is nothing new."""
        try:
            stamps = self._read_stamps()
        except errors.ConfigError as e:
            gone: tuple[Any, ...] = ("unreadable", str(e))
            if self._failed == gone:
                return None
            log.warning("certificate: %s; still serving the previous one", e)
            self._failed = gone
            return False
        if stamps in (self._stamps, self._failed):
            return None
        try:
            context = self._load()
        except errors.ConfigError as e:
            log.warning("certificate files changed but do not load: %s; still serving the "
                        "previous certificate", e)
            self._failed = stamps
            return False
        self._context, self._stamps, self._failed = context, stamps, None
        log.info("certificate files changed: loaded again")
        return True


# --------------------------------------------------------------------------- the server


class _TlsHttpServer(http.server.ThreadingHTTPServer):
    """A thread per connection (the API server keeps its connections open); the TLS
    handshake in that thread, so a slow client never holds the accept loop. Closing ends
    the open connections and joins their threads."""

    daemon_threads = False
    block_on_close = True
    request_queue_size = 128

    def __init__(self, addr: tuple[str, int], handler: type[http.server.BaseHTTPRequestHandler],
                 context: Callable[[], ssl.SSLContext]) -> None:
        self._context = context
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(addr, handler)

    def get_request(self) -> tuple[Any, Any]:
        sock, addr = super().get_request()
        try:
            conn = self._context().wrap_socket(sock, server_side=True,
                                               do_handshake_on_connect=False)
        except Exception:
            sock.close()
            raise
        with self._open_lock:
            self._open.add(conn)
        return conn, addr

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def end_connections(self) -> None:
        with self._open_lock:
            conns = list(self._open)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A failed handshake, a client gone mid-answer: routine for a server, not a trace.
        log.debug("connection from %s ended with an error", client_address, exc_info=True)


class WebhookServer:
    """The HTTPS server. ``index`` gives the index a review is answered from (the
    process's ``LiveIndex.entries``; a benchmark's naive way otherwise); ``not_ready``
    says why /readyz fails ("" when ready)."""

    def __init__(self, address: str, port: int, tls: TlsFiles, index: IndexSource,
                 metrics: WebhookMetrics, *, not_ready: Callable[[], str] = lambda: "",
                 ids: Callable[[admission.Target], tuple[str, ...]] = lambda _: (),
                 max_body: int = settings.WebhookSettings.max_body) -> None:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"   # keep-alive: the API server reuses connections
            disable_nagle_algorithm = True  # an answer is two small writes
            timeout = IDLE_TIMEOUT

            def setup(self) -> None:
                self.request.settimeout(self.timeout)
                self.request.do_handshake()
                super().setup()

            def _send(self, code: int, body: bytes, ctype: str = "text/plain") -> None:
                health.send(self, code, body, ctype)

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/healthz":
                    self._send(200, b"ok\n")
                elif path == "/readyz":
                    why = not_ready()
                    self._send(503 if why else 200, (why or "ok").encode() + b"\n")
                elif path == "/metrics":
                    self._send(200, metrics.exposition(), metrics_mod.CONTENT_TYPE)
                else:
                    self._send(404, b"not found\n")

            def do_POST(self) -> None:
                started = time.perf_counter()
                if self.path.split("?", 1)[0] != MUTATE:
                    self.close_connection = True  # its body is not read
                    self._send(404, b"not found\n")
                    return
                code, body, result = server.answer(self, max_body)
                self._send(code, body, "application/json" if code == 200 else "text/plain")
                metrics.requests.labels(result).inc()
                metrics.latency.observe(time.perf_counter() - started)

            def log_message(self, format: str, *args: object) -> None:
                return

        self.tls, self.index, self.metrics, self.ids = tls, index, metrics, ids
        try:
            self._httpd = _TlsHttpServer((address or "0.0.0.0", port), Handler, tls.context)
        except OSError as e:
            raise errors.ConfigError(f"webhook: cannot listen on {address or '*'}:{port}: "
                                     f"{e.strerror or e}") from e
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True,
                                        name="webhook")
        self._thread.start()

    def answer(self, handler: http.server.BaseHTTPRequestHandler, max_body: int
               ) -> tuple[int, bytes, str]:
        """Read one review from ``handler`` and answer it: (status, body, result)."""
        ctype = handler.headers.get("Content-Type", "")
        length_text = handler.headers.get("Content-Length")
        if length_text is None or not length_text.isdigit():
            handler.close_connection = True
            return 411, b"a Content-Length is required\n", admission.BAD_REQUEST
        length = int(length_text)
        if length > max_body:
            handler.close_connection = True  # the body is not read: the connection ends
            return 413, b"the review is too large\n", admission.BAD_REQUEST
        raw = handler.rfile.read(length)
        if ctype.split(";", 1)[0].strip().lower() != "application/json":
            return 400, b"Content-Type must be application/json\n", admission.BAD_REQUEST
        try:
            doc = json.loads(raw)
        except (ValueError, RecursionError):
            return 400, b"the body is not JSON\n", admission.BAD_REQUEST
        try:
            out = admission.review(doc, self.index())
        except Exception as e:  # a bug of ours must not hold a pod back: allow it as it is
            # The type only: an exception's message may quote the request.
            log.error("answering an admission review failed (%s, a bug); the pod is "
                      "allowed as it is", type(e).__name__)
            log.debug("the failure", exc_info=True)
            out = admission.fallback(doc)
        if out.status != 200 or out.body is None:
            return 400, (out.error or "bad request").encode() + b"\n", out.result
        self._report(out)
        return 200, json.dumps(out.body, separators=(",", ":")).encode(), out.result

    def _report(self, out: admission.Outcome) -> None:
        if out.target is None:
            return
        ns, kind, name = out.target
        ids = ", ".join(self.ids(out.target)) or "?"
        if out.result == admission.PATCHED:
            self.metrics.patches.labels(kind).inc()
            log.info("pod %s of %s %s/%s: set %s (recommendation %s)", out.pod, kind, ns,
                     name, describe(out.patched), ids)
        elif out.result == admission.SKIPPED:
            log.warning("pod %s of %s %s/%s: not changed (recommendation %s): %s", out.pod,
                        kind, ns, name, ids, "; ".join(out.warnings))

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.end_connections()
        self._httpd.server_close()  # joins the connections' threads
        self._thread.join(5)


# --------------------------------------------------------------------------- the process


class Webhook:
    """One webhook process: the store and its informer keeping the index, the HTTPS
    server, the certificate reloader and an optional plain-HTTP metrics listener.
    ``start`` then ``close``; ``run`` does both around SIGINT/SIGTERM."""

    def __init__(self, cfg: settings.WebhookSettings) -> None:
        self.cfg = cfg
        self.metrics = WebhookMetrics()
        self.index = LiveIndex(on_size=self.metrics.workloads.set)
        self.store: store.Watchable | None = None
        self.informer: informer.Informer | None = None
        self.server: WebhookServer | None = None
        self.metrics_server: health.Health | None = None
        self.tls: TlsFiles | None = None
        self._stop = threading.Event()
        self._started = False  # the informer's thread runs
        self._reloader: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.port

    def not_ready(self) -> str:
        if self.informer is None or not self.informer.synced.is_set():
            return "not ready: the recommendations are not listed yet"
        return ""

    def start(self) -> Webhook:
        cfg = self.cfg
        self.tls = TlsFiles(cfg.tls_cert, cfg.tls_key)  # a bad file fails before anything
        try:
            if cfg.store.startswith("sqlite:"):
                Path(cfg.store[len("sqlite:"):]).parent.mkdir(parents=True, exist_ok=True)
            self.store = wiring.open_store(cfg.store, cfg.kube)
            self.informer = informer.Informer(
                self.store, model.WORKLOAD, informer.Cache(), self.index.changed,
                watch_timeout=cfg.watch_timeout,
                on_list=lambda k: self.metrics.lists.labels(k).inc())
            self.server = WebhookServer(cfg.address, cfg.port, self.tls,
                                        lambda: self.index.entries, self.metrics,
                                        not_ready=self.not_ready,
                                        ids=lambda t: self.index.ids.get(t, ()),
                                        max_body=cfg.max_body)
            if cfg.metrics_addr:
                try:
                    # Health serves anything with an ``exposition()``, as ours has.
                    self.metrics_server = health.Health(
                        cfg.metrics_addr, cast(metrics_mod.Metrics, self.metrics),
                        probes=False)
                except (ValueError, OSError) as e:
                    raise errors.ConfigError(f"--metrics-addr: {e}") from e
            self.informer.start()
            self._started = True
            self._reloader = threading.Thread(target=self._reload, daemon=True,
                                              name="webhook-certificate")
            self._reloader.start()
        except BaseException:
            self.close()
            raise
        log.info("admission webhook serving https on port %d (%s store)", self.port,
                 "kube" if cfg.store == "kube" else "sqlite")
        return self

    def _reload(self) -> None:
        while not self._stop.wait(self.cfg.reload_interval):
            if self.tls is None:
                continue
            got = self.tls.check()
            if got is not None:
                self.metrics.reloads.labels("ok" if got else "error").inc()

    def close(self) -> None:
        """Stop everything started (safe to call again, or after a failed start)."""
        self._stop.set()
        inf, self._started = (self.informer if self._started else None), False
        if inf is not None:
            inf.stop()
        for server in (self.server, self.metrics_server):
            if server is not None:
                server.close()
        self.server = self.metrics_server = None
        if inf is not None:
            inf.join(10)
        if self._reloader is not None:
            self._reloader.join(5)
            self._reloader = None
        if self.store is not None:
            self.store.close()
            self.store = None

    def run(self) -> int:
        stop = threading.Event()
        previous: dict[signal.Signals, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, lambda *_: stop.set())
        try:
            self.start()
            stop.wait()
            log.info("stopping the admission webhook")
            return 0
        finally:
            self.close()
            for signum, handler in previous.items():
                signal.signal(signum, handler)

