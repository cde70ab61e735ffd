"""A Git smart-HTTP server for tests: real `git http-backend` behind HTTP Basic auth.

It lets tests push and fetch over HTTP with a token the way a forge's HTTPS remote
works, so credential handling is tested against a real server, not a mock.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import os
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

BACKEND = "/usr/lib/git-core/git-http-backend"


@dataclass
class GitHttpServer:
    root: Path
    token: str
    port: int = 0
    auth_failures: int = 0
    requests: list[str] = field(default_factory=list)

    def url(self, repo: str, *, with_token: bool = False) -> str:
        cred = f"x-access-token:{self.token}@" if with_token else ""
        return f"http://{cred}127.0.0.1:{self.port}/{repo}"


def _handler(server: GitHttpServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            return

        def _authorized(self) -> bool:
            header = self.headers.get("Authorization", "")
            if not header.startswith("Basic "):
                return False
            user_pass = base64.b64decode(header[6:]).decode()
            return user_pass.partition(":")[2] == server.token

        def _serve(self) -> None:
            server.requests.append(f"{self.command} {self.path}")
            if not self._authorized():
                server.auth_failures += 1
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="git"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            path, _, query = self.path.partition("?")
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            env = {
                **os.environ,
                "GIT_PROJECT_ROOT": str(server.root),
                "GIT_HTTP_EXPORT_ALL": "1",
                "REQUEST_METHOD": self.command,
                "PATH_INFO": path,
                "QUERY_STRING": query,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(len(body)),
                "REMOTE_USER": "x-access-token",
                "REMOTE_ADDR": "127.0.0.1",
            }
            if self.headers.get("Content-Encoding"):
                env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
            if self.headers.get("Git-Protocol"):
                env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
            out = subprocess.run([BACKEND], input=body, env=env, capture_output=True,
                                 check=False).stdout
            head, _, payload = out.partition(b"\r\n\r\n")
            status = 200
            headers: list[tuple[str, str]] = []
            for line in head.decode().split("\r\n"):
                k, _, v = line.partition(":")
                if k.lower() == "status":
                    status = int(v.strip().split()[0])
                elif k:
                    headers.append((k, v.strip()))
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = _serve
        do_POST = _serve

    return Handler


@contextlib.contextmanager
def serve(root: Path, token: str) -> Iterator[GitHttpServer]:
    """Serve the bare repositories under ``root`` on a loopback port until the block ends."""
    state = GitHttpServer(root=root, token=token)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.port = httpd.server_address[1]
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        t.join(5)
