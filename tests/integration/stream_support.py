"""Shared pieces of the stream integration tests (not a test module).

Documents, a client wired to a real SQLite store, the store's own change log (to prove
"stored exactly once"), a TCP proxy that can turn into a black hole (a half-open path),
and certificates made with the ``openssl`` CLI (the ``cryptography`` package is not
installed here).
"""

from __future__ import annotations

import pathlib
import select
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from reconciler.adapters.store import sqlite as sqlite_store
from reconciler.devtools import platform
from reconciler.domain import model
from reconciler.stream import client
from reconciler.stream import state as stream_state


def doc(i: int, cpu: str = "100m") -> dict[str, Any]:
    return {
        "apiVersion": "dakr.devzero.io/v1alpha1", "kind": "WorkloadRecommendation",
        "metadata": {"namespace": "default"},
        "spec": {"recommendationId": f"rec-{i:05d}", "action": "Rightsizing",
                 "targetRef": {"kind": "Deployment", "name": f"app-{i}"},
                 "containers": [{"name": "server",
                                 "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}}}]},
    }


def ids(n: int) -> set[str]:
    return {f"rec-{i:05d}" for i in range(n)}


def fast_config(target: str, **kw: Any) -> client.ClientConfig:
    """Small timings so that failures are noticed, and tests end, within seconds."""
    base: dict[str, Any] = {
        "keepalive_time_ms": 1000, "keepalive_timeout_ms": 1000, "heartbeat_interval": 0.3,
        "heartbeat_timeout": 2.0, "backoff_initial": 0.05, "backoff_max": 0.5,
    }
    base.update(kw)
    return client.ClientConfig(target=target, **base)


@dataclass
class Harness:
    client: client.StreamClient
    store: sqlite_store.SqliteStore
    state: stream_state.StreamState
    thread: threading.Thread | None = None

    def start(self, until_idle: float | None = None) -> Harness:
        self.thread = threading.Thread(target=self.client.run, args=(until_idle,), daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.client.stop()
        if self.thread is not None:
            self.thread.join(timeout=15)
            assert not self.thread.is_alive(), "client did not stop"

    def stored_ids(self) -> set[str]:
        return {r.id for r in self.store.list()}

    def changes(self) -> Counter[tuple[str, str]]:
        """(ADDED|MODIFIED, id) -> how often the store's change log recorded it."""
        return Counter((e.type, e.record.id) for kind in model.KINDS
                       for e in self.store.watch_records(kind, "0", 0) if e.record is not None)


def harness(tmp: pathlib.Path, config: client.ClientConfig, **kw: Any) -> Harness:
    st = sqlite_store.SqliteStore(tmp / "store.db")
    ss = stream_state.StreamState(tmp / "stream.db")
    return Harness(client.StreamClient(config, st, ss, **kw), st, ss)


def wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def server(docs: list[Any], **kw: Any) -> platform.PlatformServer:
    garbage = kw.get("faults", platform.Faults()).garbage_every
    kw.setdefault("heartbeat_interval", 0.2)
    return platform.PlatformServer(platform.build_feed(docs, garbage), **kw).start()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class BlackholeProxy:
    """A TCP forwarder; ``blackhole()`` makes existing connections silently drop every byte.

    That is what a dead NAT entry or a pulled cable looks like: the sockets stay open, no
    FIN or RST arrives, and only keepalive pings going unanswered reveal it.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._holes: list[threading.Event] = []
        self._sockets: list[socket.socket] = []
        self._stop = threading.Event()
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self._listener.settimeout(0.1)
        while not self._stop.is_set():
            try:
                down, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            up = socket.create_connection(("127.0.0.1", self.upstream_port))
            self._sockets += [down, up]
            hole = threading.Event()
            self._holes.append(hole)
            threading.Thread(target=self._pump, args=(down, up, hole), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket, hole: threading.Event) -> None:
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select([a, b], [], [], 0.1)
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    if not hole.is_set():
                        (b if s is a else a).sendall(data)
        except OSError:
            return

    def blackhole(self) -> None:
        """Existing connections go silent (new ones work)."""
        for h in self._holes:
            h.set()

    def close(self) -> None:
        self._stop.set()
        time.sleep(0.2)  # let the pumps see the flag before their sockets go
        self._listener.close()
        for s in self._sockets:
            s.close()


@dataclass(frozen=True)
class Pki:
    ca: pathlib.Path
    server_cert: pathlib.Path
    server_key: pathlib.Path
    client_cert: pathlib.Path
    client_key: pathlib.Path
    other_ca: pathlib.Path  # trusts nothing here


def _openssl(*args: str | pathlib.Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def _ca(d: pathlib.Path, name: str) -> tuple[pathlib.Path, pathlib.Path]:
    key, cert = d / f"{name}.key", d / f"{name}.pem"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
             "-days", "2", "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return cert, key


def _leaf(d: pathlib.Path, name: str, ca: tuple[pathlib.Path, pathlib.Path],
          ext: str) -> tuple[pathlib.Path, pathlib.Path]:
    key, csr, cert, extfile = (d / f"{name}.key", d / f"{name}.csr", d / f"{name}.pem",
                               d / f"{name}.ext")
    extfile.write_text(ext)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
             "-subj", f"/CN={name}")
    _openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
             "-out", cert, "-days", "2", "-extfile", extfile)
    return cert, key


def make_pki(d: pathlib.Path) -> Pki:
    ca = _ca(d, "ca")
    other = _ca(d, "other-ca")
    server_cert, server_key = _leaf(
        d, "server", ca, "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "extendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n")
    client_cert, client_key = _leaf(
        d, "client", ca, "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n")
    return Pki(ca[0], server_cert, server_key, client_cert, client_key, other[0])
