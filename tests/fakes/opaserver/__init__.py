"""An HTTP server speaking OPA's REST Data API, on top of the embedded OPA engine.

It stands in for the OPA sidecar in tests: the sidecar client talks real HTTP to it and
gets OPA's answers and error shapes (``{"result"}`` plus ``decision_id``, 200 without
``result`` for an undefined document, 400 for a bad body, 500 ``{code, message, errors}``
for evaluation errors, ``GET /health``, ``PUT /v1/data/{path}`` answering 204, ``GET
/v1/data/{path}`` for a document without input, ``GET /v1/policies`` listing the loaded
modules with their ``id`` and ``raw`` source). Fault
switches (delay, forced status or body, dropped connection, unhealthy) let tests prove that
every failure fails closed.
"""

from __future__ import annotations

import json
import socket
import tempfile
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from reconciler.adapters.opa import embedded
from reconciler.adapters.opa import engine as opa


@dataclass
class Faults:
    """Switches a test flips to make the server misbehave."""

    delay: float = 0.0                 # seconds to sleep before answering a data request
    status: int | None = None          # answer this status (with ``body`` or an OPA error)
    body: bytes | None = None          # answer this raw body (with ``status`` or 200)
    close_connection: bool = False     # drop the connection without an answer
    healthy: bool = True               # GET /health answers 200, else 500
    hide_policies: bool = False        # GET /v1/policies answers 403 (an authz policy)


@dataclass
class Seen:
    """What the server received, for assertions."""

    requests: list[tuple[str, str, dict[str, str], Any]] = field(default_factory=list)
    connections: int = 0
    decision_ids: list[str] = field(default_factory=list)


class OpaServer:
    """OPA's Data API on 127.0.0.1 over an EmbeddedEngine; use as a context manager."""

    def __init__(
        self,
        policy_dir: str | Path = "policies",
        data_files: Sequence[str | Path] | None = None,
        *,
        token: str | None = None,
        decision_ids: bool = True,
        engine: embedded.EmbeddedEngine | None = None,
    ) -> None:
        self.engine = engine or embedded.EmbeddedEngine(policy_dir, data_files)
        # Documents written with PUT /v1/data/{path}: kept in a data file the engine loads.
        self._put_dir = tempfile.TemporaryDirectory(prefix="opaserver-")
        self._put_file = Path(self._put_dir.name) / "put.json"
        self.put_docs: dict[str, Any] = {}
        self.engine.optional_data.append(self._put_file)
        self.token = token
        self.decision_ids = decision_ids
        self.faults = Faults()
        self.seen = Seen()
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> OpaServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.engine.close()
        self._put_dir.cleanup()

    def __enter__(self) -> OpaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- request handling (called from handler threads) --------------------

    def put(self, path: str, raw: bytes) -> tuple[int, Any]:
        """``PUT /v1/data/{path}``: create or replace the document (204), as OPA does; the
        containing objects are created as needed; the root itself cannot be replaced here."""
        try:
            value = json.loads(raw)
        except ValueError as e:
            return 400, {"code": "invalid_parameter", "message": f"body is not JSON: {e}"}
        keys = [k for k in path.split("/") if k]
        if not keys:
            return 400, {"code": "invalid_parameter", "message": "cannot replace the root"}
        with self._lock:
            node = self.put_docs
            for k in keys[:-1]:
                child = node.get(k)
                if not isinstance(child, dict):
                    child = node[k] = {}
                node = child
            node[keys[-1]] = value
            self._put_file.write_text(json.dumps(self.put_docs))
        if not self.engine.reload(force=True):
            return 500, {"code": "internal_error", "message": self.engine.last_error or "?"}
        return 204, None

    def data(self, path: str, raw: bytes) -> tuple[int, Any]:
        """Status and JSON body for ``POST /v1/data/{path}``, as OPA answers them."""
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError as e:
            msg = f"body contains malformed input document: {e}"
            return 400, {"code": "invalid_parameter", "message": msg}
        if not isinstance(body, dict):
            return 400, {"code": "invalid_parameter", "message": "body must be an object"}
        inp = body.get("input")
        out: dict[str, Any] = {}
        if self.decision_ids:
            did = str(uuid.uuid4())
            out["decision_id"] = did
            with self._lock:
                self.seen.decision_ids.append(did)
        self.engine.maybe_reload()
        try:
            out["result"] = self.engine.evaluate(path, inp)
        except opa.Undefined:
            pass  # OPA: an undefined document is 200 without "result"
        except opa.PolicyError as e:
            return 500, {
                "code": "internal_error",
                "message": f"1 error occurred: {e.message}",
                "errors": [{"code": e.code, "message": e.message}],
            }
        return 200, out


def _handler(server: OpaServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as OPA's Go server
        # Buffer each answer (flushed once per request by the base class): headers and
        # body written separately meet the client's delayed ACK, ~40 ms per request.
        wbufsize = 1 << 16

        def setup(self) -> None:
            super().setup()
            # As OPA's Go server: no Nagle delay between an answer's segments.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with server._lock:
                server.seen.connections += 1

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet tests

        def _send(self, status: int, body: Any, raw: bytes | None = None) -> None:
            payload = b"" if status == 204 else (
                raw if raw is not None else json.dumps(body).encode())
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _authorized(self) -> bool:
            if server.token is None:
                return True
            if self.headers.get("Authorization") == f"Bearer {server.token}":
                return True
            self._send(401, {"code": "unauthorized", "message": "missing or invalid bearer token"})
            return False

        def do_GET(self) -> None:
            with server._lock:
                server.seen.requests.append(("GET", self.path, dict(self.headers), None))
            if not self._authorized():
                return
            path = self.path.split("?")[0]
            if path == "/health":
                if server.faults.healthy and server.engine.healthy():
                    self._send(200, {})
                else:
                    self._send(500, {"error": "not ready"})
                return
            if path == "/v1/policies" and server.faults.hide_policies:
                self._send(403, {"code": "unauthorized", "message": "request rejected by "
                                 "administrative policy"})
                return
            if path == "/v1/policies":
                # OPA lists each module with its id (the file it was loaded from), its raw
                # source and its AST; the AST is left out here, nothing reads it.
                root = server.engine.policy_dir
                self._send(200, {"result": [{"id": (root / name).as_posix(), "raw": src}
                                            for name, src in server.engine.modules]})
                return
            if path == "/v1/data" or path.startswith("/v1/data/"):
                status, body = server.data(path[len("/v1/data"):].strip("/"), b"{}")
                self._send(status, body)
                return
            self._send(404, {"code": "resource_not_found", "message": "not found"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                parsed: Any = json.loads(raw)
            except ValueError:
                parsed = None
            with server._lock:
                server.seen.requests.append(("POST", self.path, dict(self.headers), parsed))
            f = server.faults
            if f.delay:
                threading.Event().wait(f.delay)
            if f.close_connection:
                self.close_connection = True
                self.connection.close()
                return
            if not self._authorized():
                return
            if f.status is not None or f.body is not None:
                status = f.status or 200
                err = {"code": "internal_error", "message": "forced by the test"}
                self._send(status, err, f.body)
                return
            path = self.path.split("?")[0]
            prefix = "/v1/data"
            if not (path == prefix or path.startswith(prefix + "/")):
                self._send(404, {"code": "resource_not_found", "message": "not found"})
                return
            status, body = server.data(path[len(prefix):].strip("/"), raw)
            self._send(status, body)

        def do_PUT(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            with server._lock:
                server.seen.requests.append(("PUT", self.path, dict(self.headers),
                                             raw.decode(errors="replace")))
            if not self._authorized():
                return
            if server.faults.status is not None:
                self._send(server.faults.status, {"code": "internal_error",
                                                  "message": "forced by the test"})
                return
            path = self.path.split("?")[0]
            prefix = "/v1/data"
            if not path.startswith(prefix + "/"):
                self._send(404, {"code": "resource_not_found", "message": "not found"})
                return
            status, body = server.put(path[len(prefix):].strip("/"), raw)
            self._send(status, body)

    return Handler
