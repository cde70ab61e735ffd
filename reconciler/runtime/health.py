"""Probes and metrics over HTTP: ``/healthz``, ``/readyz``, ``/metrics``, and a ``POST
/resync`` that asks the operator to look at everything now (follow the open pull requests,
take the file sources in again) instead of waiting for its resync period."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable

from reconciler.runtime import metrics as metrics_mod

Check = Callable[[], str]  # "" when ready, else why not



def send(handler: http.server.BaseHTTPRequestHandler, code: int, body: bytes,
         ctype: str = "text/plain") -> None:
    """One whole answer with its length, so keep-alive connections stay usable; when the
    handler ends the connection after it (a body left unread), the client is told so
    (``Connection: close``) instead of finding out by sending its next request into a
    closed socket."""
    handler.send_response(code)
    handler.send_header("Content-Type", ctype)
    handler.send_header("Content-Length", str(len(body)))
    if handler.close_connection:
        handler.send_header("Connection", "close")
    handler.end_headers()
    handler.wfile.write(body)

class Health:
    """``/healthz`` (the process serves) and ``/readyz`` (``ready`` is set and ``check``
    finds nothing missing: the store synced, the policy engine answering, the stream
    connected once) for the kubelet's probes, and ``/metrics`` when given ``metrics``, on
    a small HTTP server thread. ``probes=False`` serves ``/metrics`` alone (the chart's
    separate metrics port). ``on_resync`` serves ``POST /resync``.
    """

    def __init__(self, addr: str, metrics: metrics_mod.Metrics | None = None, *,
                 probes: bool = True, check: Check | None = None,
                 on_resync: Callable[[], None] | None = None) -> None:
        host, _, port = addr.rpartition(":")
        self.ready = threading.Event()
        self.check = check
        health = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _send(self, code: int, body: bytes, ctype: str = "text/plain") -> None:
                send(self, code, body, ctype)

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics" and metrics is not None:
                    self._send(200, metrics.exposition(), metrics_mod.CONTENT_TYPE)
                elif probes and path == "/healthz":
                    self._send(200, b"ok\n")
                elif probes and path == "/readyz":
                    why = health.not_ready()
                    self._send(503 if why else 200, (why or "ok").encode() + b"\n")
                else:
                    self._send(404, b"not found\n")

            def do_POST(self) -> None:
                if probes and self.path.split("?", 1)[0] == "/resync" and on_resync:
                    on_resync()
                    self._send(202, b"resync requested\n")
                else:
                    self._send(404, b"not found\n")

            def log_message(self, format: str, *args: object) -> None:
                return

        try:
            self._httpd = http.server.ThreadingHTTPServer((host or "0.0.0.0", int(port)),
                                                          Handler)
        except ValueError as e:
            raise ValueError(f"{addr!r} is not [HOST]:PORT") from e
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True,
                                        name="health")
        self._thread.start()

    def not_ready(self) -> str:
        """Why the operator is not ready ("" when it is)."""
        if not self.ready.is_set():
            return "not ready: starting"
        why = self.check() if self.check is not None else ""
        return f"not ready: {why}" if why else ""

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)
