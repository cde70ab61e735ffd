"""Probes and metrics over HTTP: ``/healthz``, ``/readyz`` and ``/metrics``."""

from __future__ import annotations

import http.server
import threading

from reconciler.runtime import metrics as metrics_mod


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
